// Migration between two "hosts": the source in one network namespace, the destination in the
// other, the stream over tcp across the veth between them (test/helpers/netns.ts), qmigrate ->
// qmigrate, qmigrate -> QEMU 10.0 and QEMU 10.0 -> qmigrate; and multifd 4 across the link
// once. Each ends `completed` on both sides, the guest running on the destination with RAM
// equal byte for byte.
import assert from 'node:assert/strict';
import { type TestContext, test } from 'node:test';
import { assertRamMigrated, type PeerKind, waitMigration, waitRunstate } from '../helpers/peers.js';
import { migrateAcross, onTwoHosts } from './two-hosts-peers.js';

const MiB = 32;

async function migrate(t: TestContext, from: PeerKind, to: PeerKind, multifd: number) {
  const on = await onTwoHosts(t, from, to, MiB);
  if (!on) return;
  const { net, src, dst } = on;
  if (multifd) {
    for (const p of [src, dst]) {
      await p.qmp.migrateSetCapabilities({ capabilities: [{ capability: 'multifd', state: true }] });
      await p.qmp.migrateSetParameters({ 'multifd-channels': multifd });
    }
  }
  await src.qmp.migrateSetParameters({ 'max-bandwidth': 0 });
  await migrateAcross(net, src, dst);
  const done = await waitMigration(src.qmp, 60_000);
  assert.equal(done.status, 'completed', JSON.stringify(done));
  if (multifd) assert.ok(Number(done.ram?.['multifd-bytes']) > (MiB << 20) / 2, 'pages went over multifd');
  assert.equal((await waitMigration(dst.qmp, 30_000)).status, 'completed');
  await waitRunstate(dst.qmp, 'running');
  await assertRamMigrated(src, dst, on.dir, MiB, on.srcImg);
}

const PAIRS: [PeerKind, PeerKind][] = [
  ['qmigrate', 'qmigrate'],
  ['qmigrate', '10.0'],
  ['10.0', 'qmigrate'],
];
for (const [from, to] of PAIRS) {
  test(`two hosts: ${from} -> ${to} over tcp across a veth`, (t) => migrate(t, from, to, 0));
}
test('two hosts: qmigrate -> QEMU 10.0, multifd 4 across a veth', (t) => migrate(t, 'qmigrate', '10.0', 4));
