// Migration over TLS between two "hosts" (network namespaces joined by a veth,
// test/helpers/netns.ts): the destination's certificate names its namespace address (SAN
// IP:10.x.y.z), which the source checks against the tcp address it connects to, as QEMU does
// without tls-hostname; the destination verifies the client's certificate. qmigrate <->
// qmigrate and qmigrate <-> QEMU 10.0: `completed`, RAM equal byte for byte.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { assertRamMigrated, type PeerKind, waitMigration, waitRunstate } from '../helpers/peers.js';
import { makeCa, makeCredsDir } from '../helpers/tls-certs.js';
import { migrateAcross, onTwoHosts } from './two-hosts-peers.js';

const MiB = 32;

async function migrate(t: TestContext, from: PeerKind, to: PeerKind) {
  const on = await onTwoHosts(t, from, to, MiB, (net, dir) => {
    const ca = makeCa(dir, 'ca');
    const client = makeCredsDir(ca, join(dir, 'client'), 'client');
    const server = makeCredsDir(ca, join(dir, 'server'), 'server', {
      subject: '/CN=destination/O=qmigrate tests',
      san: [`IP:${net.dst.addr}`],
    });
    return {
      src: ['-object', `tls-creds-x509,id=tls0,dir=${client},endpoint=client`],
      dst: ['-object', `tls-creds-x509,id=tls0,dir=${server},endpoint=server,verify-peer=on`],
    };
  });
  if (!on) return;
  const { net, src, dst } = on;
  await src.qmp.migrateSetParameters({ 'tls-creds': 'tls0', 'max-bandwidth': 0 });
  await dst.qmp.migrateSetParameters({ 'tls-creds': 'tls0' });
  await migrateAcross(net, src, dst);
  const done = await waitMigration(src.qmp, 60_000);
  assert.equal(done.status, 'completed', JSON.stringify(done));
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
  test(`two hosts, TLS: ${from} -> ${to}, the certificate names the destination's address`, (t) =>
    migrate(t, from, to));
}
