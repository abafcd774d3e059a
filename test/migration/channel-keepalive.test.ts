// An incoming TCP connection has TCP keepalive on, so a source whose host dies without closing
// its connections ends the wait (the kernel times the connection out) instead of leaving the
// destination waiting forever, as QEMU 10.0's does. Read from /proc/net/tcp (Linux): the
// accepted connection's timer is the keepalive timer.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startPeer } from '../helpers/peers.js';

/** /proc/net/tcp rows of established connections whose local port is `port`: their timer kind. */
function timersOf(port: number): string[] {
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  const rows = readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1);
  return rows
    .map((r) => r.trim().split(/\s+/))
    .filter((f) => f[1]?.endsWith(`:${hex}`) && f[3] === '01')
    .map((f) => f[5]!.split(':')[0]!);
}

for (const multifd of [false, true]) {
  test(`an incoming tcp connection has keepalive on (multifd ${multifd ? 'on' : 'off'})`, async (t) => {
    assert.ok(existsSync('/proc/net/tcp'), 'this test reads /proc/net/tcp');
    const dir = mkdtempSync(join(tmpdir(), 'qmigrate-keepalive-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    writeFileSync(join(dir, 'dst.img'), '');
    const dst = (await startPeer(t, 'qmigrate', dir, 'dst', join(dir, 'dst.img'), 16, [
      '-incoming',
      'defer',
    ]))!;
    if (multifd)
      await dst.qmp.migrateSetCapabilities({ capabilities: [{ capability: 'multifd', state: true }] });
    await dst.qmp.migrateIncoming({ uri: 'tcp:127.0.0.1:0', 'exit-on-error': false });
    const addr = (await dst.qmp.queryMigrate())['socket-address']?.[0];
    assert.ok(addr?.type === 'inet');
    const port = Number(addr.port);
    const s = await new Promise<Socket>((res, rej) => {
      const c = connect(port, '127.0.0.1', () => res(c));
      c.once('error', rej);
    });
    t.after(() => s.destroy());
    // The source stays silent: the connection idles, with the keepalive timer armed.
    let timers: string[] = [];
    // (The kernel lists the connection before qmigrate has accepted it: poll.)
    for (let i = 0; i < 100; i++) {
      timers = timersOf(port);
      if (timers.length === 1 && timers[0] === '02') break;
      await sleep(20);
    }
    // "02": keepalive timer; "00": none.
    assert.deepEqual(timers, ['02']);
  });
}
