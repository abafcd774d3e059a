// Multifd without compression, QEMU 10.0's dialect, between QEMU 10.0 and qmigrate both ways
// and qmigrate with itself, with 1, 2, 4 and 8 channels; the seed's own test (multifd over
// tcp set up with channels on both sides, and the same with uri); a dirtying guest.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { checkGuestRam } from '../../src/machine/workload.js';
import type { MigrationAddress, MigrationChannel } from '../../src/qapi/types.js';
import { writeMixedImage, writeWorkloadImage } from '../helpers/guest.js';
import { type PeerKind, startPeer, waitMigration, waitRunstate } from '../helpers/peers.js';

const MiB = 128;
const main = (addr: MigrationAddress): MigrationChannel[] => [{ 'channel-type': 'main', addr }];

async function multifd(
  t: TestContext,
  from: PeerKind,
  to: PeerKind,
  channels: number,
  useUri = false,
  zeroPageDetection: 'none' | 'legacy' | 'multifd' = 'multifd',
  returnPath = false,
) {
  const dir = mkdtempSync(join(tmpdir(), `qmigrate-mfd-${from}-${to}-${channels}-`));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeMixedImage(join(dir, 'src.img'), MiB << 20, 13);
  writeFileSync(join(dir, 'dst.img'), Buffer.alloc(0));
  const src = await startPeer(t, from, dir, 'src', join(dir, 'src.img'), MiB);
  const dst = await startPeer(t, to, dir, 'dst', join(dir, 'dst.img'), MiB, ['-incoming', 'defer']);
  if (!src || !dst) return;
  for (const p of [src, dst]) {
    await p.qmp.migrateSetCapabilities({ capabilities: [{ capability: 'multifd', state: true }] });
    await p.qmp.migrateSetParameters({
      'multifd-channels': channels,
      'zero-page-detection': zeroPageDetection,
    });
  }
  await src.qmp.migrateSetParameters({ 'max-bandwidth': 0 });
  if (returnPath)
    await src.qmp.migrateSetCapabilities({ capabilities: [{ capability: 'return-path', state: true }] });
  const listen: MigrationAddress = { transport: 'socket', type: 'inet', host: '127.0.0.1', port: '0' };
  if (useUri) await dst.qmp.migrateIncoming({ uri: 'tcp:127.0.0.1:0' });
  else await dst.qmp.migrateIncoming({ channels: main(listen) });
  const sa = (await dst.qmp.queryMigrate())['socket-address']?.[0];
  assert.ok(sa?.type === 'inet');
  if (useUri) await src.qmp.migrate({ uri: `tcp:127.0.0.1:${sa.port}` });
  else await src.qmp.migrate({ channels: main({ ...listen, port: sa.port }) });
  const info = await waitMigration(src.qmp);
  assert.equal(info.status, 'completed', JSON.stringify(info));
  assert.ok(Number(info.ram?.['multifd-bytes']) > (MiB << 20) / 3, 'pages went through multifd');
  if (zeroPageDetection === 'none') assert.equal(info.ram?.duplicate, 0, 'no zero-page detection');
  else assert.ok(Number(info.ram?.duplicate) > 0, 'zero pages detected');
  assert.equal((await waitMigration(dst.qmp)).status, 'completed');
  await waitRunstate(dst.qmp, 'running');
  await dst.qmp.pmemsave({ val: 0, size: MiB << 20, filename: join(dir, 'dst.dump') });
  assert.ok(readFileSync(join(dir, 'dst.dump')).equals(readFileSync(join(dir, 'src.img'))), 'RAM differs');
}

for (const [from, to] of [
  ['10.0', 'qmigrate'],
  ['qmigrate', '10.0'],
  ['qmigrate', 'qmigrate'],
] as [PeerKind, PeerKind][]) {
  for (const n of [1, 2, 4, 8])
    test(`multifd ${from} -> ${to}, ${n} channels`, (t) => multifd(t, from, to, n));
}
for (const z of ['none', 'legacy'] as const) {
  test(`zero-page-detection=${z}: 10.0 -> qmigrate`, (t) => multifd(t, '10.0', 'qmigrate', 2, false, z));
  test(`zero-page-detection=${z}: qmigrate -> 10.0`, (t) => multifd(t, 'qmigrate', '10.0', 2, false, z));
}
test('multifd with return-path: 10.0 -> qmigrate', (t) =>
  multifd(t, '10.0', 'qmigrate', 2, false, 'multifd', true));
test('multifd with return-path: qmigrate -> 10.0', (t) =>
  multifd(t, 'qmigrate', '10.0', 2, false, 'multifd', true));
test("the seed's test with uri: multifd over tcp, qmigrate -> qmigrate", (t) =>
  multifd(t, 'qmigrate', 'qmigrate', 2, true));

test('a dirtying guest migrated with multifd passes the consistency check', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'qmigrate-mfd-live-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeWorkloadImage(join(dir, 'src.img'), MiB << 20);
  writeFileSync(join(dir, 'dst.img'), Buffer.alloc(0));
  const w = ['-object', 'qmigrate-workload,id=w0,rate=4000'];
  const src = (await startPeer(t, 'qmigrate', dir, 'src', join(dir, 'src.img'), MiB, w))!;
  const dst = (await startPeer(t, 'qmigrate', dir, 'dst', join(dir, 'dst.img'), MiB, [
    ...w,
    '-incoming',
    'defer',
  ]))!;
  for (const p of [src, dst]) {
    await p.qmp.migrateSetCapabilities({ capabilities: [{ capability: 'multifd', state: true }] });
    await p.qmp.migrateSetParameters({ 'multifd-channels': 4 });
  }
  await src.qmp.migrateSetParameters({ 'max-bandwidth': 64 << 20 });
  const addr: MigrationAddress = { transport: 'socket', type: 'unix', path: join(dir, 'm.sock') };
  await dst.qmp.migrateIncoming({ channels: main(addr) });
  await src.qmp.migrate({ channels: main(addr) });
  const info = await waitMigration(src.qmp);
  assert.equal(info.status, 'completed');
  assert.ok(Number(info.ram?.['dirty-sync-count']) > 2);
  await waitRunstate(dst.qmp, 'running');
  await dst.qmp.stop();
  await dst.qmp.pmemsave({ val: 0, size: MiB << 20, filename: join(dir, 'dst.dump') });
  assert.equal(checkGuestRam(readFileSync(join(dir, 'dst.dump'))), 0);
});
