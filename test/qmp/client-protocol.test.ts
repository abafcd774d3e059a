// The QMP client against a scripted peer, for what a real QEMU will not do on demand: events
// before the greeting and before the negotiation reply, replies out of order, silence
// (timeouts), garbage, and an abrupt close with commands pending.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { QmpClient } from '../../src/qmp/client.js';
import {
  BadReplyError,
  ConnectError,
  EventOverflowError,
  ExecAbortedError,
  ExecInterruptedError,
  ExecTimeoutError,
  FeatureError,
  QmpError,
  ServerParseError,
} from '../../src/qmp/errors.js';
import { MAX_PENDING_EVENTS, type QmpEvent } from '../../src/qmp/events.js';

const GREETING = {
  QMP: { version: { qemu: { major: 7, minor: 2, micro: 22 }, package: '' }, capabilities: [] },
};
const event = (name: string, data?: unknown) =>
  JSON.stringify({ event: name, ...(data ? { data } : {}), timestamp: { seconds: 1, microseconds: 2 } });

/** A unix-socket peer whose behaviour per received message is scripted by `onMessage`. */
async function peer(
  t: import('node:test').TestContext,
  onConnect: (s: Socket) => void,
  onMessage: (msg: Record<string, unknown>, s: Socket) => void,
): Promise<{ path: string; server: Server; received: Record<string, unknown>[] }> {
  const dir = mkdtempSync(join(tmpdir(), 'qmigrate-peer-'));
  const path = join(dir, 'qmp.sock');
  const received: Record<string, unknown>[] = [];
  const server = createServer((s) => {
    let buf = '';
    s.on('data', (d) => {
      buf += d;
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        const msg = JSON.parse(buf.slice(0, i));
        buf = buf.slice(i + 1);
        received.push(msg);
        onMessage(msg, s);
      }
    });
    s.on('error', () => {});
    onConnect(s);
  });
  await new Promise<void>((r) => server.listen(path, r));
  t.after(() => {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { path, server, received };
}

const reply = (s: Socket, msg: Record<string, unknown>, ret: unknown = {}) =>
  s.write(`${JSON.stringify({ return: ret, id: msg.id })}\r\n`);

test('events before the greeting and before the negotiation reply are events, not replies', async (t) => {
  const p = await peer(
    t,
    (s) => s.write(`${event('RESUME')}\r\n${JSON.stringify(GREETING)}\r\n`),
    (msg, s) => {
      if (msg.execute === 'qmp_capabilities') {
        s.write(`${event('STOP')}\r\n`);
        reply(s, msg);
      } else reply(s, msg, { status: 'running', running: true });
    },
  );
  const early: QmpEvent[] = [];
  const c = await QmpClient.connect(p.path, { onEvent: (e) => early.push(e) });
  t.after(() => c.close());
  assert.deepEqual(
    early.map((e) => e.event),
    ['RESUME', 'STOP'],
  );
  assert.deepEqual(await c.queryStatus(), { status: 'running', running: true });
  assert.match(String(p.received[0]?.id), /^__qmigrate#/);
});

test('replies out of order still reach their commands', async (t) => {
  const held: Record<string, unknown>[] = [];
  const p = await peer(
    t,
    (s) => s.write(`${JSON.stringify(GREETING)}\r\n`),
    (msg, s) => {
      if (msg.execute === 'qmp_capabilities') return reply(s, msg);
      held.push(msg);
      if (held.length === 3) {
        for (const m of held.reverse())
          reply(s, m, (m.arguments as { 'command-line': string })['command-line']);
      }
    },
  );
  const c = await QmpClient.connect(p.path);
  t.after(() => c.close());
  const r = await Promise.all(['a', 'b', 'c'].map((x) => c.humanMonitorCommand({ 'command-line': x })));
  assert.deepEqual(r, ['a', 'b', 'c']);
});

test('a silent peer: per-command timeout and AbortSignal, session stays usable', async (t) => {
  const p = await peer(
    t,
    (s) => s.write(`${JSON.stringify(GREETING)}\r\n`),
    (msg, s) => {
      if (msg.execute === 'qmp_capabilities' || msg.execute === 'query-version') reply(s, msg, {});
    },
  );
  const c = await QmpClient.connect(p.path, { commandTimeout: 5000 });
  t.after(() => c.close());
  await assert.rejects(c.queryStatus({ timeout: 50 }), ExecTimeoutError);
  const ac = new AbortController();
  const pending = c.queryStatus({ signal: ac.signal });
  ac.abort(new Error('changed my mind'));
  await assert.rejects(
    pending,
    (e: unknown) => e instanceof ExecAbortedError && (e.cause as Error).message === 'changed my mind',
  );
  await assert.rejects(c.queryStatus({ signal: AbortSignal.abort() }), ExecAbortedError);
  assert.deepEqual(await c.queryVersion(), {});
});

test('an abrupt close fails every pending command with ExecInterruptedError', async (t) => {
  const p = await peer(
    t,
    (s) => s.write(`${JSON.stringify(GREETING)}\r\n`),
    (msg, s) => {
      if (msg.execute === 'qmp_capabilities') reply(s, msg);
      else if (msg.execute === 'stop') s.destroy();
    },
  );
  const c = await QmpClient.connect(p.path);
  const a = c.queryStatus();
  const b = c.stop();
  await assert.rejects(a, ExecInterruptedError);
  await assert.rejects(b, ExecInterruptedError);
  await c.close();
});

test('garbage from the peer is a ServerParseError from close(); commands are interrupted', async (t) => {
  const p = await peer(
    t,
    (s) => s.write(`${JSON.stringify(GREETING)}\r\n`),
    (msg, s) => {
      if (msg.execute === 'qmp_capabilities') reply(s, msg);
      else s.write('this is not json\r\n');
    },
  );
  const c = await QmpClient.connect(p.path);
  await assert.rejects(c.queryStatus(), ExecInterruptedError);
  await assert.rejects(c.close(), ServerParseError);
});

test('a reply to nobody is a BadReplyError', async (t) => {
  const p = await peer(
    t,
    (s) => s.write(`${JSON.stringify(GREETING)}\r\n`),
    (msg, s) => {
      if (msg.execute === 'qmp_capabilities') reply(s, msg);
      else s.write(`${JSON.stringify({ return: {}, id: 'someone-else' })}\r\n`);
    },
  );
  const c = await QmpClient.connect(p.path);
  await assert.rejects(c.queryStatus(), ExecInterruptedError);
  await assert.rejects(c.close(), BadReplyError);
});

test('a peer that is not QMP fails the connect', async (t) => {
  const p = await peer(
    t,
    (s) => s.write('SSH-2.0-OpenSSH\r\n'),
    () => {},
  );
  await assert.rejects(QmpClient.connect(p.path, { timeout: 1000 }), ConnectError);
  const silent = await peer(
    t,
    () => {},
    () => {},
  );
  await assert.rejects(QmpClient.connect(silent.path, { timeout: 200 }), /no QMP session within 200 ms/);
});

test('errors carry class, desc and the evidence', async (t) => {
  const p = await peer(
    t,
    (s) => s.write(`${JSON.stringify(GREETING)}\r\n`),
    (msg, s) => {
      if (msg.execute === 'qmp_capabilities') reply(s, msg);
      else s.write(`${JSON.stringify({ id: msg.id, error: { class: 'GenericError', desc: 'nope' } })}\r\n`);
    },
  );
  const c = await QmpClient.connect(p.path);
  t.after(() => c.close());
  const e = await c.stop().catch((x: unknown) => x);
  assert.ok(e instanceof QmpError);
  assert.equal(e.errorClass, 'GenericError');
  assert.equal(e.desc, 'nope');
  assert.equal((e.sent as { execute: string }).execute, 'stop');
});

test('without channels in the schema, migrate sends the equivalent uri (or says why not)', async (t) => {
  const p = await peer(
    t,
    (s) => s.write(`${JSON.stringify(GREETING)}\r\n`),
    (msg, s) => {
      if (msg.execute === 'query-qmp-schema') {
        reply(s, msg, [
          { name: 'migrate', 'meta-type': 'command', 'arg-type': '1', 'ret-type': '0' },
          { name: '1', 'meta-type': 'object', members: [{ name: 'uri', type: 'str' }] },
        ]);
      } else reply(s, msg);
    },
  );
  const c = await QmpClient.connect(p.path);
  t.after(() => c.close());
  assert.deepEqual(await c.features(), { channels: false });
  await c.migrate({
    channels: [
      { 'channel-type': 'main', addr: { transport: 'socket', type: 'inet', host: '::1', port: '4444' } },
    ],
  });
  await c.migrateIncoming({
    channels: [{ 'channel-type': 'main', addr: { transport: 'exec', args: ['nc', '-l', '4444'] } }],
  });
  const sent = p.received.filter((m) => m.execute === 'migrate' || m.execute === 'migrate-incoming');
  assert.deepEqual(
    sent.map((m) => m.arguments),
    [{ uri: 'tcp:[::1]:4444' }, { uri: 'exec:exec nc -l 4444' }],
  );
  await assert.rejects(
    c.migrate({
      channels: [
        { 'channel-type': 'main', addr: { transport: 'socket', type: 'unix', path: '/x', abstract: true } },
      ],
    }),
    FeatureError,
  );
});

test('a flood of events nobody takes: the listener stops at its limit and says so; the rest works', async (t) => {
  const p = await peer(
    t,
    (s) => s.write(`${JSON.stringify(GREETING)}\r\n`),
    (msg, s) => {
      if (msg.execute === 'qmp_capabilities') return reply(s, msg);
      if (msg.execute === 'stop') {
        const stop = `${event('STOP')}\r\n`;
        s.write(stop.repeat(MAX_PENDING_EVENTS + 5));
        s.write(`${event('RESUME')}\r\n`);
      }
      reply(s, msg, msg.execute === 'query-status' ? { status: 'running', running: true } : {});
    },
  );
  const c = await QmpClient.connect(p.path);
  t.after(() => c.close());
  const drained = c.listen('STOP');
  const iterated = c.listen('STOP');
  const resumed = c.waitFor('RESUME', () => true, { timeout: 10_000 });
  await c.stop();
  await resumed;
  const overflow = (() => {
    try {
      drained.drain();
    } catch (e) {
      return e;
    }
  })();
  assert.ok(overflow instanceof EventOverflowError, String(overflow));
  assert.equal(overflow.code, 'QMP_EVENT_OVERFLOW');
  assert.equal(overflow.events.length, MAX_PENDING_EVENTS);
  let taken = 0;
  await assert.rejects(
    (async () => {
      for await (const _ of iterated) taken++;
    })(),
    EventOverflowError,
  );
  assert.equal(taken, MAX_PENDING_EVENTS);
  assert.deepEqual(await c.queryStatus(), { status: 'running', running: true });
});
