// The TLS step of a migration channel (src/migration/tls/tls.ts) between two sockets of this
// process, with credentials objects built here from certificates made at test time: QEMU's
// texts for the credentials lookup and for every check, both ends bounded and cancellable.
import assert from 'node:assert/strict';
import { connect, createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import type { TLSSocket } from 'node:tls';
import { distinguishedName } from '../../src/migration/tls/dn.js';
import { TLS_HANDSHAKE_TIMEOUT_MS, tlsClientChannel, tlsServerChannel } from '../../src/migration/tls/tls.js';
import type { TlsObjects } from '../../src/migration/tls/types.js';
import { EXPIRED, makeCa, makeCredsDir, makePki, pkiRoot } from '../helpers/tls-certs.js';
import { tlsObjects, x509Creds } from '../helpers/tls-vm.js';

const creds = x509Creds;
const objects = tlsObjects;

/** A connected pair of plain sockets: [client end, server end]. */
async function pair(t: TestContext): Promise<[Socket, Socket]> {
  const server = createServer({ pauseOnConnect: true });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const accepted = new Promise<Socket>((r) => server.once('connection', r));
  const c = connect((server.address() as { port: number }).port, '127.0.0.1');
  await new Promise((r) => c.once('connect', r));
  const s = await accepted;
  server.close();
  t.after(() => {
    c.destroy();
    s.destroy();
  });
  return [c, s];
}

const outcome = (p: Promise<TLSSocket>) =>
  p.then(
    (ts) => {
      // As a source writing its stream would: the peer gets the last handshake message.
      ts.destroySoon();
      return 'ok';
    },
    (e: Error) => e.message,
  );

async function handshake(
  t: TestContext,
  client: TlsObjects,
  server: TlsObjects,
  o: { hostname?: string; authz?: string } = {},
): Promise<[string, string]> {
  const [c, s] = await pair(t);
  const started = Date.now();
  const r = await Promise.all([
    outcome(tlsClientChannel(c, { objects: client, creds: 'tls0', hostname: o.hostname ?? 'localhost' })),
    outcome(tlsServerChannel(s, { objects: server, creds: 'tls0', authz: o.authz ?? '' })),
  ]);
  assert.ok(Date.now() - started < 5000, 'both ends know within seconds');
  return r;
}

test('TLS channel: a good pair, data both ways; the client DN as GnuTLS prints it', async (t) => {
  const pki = makePki(pkiRoot(t));
  const [c, s] = await pair(t);
  const server = tlsServerChannel(s, {
    objects: objects([creds('tls0', pki.server, 'server')], ['CN=client,O=qmigrate tests']),
    creds: 'tls0',
    authz: 'auth0',
  });
  const ct = await tlsClientChannel(c, {
    objects: objects([creds('tls0', pki.client, 'client')]),
    creds: 'tls0',
    hostname: '127.0.0.1',
  });
  const big = Buffer.alloc(4 << 20, 7);
  // The server's end is handed over once the client has sent something.
  ct.write(big);
  const st = await server;
  t.after(() => {
    ct.destroy();
    st.destroy();
  });
  const got: Buffer[] = [];
  let n = 0;
  const all = new Promise<void>((r) =>
    st.on('data', (d: Buffer) => {
      got.push(d);
      n += d.length;
      if (n === big.length) r();
    }),
  );
  await all;
  assert.ok(Buffer.concat(got).equals(big));
  st.write('pong');
  assert.equal(String(await new Promise((r) => ct.once('data', r))), 'pong');
  assert.equal(distinguishedName(st.getPeerX509Certificate()!), 'CN=client,O=qmigrate tests');
});

test('TLS channel: the credentials lookup, with QEMU 10.0 texts', async (t) => {
  const pki = makePki(pkiRoot(t));
  const client = objects([creds('tls0', pki.client, 'client')]);
  const server = objects([creds('tls0', pki.server, 'server')]);
  const [c, s] = await pair(t);
  await assert.rejects(tlsClientChannel(c, { objects: server, creds: 'tls0', hostname: 'localhost' }), {
    message: 'Expected TLS credentials for a client endpoint',
  });
  await assert.rejects(tlsServerChannel(s, { objects: client, creds: 'tls0' }), {
    message: 'Expected TLS credentials for a server endpoint',
  });
  await assert.rejects(tlsClientChannel(c, { objects: client, creds: 'nope', hostname: 'localhost' }), {
    message: "No TLS credentials with id 'nope'",
  });
  await assert.rejects(tlsClientChannel(c, { objects: objects([], []), creds: 'auth0', hostname: 'x' }), {
    message: "Object with id 'auth0' is not TLS credentials",
  });
  await assert.rejects(tlsClientChannel(c, { objects: client, creds: 'tls0' }), {
    message: 'No hostname for certificate validation',
  });
  await assert.rejects(tlsServerChannel(s, { objects: server, creds: 'tls0', authz: 'nope' }), {
    message: 'Cannot find QAuthZ object ID nope',
  });
  const noVerify = objects([creds('tls0', pki.server, 'server', false)], []);
  await assert.rejects(tlsServerChannel(s, { objects: noVerify, creds: 'tls0', authz: 'auth0' }), {
    message: /^tls-authz 'auth0' needs the client's certificate, .*verify-peer=off/,
  });
});

test('TLS channel refusals: wrong CA, host name, expired, authz; each end says why', async (t) => {
  const root = pkiRoot(t);
  const pki = makePki(root);
  const ca2 = makeCa(root, 'ca2');
  const client = objects([creds('tls0', pki.client, 'client')]);
  const server = objects([creds('tls0', pki.server, 'server')], ['CN=someone else']);
  const otherServer = objects([creds('tls0', makeCredsDir(ca2, join(root, 's2'), 'server'), 'server')]);
  const otherClient = objects([creds('tls0', makeCredsDir(ca2, join(root, 'c2'), 'client'), 'client')]);
  const expServer = objects([
    creds('tls0', makeCredsDir(pki.ca, join(root, 's3'), 'server', EXPIRED), 'server'),
  ]);
  const expClient = objects([
    creds('tls0', makeCredsDir(pki.ca, join(root, 'c3'), 'client', EXPIRED), 'client'),
  ]);

  const [cw] = await handshake(t, client, otherServer);
  assert.equal(cw, "The certificate hasn't got a known issuer");
  const [, sw] = await handshake(t, otherClient, server);
  assert.equal(sw, "The certificate hasn't got a known issuer");
  const [ch] = await handshake(t, client, server, { hostname: 'wronghost' });
  assert.equal(ch, 'Certificate does not match the hostname wronghost');
  const [ce] = await handshake(t, client, expServer);
  assert.equal(ce, 'The certificate has expired');
  const [, se] = await handshake(t, expClient, server);
  assert.equal(se, 'The certificate has expired');
  const [, sa] = await handshake(t, client, server, { authz: 'auth0' });
  assert.equal(sa, 'TLS x509 authz check for CN=client,O=qmigrate tests is denied');
});

test('TLS channel: clear text to a TLS server, TLS to a silent or closing peer', async (t) => {
  const pki = makePki(pkiRoot(t));
  const server = objects([creds('tls0', pki.server, 'server')]);
  const client = objects([creds('tls0', pki.client, 'client')]);
  let [c, s] = await pair(t);
  const srv = outcome(tlsServerChannel(s, { objects: server, creds: 'tls0' }));
  c.write(Buffer.from('5145564d00000003', 'hex')); // a migration stream's header
  assert.equal(await srv, 'TLS handshake failed: An unexpected TLS packet was received.');

  [c, s] = await pair(t);
  s.resume();
  s.once('data', () => s.destroy()); // a clear-text destination that gives up on the hello
  assert.equal(
    await outcome(tlsClientChannel(c, { objects: client, creds: 'tls0', hostname: 'localhost' })),
    'TLS handshake failed: The TLS connection was non-properly terminated.',
  );

  // A silent peer: migrate_cancel (the signal) ends the wait at once.
  [c, s] = await pair(t);
  const abort = new AbortController();
  const started = Date.now();
  const pending = outcome(
    tlsClientChannel(c, { objects: client, creds: 'tls0', hostname: 'localhost' }, abort.signal),
  );
  setTimeout(() => abort.abort(new Error('cancelled')), 100);
  assert.equal(await pending, 'cancelled');
  assert.ok(Date.now() - started < 1000);
  assert.ok(c.destroyed, 'the connection is closed');
  [c, s] = await pair(t);
  const abort2 = new AbortController();
  const pending2 = outcome(tlsServerChannel(s, { objects: server, creds: 'tls0' }, abort2.signal));
  setTimeout(() => abort2.abort(new Error('cancelled')), 100);
  assert.equal(await pending2, 'cancelled');
  assert.ok(TLS_HANDSHAKE_TIMEOUT_MS <= 10_000, 'a silent peer is given up on in seconds');
});
