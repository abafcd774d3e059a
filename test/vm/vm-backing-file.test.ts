// A share=on memory-backend-file gets the guest's RAM back when `qmigrate vm` ends, but only
// RAM that is a whole guest: never the partial RAM of a failed, unfinished or fatal incoming
// migration (QEMU maps the file, so there it would hold that partial RAM). The file keeps
// its size.
import assert from 'node:assert/strict';
import {
  copyFileSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { checkGuestRam } from '../../src/machine/workload.js';
import { guestArgs, writeMixedImage, writeWorkloadImage } from '../helpers/guest.js';
import { type Peer, startPeer, waitMigration } from '../helpers/peers.js';
import { spawnQmigrate } from '../helpers/qmigrate.js';

const sample = fileURLToPath(new URL('../fixtures/samples/qemu10-none-16M-pattern.mig', import.meta.url));
const MiB = 16;

function tmp(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'qmigrate-backing-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A destination `-incoming defer` whose RAM is a file of known content (returned). */
async function destination(t: TestContext, dir: string, extra: string[] = []) {
  const image = join(dir, 'dst.img');
  writeMixedImage(image, MiB << 20, 3);
  const before = readFileSync(image);
  const dst = (await startPeer(t, 'qmigrate', dir, 'dst', image, MiB, ['-incoming', 'defer', ...extra]))!;
  return { dst, image, before };
}

function truncatedSample(dir: string): string {
  const file = join(dir, 'cut.mig');
  copyFileSync(sample, file);
  truncateSync(file, 500_000);
  return file;
}

async function loadFrom(dst: Peer, file: string, exitOnError: boolean): Promise<void> {
  await dst.qmp.migrateIncoming({
    channels: [{ 'channel-type': 'main', addr: { transport: 'file', filename: file, offset: 0 } }],
    'exit-on-error': exitOnError,
  });
}

test('quit after a failed incoming migration (exit-on-error=false) leaves the file as it was', async (t) => {
  const dir = tmp(t);
  const { dst, image, before } = await destination(t, dir);
  await loadFrom(dst, truncatedSample(dir), false);
  assert.equal((await waitMigration(dst.qmp)).status, 'failed');
  await dst.qmp.quit();
  assert.equal(await dst.exited, 0);
  assert.ok(readFileSync(image).equals(before), 'the partial RAM reached the backing file');
});

test('SIGTERM while an incoming migration is loading leaves the file as it was', async (t) => {
  const dir = tmp(t);
  const { dst, image, before } = await destination(t, dir);
  const path = join(dir, 'm.sock');
  await dst.qmp.migrateIncoming({
    channels: [{ 'channel-type': 'main', addr: { transport: 'socket', type: 'unix', path } }],
  });
  // Half a stream, and the connection held open: the load waits for the rest.
  const sock = connect(path);
  t.after(() => sock.destroy());
  await new Promise<void>((r) => sock.once('connect', r));
  sock.write(readFileSync(sample).subarray(0, 600_000));
  for (const end = Date.now() + 30_000; (await dst.qmp.queryMigrate()).status !== 'active'; await sleep(10)) {
    assert.ok(Date.now() < end, 'the incoming migration never became active');
  }
  await sleep(300); // let the loader take in what it was sent
  dst.child.kill('SIGTERM');
  assert.equal(await dst.exited, 0);
  assert.ok(readFileSync(image).equals(before), 'the partial RAM reached the backing file');
});

test('a fatal incoming failure (exit-on-error=true) exits 1 and leaves the file as it was', async (t) => {
  const dir = tmp(t);
  const { dst, image, before } = await destination(t, dir);
  await loadFrom(dst, truncatedSample(dir), true);
  assert.equal(await dst.exited, 1);
  assert.ok(readFileSync(image).equals(before));
});

test('-incoming with a bad stream on the command line exits 1 and leaves the file as it was', async (t) => {
  const dir = tmp(t);
  const image = join(dir, 'dst.img');
  writeMixedImage(image, MiB << 20, 4);
  const before = readFileSync(image);
  const child = spawnQmigrate(['vm', ...guestArgs(image, MiB), '-incoming', `file:${truncatedSample(dir)}`], {
    stdio: 'ignore',
  });
  t.after(() => child.kill('SIGKILL'));
  const code = await new Promise<number | null>((r) => child.once('exit', r));
  assert.equal(code, 1);
  assert.ok(readFileSync(image).equals(before));
});

test('a completed incoming migration reaches the file at quit; a larger file keeps its tail', async (t) => {
  const dir = tmp(t);
  const image = join(dir, 'dst.img');
  const tail = Buffer.alloc(1 << 20, 0x5a);
  writeMixedImage(image, MiB << 20, 5);
  writeFileSync(image, Buffer.concat([readFileSync(image), tail]));
  const dst = (await startPeer(t, 'qmigrate', dir, 'dst', image, MiB, ['-incoming', 'defer', '-S']))!;
  await loadFrom(dst, sample, false);
  assert.equal((await waitMigration(dst.qmp)).status, 'completed');
  assert.equal((await dst.qmp.queryStatus()).status, 'paused');
  await dst.qmp.quit();
  assert.equal(await dst.exited, 0);
  assert.equal(statSync(image).size, (MiB << 20) + tail.length, 'the file was cut to the guest size');
  const after = readFileSync(image);
  // The sample's guest: page i holds (i*7+1) & 0xff when i is a multiple of 16, else zeros.
  const want = Buffer.alloc(MiB << 20);
  for (let i = 0; i < want.length / 4096; i += 16) want.fill((i * 7 + 1) & 0xff, i * 4096, (i + 1) * 4096);
  assert.ok(after.subarray(0, MiB << 20).equals(want), 'the migrated RAM did not reach the file');
  assert.ok(after.subarray(MiB << 20).equals(tail), 'the tail beyond the guest changed');
});

test('a guest that ran (no -incoming) writes its RAM back on SIGTERM', async (t) => {
  const dir = tmp(t);
  const image = join(dir, 'img');
  writeWorkloadImage(image, MiB << 20);
  const before = readFileSync(image);
  const peer = (await startPeer(t, 'qmigrate', dir, 'g', image, MiB, [
    '-object',
    'qmigrate-workload,id=w0,rate=50000',
  ]))!;
  await sleep(300);
  peer.child.kill('SIGTERM');
  assert.equal(await peer.exited, 0);
  const after = readFileSync(image);
  assert.ok(!after.equals(before), "the guest's writes did not reach the file");
  assert.equal(checkGuestRam(after), 0, 'the file holds a consistent guest');
});
