// Migration over TLS between two "hosts" (network namespaces joined by a veth,
// test/helpers/netns.ts): the destination's certificate names its namespace address (SAN
// IP:10.x.y.z), which the source checks against the tcp address it connects to, as QEMU does
// without tls-hostname; the destination verifies the client's certificate. qmigrate <->
// qmigrate and qmigrate <-> QEMU 10.0: `completed`, RAM equal byte for byte. And the link cut
// mid-handshake: a qmigrate source gives up after its 10 s handshake bound, its guest running
// (QEMU 10.0 blocks its main loop in a read there, its monitor silent until TCP gives up).
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { assertRamMigrated, type PeerKind, waitMigration, waitRunstate } from '../helpers/peers.js';
import { makeCa, makeCredsDir } from '../helpers/tls-certs.js';
import { migrateAcross, onTwoHosts } from './two-hosts-peers.js';

const MiB = 32;

function tlsPeers(t: TestContext, from: PeerKind, to: PeerKind) {
  return onTwoHosts(t, from, to, MiB, (net, dir) => {
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
}

async function migrate(t: TestContext, from: PeerKind, to: PeerKind) {
  const on = await tlsPeers(t, from, to);
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

test('two hosts, TLS: the link cut mid-handshake, a qmigrate source fails within its handshake bound', async (t) => {
  const on = await tlsPeers(t, 'qmigrate', 'qmigrate');
  if (!on) return;
  const { net, src, dst } = on;
  await src.qmp.migrateSetParameters({ 'tls-creds': 'tls0' });
  await dst.qmp.migrateSetParameters({ 'tls-creds': 'tls0' });
  // The destination's replies at 250 bytes/s: its SYN-ACK passes, its certificate flight
  // (larger than the burst) is held, so the handshake is mid-way when the link goes.
  net.exec(net.dst, [
    'tc',
    'qdisc',
    'add',
    'dev',
    net.dst.ifname,
    'root',
    'tbf',
    'rate',
    '2kbit',
    'burst',
    '1600',
    'latency',
    '60s',
  ]);
  await dst.qmp.migrateIncoming({ uri: `tcp:${net.dst.addr}:4444` });
  await src.qmp.migrate({ uri: `tcp:${net.dst.addr}:4444` });
  await sleep(1200);
  assert.match(net.exec(net.src, ['ss', '-Htn', 'state', 'established']), new RegExp(`${net.dst.addr}:4444`));
  assert.equal((await src.qmp.queryMigrate()).status, 'setup', 'the handshake is under way');
  net.linkDown(net.dst);
  const t0 = Date.now();
  const end = await waitMigration(src.qmp, 20_000);
  assert.equal(end.status, 'failed', JSON.stringify(end));
  assert.equal(end['error-desc'], 'TLS handshake failed: no answer from the peer in 10 s');
  assert.ok(Date.now() - t0 < 15_000, `failed within 15 s of the cut (${Date.now() - t0} ms)`);
  assert.equal((await src.qmp.queryStatus()).status, 'running');
  assert.notEqual((await dst.qmp.queryStatus()).status, 'running', 'the destination never runs the guest');
});
