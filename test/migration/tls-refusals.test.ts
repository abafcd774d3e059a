// TLS refusals with QEMU 10.0 at the other end, and with peers of our own for what QEMU
// cannot be (it refuses an expired certificate of its own when the object is created): wrong
// CA, host name mismatch, expired certificate, client not in the authz list, a clear-text
// source against a TLS destination, a TLS source against a clear-text destination. Each ends
// `failed` within seconds with the check's text on the qmigrate side (QEMU 10.0's where it
// has one); the source keeps running with its RAM intact and the destination never starts
// the guest. A QEMU 10.0 destination only prints a failed handshake and stays in `setup`; a
// qmigrate destination does so too for a connection that never spoke TLS (clear text).
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { connect, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import * as tls from 'node:tls';
import type { MigrationInfo } from '../../src/qapi/types.js';
import { writeMixedImage } from '../helpers/guest.js';
import { type Peer, type PeerKind, startPeer, waitMigration } from '../helpers/peers.js';
import { EXPIRED, makeCa, makeCredsDir, makePki, pkiRoot } from '../helpers/tls-certs.js';

const MiB = 16;
const DENIED = 'TLS x509 authz check for CN=client,O=qmigrate tests is denied';
const TERMINATED = 'TLS handshake failed: The TLS connection was non-properly terminated.';
const REFUSED_BY_SOURCE = /^the source closed the TLS session before sending anything/;
const RESET = /^Unable to write to socket: (Connection reset by peer|Broken pipe)$/;

interface Pki {
  dir: string;
  client: string;
  server: string;
  /** A server directory whose certificate another CA signed. */
  otherServer: string;
}

function pki(t: TestContext): Pki {
  const dir = pkiRoot(t);
  const p = makePki(dir);
  const other = makeCredsDir(makeCa(dir, 'ca2'), join(dir, 'other-server'), 'server');
  return { dir, client: p.client, server: p.server, otherServer: other };
}

interface Side {
  /** Credentials directory, or none for a clear-text end. */
  creds?: string;
  params?: Record<string, unknown>;
  extra?: string[];
}

/** What each side ended with, and how long the source took to fail. */
interface Outcome {
  src: MigrationInfo;
  dst: MigrationInfo;
  ms: number;
}

let runs = 0;

async function refuse(t: TestContext, p: Pki, from: PeerKind, to: PeerKind, s: Side, d: Side) {
  const n = ++runs;
  const img = join(p.dir, `src-${n}.img`);
  writeMixedImage(img, MiB << 20, 21);
  const dstImg = join(p.dir, `dst-${n}.img`);
  writeFileSync(dstImg, '');
  const obj = (dir: string, ep: string) => ['-object', `tls-creds-x509,id=tls0,dir=${dir},endpoint=${ep}`];
  const src = await startPeer(t, from, p.dir, `src-${n}`, img, MiB, [
    ...(s.creds ? obj(s.creds, 'client') : []),
    ...(s.extra ?? []),
  ]);
  const dst = await startPeer(t, to, p.dir, `dst-${n}`, dstImg, MiB, [
    '-incoming',
    'defer',
    ...(d.creds ? obj(d.creds, 'server') : []),
    ...(d.extra ?? []),
  ]);
  if (!src || !dst) return undefined;
  await src.qmp.migrateSetParameters({ ...(s.creds ? { 'tls-creds': 'tls0' } : {}), ...s.params });
  await dst.qmp.migrateSetParameters({ ...(d.creds ? { 'tls-creds': 'tls0' } : {}), ...d.params });
  await dst.qmp.migrateIncoming({ uri: 'tcp:127.0.0.1:0', 'exit-on-error': false });
  const sa = (await dst.qmp.queryMigrate())['socket-address']?.[0];
  assert.ok(sa?.type === 'inet');
  const started = Date.now();
  await src.qmp.migrate({ uri: `tcp:127.0.0.1:${sa.port}` });
  const srcInfo = await waitMigration(src.qmp, 10_000);
  const ms = Date.now() - started;
  // A qmigrate destination fails; QEMU's stays in setup: a moment is enough to see it does.
  const dstInfo = await settle(dst, to === 'qmigrate' ? 3000 : 300);
  await assertKept(src, img, dst);
  return { src: srcInfo, dst: dstInfo, ms } satisfies Outcome;
}

async function settle(dst: Peer, ms = 3000): Promise<MigrationInfo> {
  for (const end = Date.now() + ms; Date.now() < end; await sleep(20)) {
    const i = await dst.qmp.queryMigrate();
    if (i.status === 'failed') return i;
  }
  return dst.qmp.queryMigrate();
}

/** The source runs on with its RAM as it was; the destination never started the guest. */
async function assertKept(src: Peer, img: string, dst: Peer): Promise<void> {
  assert.equal((await src.qmp.queryStatus()).status, 'running', 'the source guest runs on');
  const dump = `${img}.dump`;
  await src.qmp.pmemsave({ val: 0, size: MiB << 20, filename: dump });
  assert.ok(readFileSync(dump).equals(readFileSync(img)), 'the source RAM is intact');
  assert.equal((await dst.qmp.queryStatus()).status, 'inmigrate', 'the destination never starts');
}

function expect(o: Outcome, src: string | RegExp, dst: string | RegExp | undefined, what: string): void {
  assert.equal(o.src.status, 'failed', `${what}: source ${JSON.stringify(o.src)}`);
  assert.ok(o.ms < 5000, `${what}: the source failed within seconds (${o.ms} ms)`);
  const is = (want: string | RegExp, got: unknown, side: string) =>
    typeof want === 'string'
      ? assert.equal(got, want, `${what}: ${side}`)
      : assert.match(String(got), want, `${what}: ${side}`);
  is(src, o.src['error-desc'], 'source error-desc');
  if (dst === undefined) return; // QEMU's destination: it prints the error and waits on
  assert.equal(o.dst.status, 'failed', `${what}: destination ${JSON.stringify(o.dst)}`);
  is(dst, o.dst['error-desc'], 'destination error-desc');
}

const ALLOW_NOBODY = ['-object', 'authz-simple,id=auth0,identity=CN=nobody'];

test('qmigrate source, QEMU 10.0 destination: each refusal', async (t) => {
  const p = pki(t);
  const run = (s: Side, d: Side) => refuse(t, p, 'qmigrate', '10.0', s, d);
  const wrongCa = await run({ creds: p.client }, { creds: p.otherServer });
  if (!wrongCa) return;
  expect(wrongCa, "The certificate hasn't got a known issuer", undefined, 'wrong CA');
  const host = (await run(
    { creds: p.client, params: { 'tls-hostname': 'wronghost' } },
    { creds: p.server },
  ))!;
  expect(host, 'Certificate does not match the hostname wronghost', undefined, 'host name');
  const authz = (await run(
    { creds: p.client },
    { creds: p.server, params: { 'tls-authz': 'auth0' }, extra: ALLOW_NOBODY },
  ))!;
  expect(authz, RESET, undefined, 'authz');
  const clear = (await run({}, { creds: p.server }))!;
  expect(clear, RESET, undefined, 'clear text to TLS');
  assert.equal(clear.dst.status, 'setup', 'the destination listens on');
  const toClear = (await run({ creds: p.client }, {}))!;
  expect(toClear, TERMINATED, undefined, 'TLS to clear text');
});

test('QEMU 10.0 source, qmigrate destination: each refusal', async (t) => {
  const p = pki(t);
  const run = (s: Side, d: Side) => refuse(t, p, '10.0', 'qmigrate', s, d);
  const wrongCa = await run({ creds: p.client }, { creds: p.otherServer });
  if (!wrongCa) return;
  // Both ends find the other's issuer unknown.
  expect(
    wrongCa,
    /^The certificate hasn't got a known issuer$|^TLS handshake failed/,
    // QEMU's GnuTLS sends no certificate to a server whose CA did not sign it; the
    // destination then says what QEMU 10.0 says in its place.
    /^(The certificate hasn't got a known issuer|Verify failed: No certificate was found\.)$/,
    'wrong CA',
  );
  const host = (await run(
    { creds: p.client, params: { 'tls-hostname': 'wronghost' } },
    { creds: p.server },
  ))!;
  expect(host, 'Certificate does not match the hostname wronghost', REFUSED_BY_SOURCE, 'host name');
  const authz = (await run(
    { creds: p.client },
    { creds: p.server, params: { 'tls-authz': 'auth0' }, extra: ALLOW_NOBODY },
  ))!;
  expect(authz, /./, DENIED, 'authz');
  const clear = (await run({}, { creds: p.server }))!;
  // A connection that never spoke TLS: printed, and the destination listens on (as QEMU).
  expect(clear, /./, undefined, 'clear text to TLS');
  assert.equal(clear.dst.status, 'setup', 'the destination listens on');
  const toClear = (await run({ creds: p.client }, {}))!;
  expect(toClear, TERMINATED, /^load of migration failed: /, 'TLS to clear text');
});

test('qmigrate to qmigrate processes: authz and a clear-text source', async (t) => {
  const p = pki(t);
  const run = (s: Side, d: Side) => refuse(t, p, 'qmigrate', 'qmigrate', s, d);
  const authz = (await run(
    { creds: p.client },
    { creds: p.server, params: { 'tls-authz': 'auth0' }, extra: ALLOW_NOBODY },
  ))!;
  expect(authz, /./, DENIED, 'authz');
  const clear = (await run({}, { creds: p.server }))!;
  expect(clear, RESET, undefined, 'clear text to TLS');
  assert.equal(clear.dst.status, 'setup', 'the destination listens on');
});

/** A TLS server of our own that serves `dir`'s server certificate, and counts what it is sent. */
async function tlsServer(t: TestContext, dir: string): Promise<{ port: number; bytes: () => number }> {
  let bytes = 0;
  const f = (n: string) => readFileSync(join(dir, n));
  const server: Server = tls.createServer(
    { cert: f('server-cert.pem'), key: f('server-key.pem'), ca: f('ca-cert.pem'), maxVersion: 'TLSv1.2' },
    (s) => {
      s.on('data', (d: Buffer) => {
        bytes += d.length;
      });
      s.on('error', () => {});
    },
  );
  server.on('tlsClientError', () => {});
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => server.close());
  return { port: (server.address() as { port: number }).port, bytes: () => bytes };
}

test('expired certificates: a qmigrate source refuses the server, a destination the client', async (t) => {
  const p = pki(t);
  const ca = { name: 'ca', key: join(p.dir, 'ca', 'ca-key.pem'), cert: join(p.dir, 'ca', 'ca-cert.pem') };
  const expiredServer = makeCredsDir(ca, join(p.dir, 'expired-server'), 'server', EXPIRED);
  const expiredClient = makeCredsDir(ca, join(p.dir, 'expired-client'), 'client', EXPIRED);
  const img = join(p.dir, 'src.img');
  writeMixedImage(img, MiB << 20, 5);
  writeFileSync(join(p.dir, 'dst.img'), '');

  // The source: a server that serves an expired certificate.
  const peer = await tlsServer(t, expiredServer);
  const src = (await startPeer(t, 'qmigrate', p.dir, 'src', img, MiB, [
    ...['-object', `tls-creds-x509,id=tls0,dir=${p.client},endpoint=client`],
  ]))!;
  await src.qmp.migrateSetParameters({ 'tls-creds': 'tls0' });
  const started = Date.now();
  await src.qmp.migrate({ uri: `tcp:127.0.0.1:${peer.port}` });
  const s = await waitMigration(src.qmp, 10_000);
  assert.deepEqual([s.status, s['error-desc']], ['failed', 'The certificate has expired']);
  assert.ok(Date.now() - started < 5000);
  await sleep(100);
  assert.equal(peer.bytes(), 0, 'not a byte of the stream went out');
  assert.equal((await src.qmp.queryStatus()).status, 'running');

  // The destination: a client that presents an expired certificate.
  const dst = (await startPeer(t, 'qmigrate', p.dir, 'dst', join(p.dir, 'dst.img'), MiB, [
    ...['-incoming', 'defer'],
    ...['-object', `tls-creds-x509,id=tls0,dir=${p.server},endpoint=server`],
  ]))!;
  await dst.qmp.migrateSetParameters({ 'tls-creds': 'tls0' });
  await dst.qmp.migrateIncoming({ uri: 'tcp:127.0.0.1:0', 'exit-on-error': false });
  const sa = (await dst.qmp.queryMigrate())['socket-address']?.[0];
  assert.ok(sa?.type === 'inet');
  const f = (n: string) => readFileSync(join(expiredClient, n));
  const raw: Socket = connect(Number(sa.port), '127.0.0.1');
  const c = tls.connect({
    socket: raw,
    ca: f('ca-cert.pem'),
    cert: f('client-cert.pem'),
    key: f('client-key.pem'),
    servername: 'localhost',
  });
  c.on('error', () => {});
  c.on('secureConnect', () => c.write(Buffer.from('5145564d00000003', 'hex')));
  t.after(() => c.destroy());
  const d = await settle(dst);
  assert.deepEqual([d.status, d['error-desc']], ['failed', 'The certificate has expired']);
  assert.equal((await dst.qmp.queryStatus()).status, 'inmigrate');
});
