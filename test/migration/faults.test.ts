// Faults around a running migration: the destination killed mid-stream, an exec child that
// fails, a cancel, corrupted and truncated stream files. The source must end failed (or
// cancelled) and keep running with its RAM intact; a destination must never run the guest
// from a partial or invalid stream.
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { writeMixedImage } from '../helpers/guest.js';
import { type Peer, startPeer, waitMigration, waitRunstate } from '../helpers/peers.js';

const MiB = 64;
const sample = fileURLToPath(new URL('../fixtures/samples/qemu10-none-16M-pattern.mig', import.meta.url));

function tmp(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'qmigrate-faults-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function source(t: TestContext, dir: string): Promise<{ src: Peer; image: string }> {
  const image = join(dir, 'src.img');
  writeMixedImage(image, MiB << 20, 5);
  const src = (await startPeer(t, 'qmigrate', dir, 'src', image, MiB))!;
  return { src, image };
}

/** The source is running and its RAM is still exactly its image. */
async function assertIntact(src: Peer, image: string, dir: string): Promise<void> {
  await waitRunstate(src.qmp, 'running');
  const dump = join(dir, 'after.dump');
  await src.qmp.pmemsave({ val: 0, size: MiB << 20, filename: dump });
  assert.ok(readFileSync(dump).equals(readFileSync(image)), 'source RAM changed');
}

test('destination killed mid-stream: source failed, still running, RAM intact', async (t) => {
  const dir = tmp(t);
  const { src, image } = await source(t, dir);
  writeFileSync(join(dir, 'dst.img'), '');
  const dst = (await startPeer(t, 'qmigrate', dir, 'dst', join(dir, 'dst.img'), MiB, [
    '-incoming',
    'defer',
  ]))!;
  const addr = { transport: 'socket' as const, type: 'unix' as const, path: join(dir, 'm.sock') };
  await dst.qmp.migrateIncoming({ channels: [{ 'channel-type': 'main', addr }] });
  await src.qmp.migrateSetParameters({ 'max-bandwidth': 16 << 20 });
  await src.qmp.migrate({ channels: [{ 'channel-type': 'main', addr }] });
  await sleep(400);
  assert.equal((await src.qmp.queryMigrate()).status, 'active');
  dst.child.kill('SIGKILL');
  const info = await waitMigration(src.qmp);
  assert.equal(info.status, 'failed');
  assert.match(info['error-desc'] ?? '', /Unable to write to socket: (Broken pipe|Connection reset by peer)/);
  await assertIntact(src, image, dir);
});

// A peer that shuts down its sending side (FIN) but goes on reading has not gone away: the
// bytes still reach it. QEMU's source completes; so must ours (Node would otherwise end our
// side on that FIN and fail every later write).
for (const kind of ['10.0', 'qmigrate'] as const) {
  test(`${kind} source: a destination that half-closes early but reads on gets the whole stream`, async (t) => {
    const dir = tmp(t);
    const image = join(dir, 'src.img');
    writeMixedImage(image, MiB << 20, 5);
    const src = await startPeer(t, kind, dir, 'src', image, MiB);
    if (!src) return;
    const path = join(dir, 'half.sock');
    const stream = join(dir, 'half.mig');
    const chunks: Buffer[] = [];
    const received = new Promise<void>((resolve) => {
      const server = createServer((s) => {
        server.close();
        s.on('data', (d: Buffer) => {
          // FIN as soon as the stream has started: from here on this end only reads.
          if (chunks.length === 0) s.end();
          chunks.push(d);
        });
        s.on('end', resolve);
      });
      server.listen(path);
    });
    await src.qmp.migrate({ uri: `unix:${path}` });
    const info = await waitMigration(src.qmp);
    assert.equal(info.status, 'completed', info['error-desc']);
    // What arrived is a whole stream: a destination loads it into the source's RAM.
    await received;
    writeFileSync(stream, Buffer.concat(chunks));
    const dst = await loadFile(t, stream, false, MiB);
    assert.equal((await waitMigration(dst.qmp)).status, 'completed');
    const dump = join(dir, 'dst.dump');
    await dst.qmp.pmemsave({ val: 0, size: MiB << 20, filename: dump });
    assert.ok(readFileSync(dump).equals(readFileSync(image)), 'destination RAM differs');
  });
}

test('exec child that fails: source failed, still running, RAM intact', async (t) => {
  const dir = tmp(t);
  const { src, image } = await source(t, dir);
  await src.qmp.migrate({
    channels: [{ 'channel-type': 'main', addr: { transport: 'exec', args: ['/bin/false'] } }],
  });
  const info = await waitMigration(src.qmp);
  assert.equal(info.status, 'failed');
  assert.match(info['error-desc'] ?? '', /Unable to write to command: Broken pipe|exited with status 1/);
  await assertIntact(src, image, dir);
  // And it can migrate again afterwards.
  await src.qmp.migrate({
    channels: [
      { 'channel-type': 'main', addr: { transport: 'file', filename: join(dir, 'again.mig'), offset: 0 } },
    ],
  });
  assert.equal((await waitMigration(src.qmp)).status, 'completed');
});

test('exec program that does not exist: a synchronous error, state failed', async (t) => {
  const dir = tmp(t);
  const { src, image } = await source(t, dir);
  await assert.rejects(
    src.qmp.migrate({
      channels: [{ 'channel-type': 'main', addr: { transport: 'exec', args: ['/nonexistent/bin'] } }],
    }),
    /Failed to execute child process \u201c\/nonexistent\/bin\u201d \(No such file or directory\)/,
  );
  const info = await src.qmp.queryMigrate();
  assert.equal(info.status, 'failed');
  await assertIntact(src, image, dir);
});

test('migrate_cancel while active: cancelled, running, RAM intact', async (t) => {
  const dir = tmp(t);
  const { src, image } = await source(t, dir);
  await src.qmp.migrateSetCapabilities({ capabilities: [{ capability: 'events', state: true }] });
  const events = src.qmp.listen('MIGRATION');
  await src.qmp.migrateSetParameters({ 'max-bandwidth': 8 << 20 });
  await src.qmp.migrate({
    channels: [
      { 'channel-type': 'main', addr: { transport: 'file', filename: join(dir, 'c.mig'), offset: 0 } },
    ],
  });
  await sleep(300);
  await src.qmp.migrateCancel();
  assert.equal((await waitMigration(src.qmp)).status, 'cancelled');
  const seen = events.drain().map((e) => e.data.status);
  assert.deepEqual(seen, ['setup', 'active', 'cancelling', 'cancelled']);
  await assertIntact(src, image, dir);
});

test('a connection refused: failed asynchronously, as QEMU', async (t) => {
  const dir = tmp(t);
  const { src, image } = await source(t, dir);
  await src.qmp.migrate({ uri: 'tcp:127.0.0.1:1' });
  const info = await waitMigration(src.qmp);
  assert.deepEqual(info, {
    status: 'failed',
    'error-desc': "Failed to connect to '127.0.0.1:1': Connection refused",
  });
  await assertIntact(src, image, dir);
});

async function loadFile(t: TestContext, file: string, exitOnError: boolean, sizeMiB = 16) {
  const dir = tmp(t);
  writeFileSync(join(dir, 'dst.img'), '');
  const dst = (await startPeer(t, 'qmigrate', dir, 'dst', join(dir, 'dst.img'), sizeMiB, [
    '-incoming',
    'defer',
  ]))!;
  await dst.qmp.migrateIncoming({
    channels: [{ 'channel-type': 'main', addr: { transport: 'file', filename: file, offset: 0 } }],
    'exit-on-error': exitOnError,
  });
  return dst;
}

test('truncated stream file, exit-on-error=false: failed with where, guest not started', async (t) => {
  const dir = tmp(t);
  const file = join(dir, 'cut.mig');
  copyFileSync(sample, file);
  truncateSync(file, 500_000);
  const dst = await loadFile(t, file, false);
  const info = await waitMigration(dst.qmp);
  assert.equal(info.status, 'failed');
  assert.match(
    info['error-desc'] ?? '',
    /^load of migration failed: stream ended early: .* \(at byte 4\d{5}, section 'ram'\)$/,
  );
  assert.deepEqual(await dst.qmp.queryStatus(), { status: 'inmigrate', running: false });
});

test('corrupted stream file, default exit-on-error: the process exits 1 and says why', async (t) => {
  const dir = tmp(t);
  const file = join(dir, 'bad.mig');
  const data = readFileSync(sample);
  data.write('XXXX', 0x1000, 'latin1'); // inside page data: harmless
  data.writeUInt8(0x09, data.indexOf(Buffer.from([0x7e, 0, 0, 0, 1, 0x02])) + 5);
  writeFileSync(file, data);
  const dst = await loadFile(t, file, true);
  assert.equal(await dst.exited, 1);
});

test('a destination whose RAM the stream does not fit never starts', async (t) => {
  const dst = await loadFile(t, sample, false, 32);
  const info = await waitMigration(dst.qmp);
  assert.match(
    info['error-desc'] ?? '',
    /RAM size mismatch: the source has 0x1000000 bytes, this guest 0x2000000/,
  );
  assert.equal((await dst.qmp.queryStatus()).status, 'inmigrate');
});
