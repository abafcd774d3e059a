// QmpClient over TLS to QEMU 10.0's TLS monitor (tls-creds-x509 endpoint=server and
// `-chardev socket,...,tls-creds=ID`): with the right CA, name and client certificate the
// greeting and commands work; a wrong CA, a wrong name, a missing or foreign client
// certificate and a clear-text monitor each fail with TlsHandshakeError (QMP_TLS) naming the
// check; a peer that never answers the handshake is bounded by the connect timeout.
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { ArgumentError } from '../../src/errors.js';
import { QmpClient, readX509CredsDir } from '../../src/qmp/client.js';
import { ConnectError, TlsHandshakeError } from '../../src/qmp/errors.js';
import { type RunningQemu, requireQemu, startQemu } from '../helpers/qemu.js';
import { makeCa, makeCredsDir, makePki, pkiRoot } from '../helpers/tls-certs.js';
import { chardevPort, tlsMonitorArgs } from '../helpers/tls-monitor.js';

async function tlsQemu(
  t: import('node:test').TestContext,
  dir: string,
  verifyPeer: boolean,
): Promise<{ q: RunningQemu; port: number; plainPort: number } | undefined> {
  const bin = requireQemu(t, '10.0');
  if (!bin) return undefined;
  const plain = [
    '-chardev',
    'socket,id=plain,host=127.0.0.1,port=0,server=on,wait=off',
    '-mon',
    'chardev=plain,mode=control',
  ];
  const q = await startQemu(bin, [...tlsMonitorArgs(dir, verifyPeer), ...plain]);
  t.after(() => q.stop());
  return { q, port: await chardevPort(q.qmp), plainPort: await chardevPort(q.qmp, 'plain') };
}

async function refusal(p: Promise<QmpClient>): Promise<TlsHandshakeError> {
  const e = await p.then(
    async (c) => {
      await c.close();
      assert.fail('connected');
    },
    (err: unknown) => err,
  );
  assert.ok(e instanceof TlsHandshakeError, String(e));
  assert.ok(e instanceof ConnectError);
  assert.equal(e.code, 'QMP_TLS');
  return e;
}

test('QEMU 10.0 TLS monitor, verify-peer=on: greeting, negotiation and commands over TLS', async (t) => {
  const root = pkiRoot(t);
  const pki = makePki(root);
  const qemu = await tlsQemu(t, pki.server, true);
  if (!qemu) return;
  const qmp = await QmpClient.connect(
    { host: '127.0.0.1', port: qemu.port },
    { tls: readX509CredsDir(pki.client), timeout: 5000 },
  );
  try {
    assert.equal(qmp.greeting.QMP.version.qemu.major, 10);
    assert.equal((await qmp.queryStatus()).status, 'running');
    const name = await qmp.executeRaw('query-name');
    assert.deepEqual(name, {});
  } finally {
    await qmp.close();
  }
});

test('QEMU 10.0 TLS monitor: wrong CA, wrong name, missing and foreign client certificates, clear text', async (t) => {
  const root = pkiRoot(t);
  const pki = makePki(root);
  const other = makeCa(root, 'other');
  const foreign = makeCredsDir(other, join(root, 'foreign'), 'client');
  const caOnly = join(root, 'ca-only');
  mkdirSync(caOnly);
  writeFileSync(join(caOnly, 'ca-cert.pem'), readX509CredsDir(pki.client).ca as Buffer);
  const qemu = await tlsQemu(t, pki.server, true);
  if (!qemu) return;
  const at = { host: '127.0.0.1', port: qemu.port };
  const good = readX509CredsDir(pki.client);

  const ca = await refusal(
    QmpClient.connect(at, { tls: { ...good, ca: readX509CredsDir(foreign).ca }, timeout: 5000 }),
  );
  assert.equal(ca.check, 'unknown-ca');
  assert.match(
    ca.message,
    /^cannot open a QMP session with 127\.0\.0\.1:\d+: TLS: the server's certificate is not signed by a CA we trust/,
  );

  const name = await refusal(
    QmpClient.connect(at, { tls: { ...good, serverName: 'wronghost' }, timeout: 5000 }),
  );
  assert.equal(name.check, 'hostname');
  assert.match(
    name.message,
    /does not match the name 'wronghost' \(it names DNS:localhost, IP Address:127\.0\.0\.1\)/,
  );

  const started = Date.now();
  const none = await refusal(QmpClient.connect(at, { tls: readX509CredsDir(caOnly), timeout: 5000 }));
  assert.equal(none.check, 'client-certificate');
  assert.match(none.message, /requires a client certificate \(verify-peer=on\) and none was given/);
  assert.ok(Date.now() - started < 4000, 'refused at once, not at the timeout');

  const foreignCert = await refusal(QmpClient.connect(at, { tls: readX509CredsDir(foreign), timeout: 5000 }));
  // QEMU's CA is not the foreign one: with the foreign CA our own check fails first.
  assert.equal(foreignCert.check, 'unknown-ca');
  const theirs = await refusal(
    QmpClient.connect(at, { tls: { ...readX509CredsDir(foreign), ca: good.ca }, timeout: 5000 }),
  );
  assert.equal(theirs.check, 'client-certificate');
  assert.match(theirs.message, /refused our client certificate/);

  // A clear-text monitor answers the ClientHello with its greeting.
  const plainAt = { host: '127.0.0.1', port: qemu.plainPort };
  const clear = await refusal(QmpClient.connect(plainAt, { tls: good, timeout: 5000 }));
  assert.equal(clear.check, 'not-tls');
  // ...and the monitor still serves a right client afterwards.
  const ok = await QmpClient.connect(at, { tls: good, timeout: 5000 });
  assert.equal((await ok.queryStatus()).status, 'running');
  await ok.close();
});

test('TLS handshake with a peer that never answers: ConnectError within the connect timeout', async (t) => {
  const root = pkiRoot(t);
  const pki = makePki(root);
  const held: import('node:net').Socket[] = [];
  const server: Server = createServer((s) => held.push(s));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => {
    for (const s of held) s.destroy();
    server.close();
  });
  const port = (server.address() as { port: number }).port;
  const started = Date.now();
  const e = await QmpClient.connect(
    { host: '127.0.0.1', port },
    { tls: readX509CredsDir(pki.client), timeout: 400 },
  ).then(
    () => assert.fail('connected'),
    (err: unknown) => err,
  );
  assert.ok(e instanceof ConnectError && !(e instanceof TlsHandshakeError), String(e));
  assert.match((e as Error).message, /no QMP session within 400 ms/);
  assert.ok(Date.now() - started < 2000);
});

test('readX509CredsDir: QEMU file names; a missing CA or half a key pair is refused', (t) => {
  const root = pkiRoot(t);
  const pki = makePki(root);
  const o = readX509CredsDir(pki.client);
  assert.ok(o.ca && o.cert && o.key);
  assert.equal(o.crl, undefined);
  assert.equal(readX509CredsDir(pki.server).cert, undefined, 'a server dir has no client pair');
  assert.throws(
    () => readX509CredsDir(join(root, 'nowhere')),
    (e: unknown) => e instanceof ArgumentError && /has no ca-cert\.pem/.test(e.message),
  );
  const half = join(root, 'half');
  mkdirSync(half);
  writeFileSync(join(half, 'ca-cert.pem'), o.ca as Buffer);
  writeFileSync(join(half, 'client-cert.pem'), o.cert as Buffer);
  assert.throws(() => readX509CredsDir(half), /has client-cert\.pem but no client-key\.pem/);
});
