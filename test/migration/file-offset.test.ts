// Files are opened the way QEMU 10.0 opens them, so nothing outside what is written changes:
// `file:PATH,offset=N` keeps the N bytes before the offset (QEMU opens without O_TRUNC and cuts
// the file at the offset), an fd set's descriptor stays usable for the next migration, and a
// shared memory-backend-file longer than the backend keeps its tail.
import assert from 'node:assert/strict';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { guestArgs, writeMixedImage } from '../helpers/guest.js';
import { connectRetry, startPeer, waitMigration } from '../helpers/peers.js';
import { spawnQmigrate } from '../helpers/qmigrate.js';

const MiB = 16;
const OFFSET = 0x1000;

function tmp(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'qmigrate-file-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Another program's 4 KiB header, then junk that the stream must replace. */
function headerFile(path: string): Buffer {
  const header = Buffer.alloc(OFFSET);
  for (let i = 0; i < OFFSET; i++) header[i] = (i * 13 + 7) & 0xff;
  writeFileSync(path, Buffer.concat([header, Buffer.alloc(48 << 20, 0xee)]));
  return header;
}

for (const kind of ['10.0', 'qmigrate'] as const) {
  test(`${kind} source: file:...,offset=0x1000 leaves the header before the offset intact`, async (t) => {
    const dir = tmp(t);
    const image = join(dir, 'src.img');
    writeMixedImage(image, MiB << 20, 6);
    const src = await startPeer(t, kind, dir, 'src', image, MiB);
    if (!src) return;
    const file = join(dir, 'saved.mig');
    const header = headerFile(file);
    await src.qmp.migrate({
      channels: [{ 'channel-type': 'main', addr: { transport: 'file', filename: file, offset: OFFSET } }],
    });
    const info = await waitMigration(src.qmp);
    assert.equal(info.status, 'completed', info['error-desc']);
    const saved = readFileSync(file);
    assert.ok(saved.subarray(0, OFFSET).equals(header), 'the bytes before the offset changed');
    assert.equal(saved.readUInt32BE(OFFSET), 0x5145564d, 'the stream starts at the offset (QEVM)');
    // The file ends where the stream does (QEMU cut it at the offset first): no old junk after.
    assert.notEqual(saved.at(-1), 0xee);

    // And the stream loads back from the offset, on both kinds of destination.
    for (const to of ['qmigrate', '10.0'] as const) {
      writeFileSync(join(dir, `dst-${to}.img`), '');
      const dst = await startPeer(t, to, dir, `dst-${to}`, join(dir, `dst-${to}.img`), MiB, [
        '-incoming',
        'defer',
      ]);
      if (!dst) return;
      await dst.qmp.migrateIncoming({
        channels: [{ 'channel-type': 'main', addr: { transport: 'file', filename: file, offset: OFFSET } }],
      });
      assert.equal((await waitMigration(dst.qmp)).status, 'completed');
      const dump = join(dir, `dst-${to}.dump`);
      await dst.qmp.pmemsave({ val: 0, size: MiB << 20, filename: dump });
      assert.ok(readFileSync(dump).equals(readFileSync(image)), `${to} destination RAM differs`);
      await dst.stop();
    }
  });
}

test('file:/dev/fdset/N: the set keeps its descriptor, so a second migration to it works', async (t) => {
  const dir = tmp(t);
  const image = join(dir, 'src.img');
  writeMixedImage(image, MiB << 20, 7);
  const file = join(dir, 'fdset.mig');
  const header = headerFile(file);
  const fd = openSync(file, 'r+');
  t.after(() => closeSync(fd));
  const sock = join(dir, 'src.qmp');
  const child = spawnQmigrate(
    ['vm', ...guestArgs(image, MiB), '-qmp', `unix:${sock},server=on,wait=off`, '-add-fd', 'fd=3,set=1'],
    { stdio: ['ignore', 'inherit', 'inherit', fd] },
  );
  const exited = new Promise((r) => child.once('exit', r));
  t.after(async () => {
    child.kill('SIGKILL');
    await exited;
  });
  const qmp = await connectRetry(sock);
  t.after(() => qmp.close().catch(() => {}));
  for (let round = 1; round <= 2; round++) {
    await qmp.migrate({
      channels: [
        { 'channel-type': 'main', addr: { transport: 'file', filename: '/dev/fdset/1', offset: OFFSET } },
      ],
    });
    const info = await waitMigration(qmp);
    assert.equal(info.status, 'completed', `round ${round}: ${info['error-desc']}`);
    await qmp.cont();
  }
  const saved = readFileSync(file);
  assert.ok(saved.subarray(0, OFFSET).equals(header), 'the bytes before the offset changed');
  assert.equal(saved.readUInt32BE(OFFSET), 0x5145564d);
});

for (const kind of ['10.0', 'qmigrate'] as const) {
  test(`${kind}: a shared memory-backend-file longer than the backend keeps its tail`, async (t) => {
    const dir = tmp(t);
    const image = join(dir, 'ram.img');
    writeMixedImage(image, MiB << 20, 8);
    const tail = Buffer.alloc(8192, 0x5a);
    writeFileSync(image, tail, { flag: 'a' });
    const peer = await startPeer(t, kind, dir, 'vm', image, MiB);
    if (!peer) return;
    await peer.qmp.execute('quit').catch(() => {});
    await peer.exited;
    assert.equal(statSync(image).size, (MiB << 20) + tail.length, 'the file was cut');
    assert.ok(
      readFileSync(image)
        .subarray(MiB << 20)
        .equals(tail),
      'the bytes after the backend changed',
    );
  });
}
