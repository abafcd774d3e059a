// Clients that are not TLS at a TLS monitor of `qmigrate vm`: each refused client gets one line
// on stderr that says what went wrong in GnuTLS's words (as the migration side says it,
// src/migration/tls/tls.ts handshakeFailure), not OpenSSL's internal error string with its source
// path and a trailing newline. QEMU 10.0 prints nothing for them. The monitor keeps answering.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import * as tls from 'node:tls';
import { spawnQmigrate } from '../helpers/qmigrate.js';
import { makePki, pkiRoot } from '../helpers/tls-certs.js';
import { freePort, tlsMonitorArgs } from '../helpers/tls-monitor.js';

async function until(what: string, ok: () => boolean, ms = 20_000): Promise<void> {
  const end = performance.now() + ms;
  while (!ok()) {
    assert.ok(performance.now() < end, `${what} within ${ms} ms`);
    await sleep(50);
  }
}

/** A TCP connection to the monitor, retried while the VM starts. */
async function open(port: number): Promise<Socket> {
  const end = performance.now() + 20_000;
  for (;;) {
    try {
      return await new Promise<Socket>((res, rej) => {
        const s = connect(port, '127.0.0.1', () => res(s));
        s.once('error', rej);
      });
    } catch (e) {
      if (performance.now() > end) throw e;
      await sleep(100);
    }
  }
}

test('plain-text clients at a TLS monitor: one clear stderr line each, the monitor still answers', {
  timeout: 60_000,
}, async (t) => {
  const pki = makePki(pkiRoot(t));
  const port = await freePort();
  const child = spawnQmigrate(['vm', '-machine', 'none', ...tlsMonitorArgs(pki.server, false, 'm', port)]);
  let stderr = '';
  child.stderr?.on('data', (d) => {
    stderr += d;
  });
  const exited = new Promise((r) => child.once('exit', r));
  t.after(async () => {
    child.kill('SIGKILL');
    await exited;
  });
  const spec = `-chardev socket,id=m,host=127.0.0.1,port=${port},server=on,wait=off,tls-creds=m-creds`;
  const garbage = ['GET / HTTP/1.0\r\n\r\n', '{"execute":"qmp_capabilities"}\n', '\x16\x03\x01\xff\xff'];
  const ports: number[] = [];
  for (const text of garbage) {
    const s = await open(port);
    ports.push(s.localPort!);
    s.on('error', () => {});
    s.resume();
    const closed = new Promise((r) => s.once('close', r));
    s.write(text);
    await closed;
  }
  await until(`${garbage.length} lines in:\n${stderr}`, () => stderr.split('\n').length > garbage.length);
  assert.deepEqual(stderr.split('\n'), [
    ...ports.map(
      (p) =>
        `qmigrate: ${spec}: client 127.0.0.1:${p}: TLS handshake failed: An unexpected TLS packet was received.`,
    ),
    '',
  ]);
  const c = tls.connect({
    host: '127.0.0.1',
    port,
    ca: readFileSync(join(pki.server, 'ca-cert.pem')),
    servername: 'localhost',
  });
  t.after(() => c.destroy());
  let out = '';
  c.on('data', (d) => {
    out += d;
  });
  c.write('{"execute":"qmp_capabilities"}\n{"execute":"query-status","id":1}\n');
  await until('query-status answered', () => out.includes('"id": 1'));
});

test('a loop of plain-text clients at a TLS monitor: 10 lines, then one line counting the rest', {
  timeout: 90_000,
}, async (t) => {
  const pki = makePki(pkiRoot(t));
  const port = await freePort();
  const child = spawnQmigrate(['vm', '-machine', 'none', ...tlsMonitorArgs(pki.server, false, 'm', port)]);
  let stderr = '';
  child.stderr?.on('data', (d) => {
    stderr += d;
  });
  const exited = new Promise((r) => child.once('exit', r));
  t.after(async () => {
    child.kill('SIGKILL');
    await exited;
  });
  const start = performance.now();
  for (let i = 0; i < 40; i++) {
    const s = await open(port);
    s.on('error', () => {});
    s.resume();
    const closed = new Promise((r) => s.once('close', r));
    s.write('GET / HTTP/1.0\r\n\r\n');
    await closed;
  }
  // Past the window (10 s from the first refusal), the rest is counted in one line.
  await until('the count of the rest', () => stderr.includes('not logged one by one'), 30_000);
  const lines = stderr.trimEnd().split('\n');
  const looped = performance.now() - start;
  if (looped < 10_000) {
    assert.equal(lines.length, 11, stderr);
    assert.match(lines[10]!, /: 30 more clients refused in 10 s \(not logged one by one\)$/);
  } else {
    // A machine too slow to loop 40 times in 10 s: two windows, still at most 10 lines each.
    assert.ok(lines.length <= 22, stderr);
  }
  for (const l of lines.slice(0, 10))
    assert.match(l, /TLS handshake failed: An unexpected TLS packet was received\.$/);
});
