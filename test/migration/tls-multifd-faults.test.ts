// Multifd over TLS when one of the source's channels fails (reset by a proxy, as a firewall or
// a crashed peer would): the source fails with the handshake's text, its guest runs on, the
// destination never starts, and the destination does not blame its own certificate for the
// other channels the source then closed unused.
import assert from 'node:assert/strict';
import { randomFillSync } from 'node:crypto';
import { createServer, connect as netConnect, type Socket } from 'node:net';
import { type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { TlsEndpoint, TlsObjects } from '../../src/migration/tls/types.js';
import type { MigrationInfo } from '../../src/qapi/types.js';
import type { Vm } from '../../src/vm/vm.js';
import { makePki, pkiRoot } from '../helpers/tls-certs.js';
import { tlsObjects, tlsVm, x509Creds } from '../helpers/tls-vm.js';

const MiB = 1 << 20;

const objects = (id: string, dir: string, endpoint: TlsEndpoint) =>
  tlsObjects([x509Creds(id, dir, endpoint)]);

function vm(t: TestContext, tls: TlsObjects, size: number, incoming?: string): Vm {
  const host = Buffer.alloc(size);
  if (!incoming) randomFillSync(host);
  return tlsVm(t, tls, host, incoming);
}

const info = (v: Vm) => v.execute('query-migrate') as Promise<MigrationInfo>;
const status = async (v: Vm) => ((await v.execute('query-status')) as { status: string }).status;

async function ended(v: Vm, ms = 20_000): Promise<MigrationInfo> {
  for (const end = Date.now() + ms; ; await sleep(20)) {
    const i = await info(v);
    if (['completed', 'failed', 'cancelled'].includes(i.status ?? '')) return i;
    if (Date.now() > end) return i;
  }
}

/** A TCP proxy to `port` that resets its `reset`-th connection (from 0) at once. */
async function proxy(t: TestContext, port: number, reset: number): Promise<number> {
  let n = 0;
  const socks: Socket[] = [];
  const server = createServer((c) => {
    socks.push(c);
    if (n++ === reset) {
      c.resetAndDestroy();
      return;
    }
    const u = netConnect(port, '127.0.0.1');
    socks.push(u);
    c.pipe(u).pipe(c);
    for (const [a, b] of [
      [c, u],
      [u, c],
    ] as const) {
      a.on('error', () => b.destroy());
      a.on('close', () => b.destroy());
    }
  });
  t.after(() => {
    for (const s of socks) s.destroy();
    server.close();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as { port: number }).port;
}

for (const reset of [1, 3, 4]) {
  test(`multifd 4 over TLS, connection ${reset} reset: the source fails, the destination does not blame its certificate`, async (t) => {
    const pki = makePki(pkiRoot(t));
    const src = vm(t, objects('tls0', pki.client, 'client'), 32 * MiB);
    const dst = vm(t, objects('tls0', pki.server, 'server'), 32 * MiB, 'defer');
    for (const v of [src, dst]) {
      await v.execute('migrate-set-capabilities', { capabilities: [{ capability: 'multifd', state: true }] });
      await v.execute('migrate-set-parameters', { 'tls-creds': 'tls0', 'multifd-channels': 4 });
    }
    await dst.execute('migrate-incoming', { uri: 'tcp:127.0.0.1:0', 'exit-on-error': false });
    const port = Number(((await info(dst))['socket-address']![0] as { port: string }).port);
    await src.execute('migrate', { uri: `tcp:127.0.0.1:${await proxy(t, port, reset)}` });
    const s = await ended(src);
    assert.equal(s.status, 'failed', JSON.stringify(s));
    // A reset before the source's hello is a connect error, after it a handshake's.
    assert.match(String(s['error-desc']), /^TLS handshake failed: |Connection reset by peer$/);
    assert.equal(await status(src), 'running');
    const d = await ended(dst, 5000);
    assert.equal(d.status, 'failed', JSON.stringify(d));
    // The source accepted this destination's certificate on the other channels.
    assert.doesNotMatch(String(d['error-desc']), /: it refused this destination's certificate or name \(/);
    assert.match(String(d['error-desc']), /another of its channels/);
    assert.equal(await status(dst), 'inmigrate');
  });
}
