// Migration over TLS between every pair the engine must interoperate with: qmigrate ->
// qmigrate, qmigrate -> QEMU 10.0 and QEMU 10.0 -> qmigrate, each with its credentials made
// by `-object tls-creds-x509` from certificates made at test time. One channel over unix
// (tls-hostname, return path: both directions of one session) and multifd 4 over tcp (the
// address's host checked, the client's DN through the destination's authz-simple). A 256 MiB
// guest of mixed pages: `completed` on both sides, RAM equal byte for byte.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import type { MigrationCapabilityStatus, MigrationInfo } from '../../src/qapi/types.js';
import { writeMixedImage } from '../helpers/guest.js';
import {
  assertRamMigrated,
  type PeerKind,
  startPeer,
  waitMigration,
  waitRunstate,
} from '../helpers/peers.js';
import { makePki, pkiRoot } from '../helpers/tls-certs.js';

const MiB = 256;
const CLIENT_DN = 'CN=client,O=qmigrate tests';

async function migrate(t: TestContext, from: PeerKind, to: PeerKind, multifd: number) {
  const dir = pkiRoot(t);
  const pki = makePki(dir);
  const srcImg = join(dir, 'src.img');
  writeMixedImage(srcImg, MiB << 20, 13);
  writeFileSync(join(dir, 'dst.img'), '');
  const src = await startPeer(t, from, dir, 'src', srcImg, MiB, [
    ...['-object', `tls-creds-x509,id=tls0,dir=${pki.client},endpoint=client`],
  ]);
  const dst = await startPeer(t, to, dir, 'dst', join(dir, 'dst.img'), MiB, [
    ...['-incoming', 'defer'],
    ...['-object', `tls-creds-x509,id=tls0,dir=${pki.server},endpoint=server,verify-peer=on`],
    ...['-object', `authz-simple,id=auth0,identity=${CLIENT_DN.replace(/,/g, ',,')}`],
  ]);
  if (!src || !dst) return;
  const caps: MigrationCapabilityStatus[] = multifd
    ? [{ capability: 'multifd', state: true }]
    : [{ capability: 'return-path', state: true }];
  for (const p of [src, dst]) {
    await p.qmp.migrateSetCapabilities({ capabilities: caps });
    if (multifd) await p.qmp.migrateSetParameters({ 'multifd-channels': multifd });
  }
  await src.qmp.migrateSetParameters({
    'tls-creds': 'tls0',
    'max-bandwidth': 0,
    // A unix socket has no host name to check: name the certificate's.
    ...(multifd ? {} : { 'tls-hostname': 'localhost' }),
  });
  await dst.qmp.migrateSetParameters({ 'tls-creds': 'tls0', ...(multifd ? { 'tls-authz': 'auth0' } : {}) });
  let uri = multifd ? 'tcp:127.0.0.1:0' : `unix:${join(dir, 'mig.sock')}`;
  await dst.qmp.migrateIncoming({ uri });
  if (multifd) {
    const sa = (await dst.qmp.queryMigrate())['socket-address']?.[0];
    assert.ok(sa?.type === 'inet');
    uri = `tcp:127.0.0.1:${sa.port}`;
  }
  await src.qmp.migrate({ uri });
  const done: MigrationInfo = await waitMigration(src.qmp);
  assert.equal(done.status, 'completed', JSON.stringify(done));
  if (multifd)
    assert.ok(Number(done.ram?.['multifd-bytes']) > 100 << 20, 'pages went over the multifd channels');
  const dstDone = await waitMigration(dst.qmp);
  assert.equal(dstDone.status, 'completed', JSON.stringify(dstDone));
  await waitRunstate(dst.qmp, 'running');
  await assertRamMigrated(src, dst, dir, MiB, srcImg);
}

const PAIRS: [PeerKind, PeerKind][] = [
  ['qmigrate', 'qmigrate'],
  ['qmigrate', '10.0'],
  ['10.0', 'qmigrate'],
];
for (const [from, to] of PAIRS) {
  test(`TLS ${from} -> ${to}, one channel over unix with return path`, (t) => migrate(t, from, to, 0));
  test(`TLS ${from} -> ${to}, multifd 4 over tcp, authz`, (t) => migrate(t, from, to, 4));
}
