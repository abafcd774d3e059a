// Multifd faults: one multifd connection dropped mid-migration (through a proxy that cuts
// it) fails the migration cleanly and the source keeps running with its RAM intact; an
// unsupported multifd-compression is refused up front.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { writeMixedImage } from '../helpers/guest.js';
import { startPeer, waitMigration, waitRunstate } from '../helpers/peers.js';

const MiB = 64;

test('one multifd connection dropped mid-migration: failed, source running, RAM intact', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'qmigrate-mfd-fault-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeMixedImage(join(dir, 'src.img'), MiB << 20, 21);
  writeFileSync(join(dir, 'dst.img'), '');
  const src = (await startPeer(t, 'qmigrate', dir, 'src', join(dir, 'src.img'), MiB))!;
  const dst = (await startPeer(t, 'qmigrate', dir, 'dst', join(dir, 'dst.img'), MiB, [
    '-incoming',
    'defer',
  ]))!;
  for (const p of [src, dst]) {
    await p.qmp.migrateSetCapabilities({ capabilities: [{ capability: 'multifd', state: true }] });
    await p.qmp.migrateSetParameters({ 'multifd-channels': 3 });
  }
  const back = join(dir, 'dst.sock');
  await dst.qmp.migrateIncoming({ uri: `unix:${back}` });
  // A proxy in front of the destination; it cuts the third connection (a multifd one) soon.
  const conns: Socket[] = [];
  const proxy = createServer((c) => {
    const up = connect(back);
    c.pipe(up).pipe(c);
    c.on('error', () => up.destroy());
    up.on('error', () => c.destroy());
    conns.push(c);
    if (conns.length === 3) {
      setTimeout(() => {
        c.destroy();
        up.destroy();
      }, 300);
    }
  });
  await new Promise<void>((r) => proxy.listen(join(dir, 'proxy.sock'), r));
  t.after(() => {
    proxy.close();
    for (const c of conns) c.destroy();
  });
  await src.qmp.migrateSetParameters({ 'max-bandwidth': 16 << 20 });
  await src.qmp.migrate({ uri: `unix:${join(dir, 'proxy.sock')}` });
  const info = await waitMigration(src.qmp);
  assert.equal(info.status, 'failed', JSON.stringify(info));
  assert.match(
    info['error-desc'] ?? '',
    /Unable to write to socket|Connection reset|Broken pipe|write after/,
  );
  await waitRunstate(src.qmp, 'running');
  await src.qmp.pmemsave({ val: 0, size: MiB << 20, filename: join(dir, 'after.dump') });
  assert.ok(readFileSync(join(dir, 'after.dump')).equals(readFileSync(join(dir, 'src.img'))));
  // The destination never ran the guest.
  await sleep(200);
  const d = await dst.qmp.queryStatus().catch(() => ({ status: 'exited' }));
  assert.notEqual(d.status, 'running');
});

test('multifd-compression other than none is refused with a clear error', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'qmigrate-mfd-zlib-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeMixedImage(join(dir, 'src.img'), 16 << 20, 2);
  const src = (await startPeer(t, 'qmigrate', dir, 'src', join(dir, 'src.img'), 16))!;
  await src.qmp.migrateSetCapabilities({ capabilities: [{ capability: 'multifd', state: true }] });
  await src.qmp.migrateSetParameters({ 'multifd-compression': 'zlib' });
  await assert.rejects(
    src.qmp.migrate({ uri: 'tcp:127.0.0.1:9' }),
    /multifd-compression 'zlib' is not supported by qmigrate/,
  );
  await waitRunstate(src.qmp, 'running');
});
