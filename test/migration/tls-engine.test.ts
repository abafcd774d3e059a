// Migration over TLS between two qmigrate VMs in this process, their TLS objects built here
// from certificates made at test time (the VM's own -object parsing is tested elsewhere):
// the main channel, the return path and every multifd channel go through TLS over tcp and
// unix, RAM arrives byte for byte, and each refusal fails both sides with the check's text,
// leaving the source's guest running and the destination's never started.
import assert from 'node:assert/strict';
import { randomFillSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { loadPskCreds } from '../../src/migration/tls/psk.js';
import type { TlsCreds, TlsObjects } from '../../src/migration/tls/types.js';
import type { MigrationInfo } from '../../src/qapi/types.js';
import type { Vm } from '../../src/vm/vm.js';
import { EXPIRED, makeCa, makeCredsDir, makePki, pkiRoot } from '../helpers/tls-certs.js';
import { tlsObjects, tlsVm, x509Creds } from '../helpers/tls-vm.js';

const MiB = 1 << 20;
const PEER_REFUSED =
  /^the source closed the TLS session before sending anything: it refused this destination's certificate or name/;

const creds = x509Creds;
const objects = (list: TlsCreds[], allowed: string[] = []) => tlsObjects(list, allowed);

/** A VM of `size` bytes of RAM (random and zero pages when `fill`), with these TLS objects. */
function vm(t: TestContext, tls: TlsObjects, size: number, fill: boolean, incoming?: string): Vm {
  const host = Buffer.alloc(size);
  if (fill) {
    randomFillSync(host, 0, size / 2);
    host.fill(0x5a, (size * 3) / 4);
  }
  return tlsVm(t, tls, host, incoming);
}

const info = (v: Vm) => v.execute('query-migrate') as Promise<MigrationInfo>;
const status = async (v: Vm) => ((await v.execute('query-status')) as { status: string }).status;

async function until(v: Vm, done: (i: MigrationInfo) => boolean, ms = 10_000): Promise<MigrationInfo> {
  for (const end = Date.now() + ms; ; await sleep(10)) {
    const i = await info(v);
    if (done(i)) return i;
    if (Date.now() > end) throw new Error(`still ${JSON.stringify(i)}`);
  }
}
const ended = (i: MigrationInfo) => ['completed', 'failed', 'cancelled'].includes(i.status ?? '');

/** Starts the destination listening and returns the uri the source migrates to. */
async function listen(dst: Vm, transport: 'tcp' | 'unix', dir: string): Promise<string> {
  const uri = transport === 'tcp' ? 'tcp:127.0.0.1:0' : `unix:${join(dir, 'mig.sock')}`;
  await dst.execute('migrate-incoming', { uri, 'exit-on-error': false });
  if (transport === 'unix') return uri;
  const port = ((await info(dst))['socket-address']![0] as { port: string }).port;
  return `tcp:127.0.0.1:${port}`;
}

interface Case {
  src: TlsObjects;
  dst: TlsObjects;
  transport?: 'tcp' | 'unix';
  multifd?: number;
  returnPath?: boolean;
  srcParams?: Record<string, unknown>;
  dstParams?: Record<string, unknown>;
  size?: number;
}

async function run(t: TestContext, c: Case) {
  const size = c.size ?? 32 * MiB;
  const dir = pkiRoot(t);
  const src = vm(t, c.src, size, true);
  const dst = vm(t, c.dst, size, false, 'defer');
  for (const [v, p] of [
    [src, { 'max-bandwidth': 0, ...c.srcParams }],
    [dst, c.dstParams],
  ] as const) {
    if (p && Object.keys(p).length) await v.execute('migrate-set-parameters', p);
    const caps = [
      ...(c.multifd ? [{ capability: 'multifd', state: true }] : []),
      ...(c.returnPath ? [{ capability: 'return-path', state: true }] : []),
    ];
    if (caps.length) await v.execute('migrate-set-capabilities', { capabilities: caps });
    if (c.multifd) await v.execute('migrate-set-parameters', { 'multifd-channels': c.multifd });
  }
  const uri = await listen(dst, c.transport ?? 'tcp', dir);
  const started = Date.now();
  await src.execute('migrate', { uri });
  const s = await until(src, ended);
  const ms = Date.now() - started;
  const d = await until(dst, ended, 5000).catch(async () => info(dst));
  return { src, dst, s, d, ms };
}

test('TLS qmigrate -> qmigrate: tcp and unix, one channel with return path, multifd 4: RAM equal', async (t) => {
  const pki = makePki(pkiRoot(t));
  const src = objects([creds('tls0', pki.client, 'client')]);
  const dst = objects([creds('tls0', pki.server, 'server')], ['CN=client,O=qmigrate tests']);
  const tls = { 'tls-creds': 'tls0' };
  for (const c of [
    { transport: 'tcp', returnPath: true },
    { transport: 'unix', srcParams: { 'tls-hostname': 'localhost' } },
    { transport: 'tcp', multifd: 4, dstParams: { 'tls-authz': 'auth0' } },
    { transport: 'unix', multifd: 4, srcParams: { 'tls-hostname': 'localhost' } },
  ] as const) {
    const r = await run(t, {
      src,
      dst,
      ...c,
      srcParams: { ...tls, ...('srcParams' in c ? c.srcParams : {}) },
      dstParams: { ...tls, ...('dstParams' in c ? c.dstParams : {}) },
    });
    const what = JSON.stringify(c);
    assert.equal(r.s.status, 'completed', `${what}: ${JSON.stringify(r.s)}`);
    assert.equal(r.d.status, 'completed', what);
    assert.equal(await status(r.dst), 'running', what);
    assert.ok(r.src.ram.blocks[0]!.host.equals(r.dst.ram.blocks[0]!.host), `${what}: RAM equal`);
    if (c.multifd) assert.ok(Number(r.s.ram?.['multifd-bytes']) > 16 * MiB, 'pages went over multifd');
  }
});

test('TLS refusals between qmigrate VMs: each side fails, says why, guest kept', async (t) => {
  const root = pkiRoot(t);
  const pki = makePki(root);
  const ca2 = makeCa(root, 'ca2');
  const client = objects([creds('tls0', pki.client, 'client')]);
  const server = objects([creds('tls0', pki.server, 'server')], ['CN=client,O=qmigrate tests']);
  const wrongCaServer = objects([creds('tls0', makeCredsDir(ca2, join(root, 's2'), 'server'), 'server')]);
  const expiredServer = objects([
    creds('tls0', makeCredsDir(pki.ca, join(root, 's3'), 'server', EXPIRED), 'server'),
  ]);
  const tls = { 'tls-creds': 'tls0' };
  const cases: [string, Case, RegExp | string, RegExp | string | undefined][] = [
    [
      'wrong CA',
      { src: client, dst: wrongCaServer, srcParams: tls, dstParams: tls },
      "The certificate hasn't got a known issuer",
      "The certificate hasn't got a known issuer",
    ],
    [
      'host name',
      { src: client, dst: server, srcParams: { ...tls, 'tls-hostname': 'wronghost' }, dstParams: tls },
      'Certificate does not match the hostname wronghost',
      PEER_REFUSED,
    ],
    [
      'expired',
      { src: client, dst: expiredServer, srcParams: tls, dstParams: tls },
      'The certificate has expired',
      PEER_REFUSED,
    ],
    [
      'authz',
      {
        src: client,
        dst: objects([creds('tls0', pki.server, 'server')], ['CN=someone else']),
        srcParams: tls,
        dstParams: { ...tls, 'tls-authz': 'auth0' },
      },
      /^Unable to write to socket: (Connection reset by peer|Broken pipe)$|^TLS/,
      'TLS x509 authz check for CN=client,O=qmigrate tests is denied',
    ],
    [
      'clear text to TLS',
      { src: client, dst: server, dstParams: tls },
      /^Unable to write to socket: (Connection reset by peer|Broken pipe)$/,
      // It never spoke TLS: the destination says so on stderr and listens on, as QEMU 10.0.
      undefined,
    ],
    [
      'TLS to clear text',
      { src: client, dst: server, srcParams: tls },
      'TLS handshake failed: The TLS connection was non-properly terminated.',
      /^load of migration failed: /,
    ],
    [
      'unix without tls-hostname',
      { src: client, dst: server, srcParams: tls, dstParams: tls, transport: 'unix' },
      'No hostname for certificate validation',
      // The source gives up before its hello: a connection that never spoke TLS.
      undefined,
    ],
  ];
  for (const [name, c, srcText, dstText] of cases) {
    const r = await run(t, c);
    assert.equal(r.s.status, 'failed', name);
    assert.ok(r.ms < 5000, `${name}: failed within seconds (${r.ms} ms)`);
    const m = (text: RegExp | string, got: unknown, side: string) =>
      typeof text === 'string'
        ? assert.equal(got, text, `${name}: ${side}`)
        : assert.match(String(got), text, `${name}: ${side}`);
    m(srcText, r.s['error-desc'], 'source');
    if (dstText === undefined) assert.equal(r.d.status, 'setup', `${name}: the destination listens on`);
    else {
      assert.equal(r.d.status, 'failed', `${name}: destination ${JSON.stringify(r.d)}`);
      m(dstText, r.d['error-desc'], 'destination');
    }
    assert.equal(await status(r.src), 'running', `${name}: the source's guest runs on`);
    assert.equal(await status(r.dst), 'inmigrate', `${name}: the destination never starts`);
  }
});

test('migrate_cancel during a TLS handshake with a silent peer: cancelled at once', async (t) => {
  const pki = makePki(pkiRoot(t));
  const silent = createServer(() => {});
  const conns: Socket[] = [];
  silent.on('connection', (s) => conns.push(s));
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  t.after(() => {
    for (const s of conns) s.destroy();
    silent.close();
  });
  const src = vm(t, objects([creds('tls0', pki.client, 'client')]), 4 * MiB, true);
  await src.execute('migrate-set-parameters', { 'tls-creds': 'tls0' });
  await src.execute('migrate', { uri: `tcp:127.0.0.1:${(silent.address() as { port: number }).port}` });
  await sleep(200);
  assert.equal((await info(src)).status, 'setup', 'waiting for the handshake');
  const at = Date.now();
  await src.execute('migrate_cancel');
  const i = await until(src, ended, 2000);
  assert.equal(i.status, 'cancelled');
  assert.ok(Date.now() - at < 500, 'at once');
  assert.equal(await status(src), 'running');
});

test('TLS with PSK credentials: multifd 2 over tcp; tls-authz checks the username', async (t) => {
  const dir = pkiRoot(t);
  writeFileSync(join(dir, 'keys.psk'), `qemu:${'ab'.repeat(32)}\nother:${'cd'.repeat(32)}\n`);
  const client = (username: string) =>
    objects([loadPskCreds({ id: 'tls0', dir, endpoint: 'client', username })]);
  const server = objects([loadPskCreds({ id: 'tls0', dir, endpoint: 'server' })], ['qemu']);
  const tls = { 'tls-creds': 'tls0' };
  const ok = await run(t, {
    src: client('qemu'),
    dst: server,
    multifd: 2,
    srcParams: tls,
    dstParams: { ...tls, 'tls-authz': 'auth0' },
  });
  assert.equal(ok.s.status, 'completed', JSON.stringify(ok.s));
  assert.ok(ok.src.ram.blocks[0]!.host.equals(ok.dst.ram.blocks[0]!.host), 'RAM equal');
  const denied = await run(t, {
    src: client('other'),
    dst: server,
    srcParams: tls,
    dstParams: { ...tls, 'tls-authz': 'auth0' },
  });
  assert.equal(denied.s.status, 'failed');
  assert.deepEqual(
    [denied.d.status, denied.d['error-desc']],
    ['failed', 'TLS PSK authz check for other is denied'],
  );
  assert.equal(await status(denied.dst), 'inmigrate');
});
