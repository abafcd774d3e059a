// Migrations between every pair of peers the engine must interoperate with: QEMU 10.0 ->
// qmigrate, qmigrate -> QEMU 10.0 and qmigrate -> qmigrate over tcp, unix, exec and file,
// and QEMU 7.2 -> qmigrate with a uri. A 256 MiB guest of mixed zero, patterned and random
// pages; the source must end `completed`, the destination `running`, RAM equal byte for byte.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import type { MigrationAddress, MigrationChannel } from '../../src/qapi/types.js';
import { writeMixedImage } from '../helpers/guest.js';
import {
  assertRamMigrated,
  type PeerKind,
  startPeer,
  waitMigration,
  waitRunstate,
} from '../helpers/peers.js';

const MiB = 256;

type Transport = 'tcp' | 'unix' | 'exec' | 'file';

function addresses(
  transport: Transport,
  dir: string,
): { out: MigrationAddress; in: MigrationAddress; listenFirst: boolean } {
  switch (transport) {
    case 'tcp':
      return {
        out: { transport: 'socket', type: 'inet', host: '127.0.0.1', port: 'PORT' },
        in: { transport: 'socket', type: 'inet', host: '127.0.0.1', port: '0' },
        listenFirst: true,
      };
    case 'unix':
      return {
        out: { transport: 'socket', type: 'unix', path: join(dir, 'mig.sock') },
        in: { transport: 'socket', type: 'unix', path: join(dir, 'mig.sock') },
        listenFirst: true,
      };
    case 'exec':
      return {
        out: { transport: 'exec', args: ['/bin/dd', `of=${join(dir, 'exec.mig')}`, 'bs=1M', 'status=none'] },
        in: { transport: 'exec', args: ['/bin/cat', join(dir, 'exec.mig')] },
        listenFirst: false,
      };
    case 'file':
      return {
        out: { transport: 'file', filename: join(dir, 'file.mig'), offset: 8192 },
        in: { transport: 'file', filename: join(dir, 'file.mig'), offset: 8192 },
        listenFirst: false,
      };
  }
}

const main = (addr: MigrationAddress): MigrationChannel[] => [{ 'channel-type': 'main', addr }];

async function migrate(t: TestContext, from: PeerKind, to: PeerKind, transport: Transport, useUri = false) {
  const dir = mkdtempSync(join(tmpdir(), `qmigrate-${from}-${to}-${transport}-`));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const srcImg = join(dir, 'src.img');
  const dstImg = join(dir, 'dst.img');
  writeMixedImage(srcImg, MiB << 20, 11);
  writeFileSync(dstImg, Buffer.alloc(0));
  const src = await startPeer(t, from, dir, 'src', srcImg, MiB);
  const dst = await startPeer(t, to, dir, 'dst', dstImg, MiB, ['-incoming', 'defer']);
  if (!src || !dst) return;
  // QEMU's default 128 MiB/s cap would dominate the test's run time.
  await src.qmp.migrateSetParameters({ 'max-bandwidth': 0 });
  const plan = addresses(transport, dir);
  const incoming = () =>
    useUri
      ? dst.qmp.migrateIncoming({ uri: `unix:${join(dir, 'mig.sock')}` })
      : dst.qmp.migrateIncoming({ channels: main(plan.in) });
  if (plan.listenFirst) {
    await incoming();
    if (plan.out.transport === 'socket' && plan.out.type === 'inet') {
      const sa = (await dst.qmp.queryMigrate())['socket-address']?.[0];
      assert.ok(sa?.type === 'inet', 'the destination reports where it listens');
      plan.out.port = sa.port;
    }
  }
  if (useUri) await src.qmp.migrate({ uri: `unix:${join(dir, 'mig.sock')}` });
  else await src.qmp.migrate({ channels: main(plan.out) });
  const done = await waitMigration(src.qmp);
  assert.equal(done.status, 'completed', JSON.stringify(done));
  if (!plan.listenFirst) await incoming();
  const dstDone = await waitMigration(dst.qmp);
  assert.equal(dstDone.status, 'completed', JSON.stringify(dstDone));
  await waitRunstate(dst.qmp, 'running');
  assert.equal((await src.qmp.queryStatus()).status, 'postmigrate');
  await assertRamMigrated(src, dst, dir, MiB, srcImg);
}

const PAIRS: [PeerKind, PeerKind][] = [
  ['10.0', 'qmigrate'],
  ['qmigrate', '10.0'],
  ['qmigrate', 'qmigrate'],
];
for (const [from, to] of PAIRS) {
  for (const transport of ['tcp', 'unix', 'exec', 'file'] as Transport[]) {
    test(`${from} -> ${to} over ${transport}`, (t) => migrate(t, from, to, transport));
  }
}
test('7.2 -> qmigrate with uri', (t) => migrate(t, '7.2', 'qmigrate', 'unix', true));

/** With the return-path capability the source waits for the destination's SHUT. */
async function returnPath(t: TestContext, from: PeerKind, to: PeerKind) {
  const dir = mkdtempSync(join(tmpdir(), `qmigrate-rp-${from}-${to}-`));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeMixedImage(join(dir, 'src.img'), 64 << 20, 3);
  writeFileSync(join(dir, 'dst.img'), Buffer.alloc(0));
  const src = await startPeer(t, from, dir, 'src', join(dir, 'src.img'), 64);
  const dst = await startPeer(t, to, dir, 'dst', join(dir, 'dst.img'), 64, ['-incoming', 'defer']);
  if (!src || !dst) return;
  const addr: MigrationAddress = { transport: 'socket', type: 'unix', path: join(dir, 'rp.sock') };
  await dst.qmp.migrateIncoming({ channels: main(addr) });
  await src.qmp.migrateSetCapabilities({ capabilities: [{ capability: 'return-path', state: true }] });
  await src.qmp.migrateSetParameters({ 'max-bandwidth': 0 });
  await src.qmp.migrate({ channels: main(addr) });
  assert.equal((await waitMigration(src.qmp)).status, 'completed');
  assert.equal((await waitMigration(dst.qmp)).status, 'completed');
  await waitRunstate(dst.qmp, 'running');
  await dst.qmp.pmemsave({ val: 0, size: 64 << 20, filename: join(dir, 'dst.dump') });
  assert.ok(readFileSync(join(dir, 'dst.dump')).equals(readFileSync(join(dir, 'src.img'))));
}
test('return path: 10.0 -> qmigrate (qmigrate answers PONG and SHUT)', (t) =>
  returnPath(t, '10.0', 'qmigrate'));
test('return path: qmigrate -> 10.0 (qmigrate waits for SHUT)', (t) => returnPath(t, 'qmigrate', '10.0'));
test('return path: qmigrate -> qmigrate', (t) => returnPath(t, 'qmigrate', 'qmigrate'));

test('IPv6 loopback, port 0: qmigrate -> qmigrate over tcp:[::1]', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'qmigrate-v6-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeMixedImage(join(dir, 'src.img'), 32 << 20, 8);
  writeFileSync(join(dir, 'dst.img'), Buffer.alloc(0));
  const src = (await startPeer(t, 'qmigrate', dir, 'src', join(dir, 'src.img'), 32))!;
  const dst = (await startPeer(t, 'qmigrate', dir, 'dst', join(dir, 'dst.img'), 32, ['-incoming', 'defer']))!;
  await dst.qmp.migrateIncoming({ uri: 'tcp:[::1]:0' });
  const sa = (await dst.qmp.queryMigrate())['socket-address']?.[0];
  assert.ok(
    sa?.type === 'inet' && sa.host === '::1' && sa.ipv6 === true && sa.port !== '0',
    JSON.stringify(sa),
  );
  await src.qmp.migrate({ uri: `tcp:[::1]:${sa.port}` });
  assert.equal((await waitMigration(src.qmp)).status, 'completed');
  assert.equal((await waitMigration(dst.qmp)).status, 'completed');
});
