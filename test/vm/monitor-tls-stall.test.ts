// A TLS monitor that connects out (server=off) to a peer that accepts the TCP connection and
// then never answers the handshake: the VM must not wait for it for ever. QEMU 10.0 starts
// and leaves that monitor dead; qmigrate fails its start, as for any other handshake failure,
// once TLS_HANDSHAKE_TIMEOUT_MS has passed.
import assert from 'node:assert/strict';
import { createServer, type Socket } from 'node:net';
import { test } from 'node:test';
import { spawnQmigrate } from '../helpers/qmigrate.js';
import { makePki, pkiRoot } from '../helpers/tls-certs.js';

/** src/vm/chardev.ts TLS_HANDSHAKE_TIMEOUT_MS. */
const TLS_HANDSHAKE_TIMEOUT_MS = 10_000;

test('a TLS monitor connecting out to a silent peer gives up with a clear error', {
  timeout: 60_000,
}, async (t) => {
  const pki = makePki(pkiRoot(t));
  const held: Socket[] = [];
  const silent = createServer((s) => held.push(s));
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  t.after(() => {
    for (const s of held) s.destroy();
    silent.close();
  });
  const { port } = silent.address() as { port: number };
  const child = spawnQmigrate([
    'vm',
    '-machine',
    'none',
    '-object',
    `tls-creds-x509,id=t,dir=${pki.client},endpoint=client`,
    '-chardev',
    `socket,id=c,host=127.0.0.1,port=${port},tls-creds=t`,
    '-mon',
    'chardev=c,mode=control',
  ]);
  let stderr = '';
  child.stderr?.on('data', (d) => {
    stderr += d;
  });
  const t0 = performance.now();
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const limit = setTimeout(() => child.kill('SIGKILL'), TLS_HANDSHAKE_TIMEOUT_MS + 20_000);
  t.after(() => {
    clearTimeout(limit);
    child.kill('SIGKILL');
  });
  const code = await exited;
  const took = performance.now() - t0;
  assert.equal(code, 1, `exit code; stderr: ${stderr}`);
  assert.equal(
    stderr,
    `qmigrate: -chardev socket,id=c,host=127.0.0.1,port=${port},tls-creds=t: TLS handshake failed: no answer within ${TLS_HANDSHAKE_TIMEOUT_MS / 1000} s\n`,
  );
  assert.ok(took >= TLS_HANDSHAKE_TIMEOUT_MS - 500, `gave up after ${took} ms`);
  assert.equal(held.length, 1, 'the peer saw one connection');
});
