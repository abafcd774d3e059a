// The fault matrix's proxy (faults/proxy.ts) places its fault at an exact byte offset of what
// the source sent, over all its connections together: the destination receives exactly that
// many bytes, then an end (close), a reset, nothing more (stall), or the hook runs. The QMP
// relay hands `migrate`'s address to the matrix and sends the replacement.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, connect as netConnect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { FaultProxy, type ProxyPlan, QmpRelay } from '../../faults/proxy.js';
import { seeded } from '../../faults/rows.js';

/** A destination that counts what it receives on each connection and how each one ended. */
async function sink(t: TestContext) {
  const got: { bytes: number; end?: string }[] = [];
  const server: Server = createServer((s) => {
    const rec: { bytes: number; end?: string } = { bytes: 0 };
    got.push(rec);
    s.on('data', (d) => {
      rec.bytes += d.length;
    });
    s.on('end', () => {
      rec.end ??= 'end';
    });
    s.on('error', (e: NodeJS.ErrnoException) => {
      rec.end ??= e.code;
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => server.close());
  const a = server.address();
  assert.ok(a && typeof a === 'object');
  return { got, port: a.port };
}

async function run(t: TestContext, plan: ProxyPlan, conns = 1, each = 1 << 20) {
  const dst = await sink(t);
  const proxy = await FaultProxy.start(
    { host: '127.0.0.1', port: dst.port },
    { host: '127.0.0.1', port: 0 },
    plan,
  );
  t.after(() => proxy.stop());
  const where = proxy.where;
  assert.ok('port' in where);
  const sources: Socket[] = [];
  const sourceErrors: (string | undefined)[] = [];
  for (let i = 0; i < conns; i++) {
    const s = netConnect(where.port, where.host);
    s.on('error', (e: NodeJS.ErrnoException) => {
      sourceErrors[i] = e.code;
    });
    sources.push(s);
    s.write(Buffer.alloc(each, i + 1));
  }
  for (
    let i = 0;
    i < 200 && dst.got.reduce((a, g) => a + g.bytes, 0) < Math.min(plan.at ?? Infinity, conns * each);
    i++
  )
    await sleep(10);
  await sleep(100);
  for (const s of sources) s.destroy();
  return { dst, proxy, sourceErrors };
}

test('close at an offset: exactly that many bytes arrive, then an end of stream', async (t) => {
  const { dst, proxy } = await run(t, { at: 300_000, action: 'close' });
  assert.equal(proxy.fired, true);
  assert.equal(dst.got[0]?.bytes, 300_000);
  assert.equal(dst.got[0]?.end, 'end');
});

test('reset at an offset: the source gets a reset, the destination no byte past the offset', async (t) => {
  const { dst, sourceErrors } = await run(t, { at: 123_457, action: 'reset' });
  assert.equal(sourceErrors[0], 'ECONNRESET');
  assert.ok((dst.got[0]?.bytes ?? 0) <= 123_457);
  assert.ok(dst.got[0]?.end, 'the destination saw its connection end');
});

test('stall and hook count every connection together, and nothing passes the offset', async (t) => {
  let hooked = 0;
  const { dst } = await run(t, { at: 1_500_000, action: 'hook', hook: () => hooked++ }, 3);
  assert.equal(hooked, 1);
  assert.equal(
    dst.got.reduce((a, g) => a + g.bytes, 0),
    1_500_000,
  );
  const stalled = await run(t, { at: 10_000, action: 'stall' });
  assert.equal(stalled.dst.got[0]?.bytes, 10_000);
});

test('without an offset every byte passes', async (t) => {
  const { dst, proxy } = await run(t, {}, 2, 3 << 20);
  assert.equal(proxy.fired, false);
  assert.deepEqual(
    dst.got.map((g) => g.bytes),
    [3 << 20, 3 << 20],
  );
});

test('the QMP relay rewrites the address of migrate, uri or main channel, and nothing else', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'qmigrate-relay-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const lines: string[] = [];
  const monitor = createServer((s) => {
    s.on('error', () => {}); // the relay resets it when the test's client goes (unread replies)
    let buf = '';
    s.on('data', (d) => {
      buf += d;
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        lines.push(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
        s.write('{"return": {}}\n');
      }
    });
  });
  await new Promise<void>((r) => monitor.listen(join(dir, 'mon.sock'), r));
  t.after(() => monitor.close());
  const asked: unknown[] = [];
  const relay = await QmpRelay.start(join(dir, 'relay.sock'), join(dir, 'mon.sock'), async (to) => {
    asked.push(to);
    return 'path' in to ? { path: '/p' } : { host: '127.0.0.2', port: 7 };
  });
  t.after(() => relay.stop());
  const c = netConnect(relay.path);
  const channel = {
    'channel-type': 'main',
    addr: { transport: 'socket', type: 'inet', host: '127.0.0.1', port: '4444' },
  };
  c.write('{"execute":"query-status"}\n');
  c.write('{"execute":"migrate","arguments":{"uri":"unix:/x.sock"}}\n');
  c.write(`${JSON.stringify({ execute: 'migrate', arguments: { channels: [channel] } })}\n`);
  for (let i = 0; i < 200 && lines.length < 3; i++) await sleep(10);
  c.destroy();
  assert.deepEqual(asked, [{ path: '/x.sock' }, { host: '127.0.0.1', port: 4444 }]);
  assert.deepEqual(
    lines.map((l) => JSON.parse(l)),
    [
      { execute: 'query-status' },
      { execute: 'migrate', arguments: { uri: 'unix:/p' } },
      {
        execute: 'migrate',
        arguments: {
          channels: [
            {
              'channel-type': 'main',
              addr: { transport: 'socket', type: 'inet', host: '127.0.0.2', port: '7' },
            },
          ],
        },
      },
    ],
  );
});

test('seeded offsets repeat per seed and differ between seeds', () => {
  const a = seeded(7);
  const b = seeded(7);
  const xs = [a(), a(), a()];
  assert.deepEqual(xs, [b(), b(), b()]);
  assert.ok(xs.every((x) => x >= 0 && x < 1));
  assert.notEqual(seeded(8)(), seeded(7)());
});
