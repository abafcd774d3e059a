// The QMP client and the reply to a command it gave up on (timeout, AbortSignal), from a
// scripted peer that answers late: qmp-spec.rst has clients drop replies with an id they no
// longer know, so the session goes on; an id the client never sent still breaks it.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { MAX_ABANDONED_IDS, QmpClient } from '../../src/qmp/client.js';
import {
  BadReplyError,
  ExecAbortedError,
  ExecInterruptedError,
  ExecTimeoutError,
} from '../../src/qmp/errors.js';

const GREETING = {
  QMP: { version: { qemu: { major: 10, minor: 0, micro: 2 }, package: '' }, capabilities: [] },
};

type Msg = Record<string, unknown>;
const line = (m: Msg) => `${JSON.stringify(m)}\r\n`;
const ok = (m: Msg, ret: unknown = {}) => line({ return: ret, id: m.id });

/**
 * A peer that answers qmp_capabilities at once, holds every `query-status`, and runs
 * `onOther(msg, held, socket)` for anything else.
 */
async function latePeer(t: TestContext, onOther: (msg: Msg, held: Msg[], s: Socket) => void) {
  const dir = mkdtempSync(join(tmpdir(), 'qmigrate-late-'));
  const path = join(dir, 'qmp.sock');
  const held: Msg[] = [];
  const server = createServer((s) => {
    let buf = '';
    s.on('error', () => {});
    s.on('data', (d) => {
      buf += d;
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        const msg = JSON.parse(buf.slice(0, i)) as Msg;
        buf = buf.slice(i + 1);
        if (msg.execute === 'qmp_capabilities') s.write(ok(msg));
        else if (msg.execute === 'query-status') held.push(msg);
        else onOther(msg, held, s);
      }
    });
    s.write(line(GREETING));
  });
  await new Promise<void>((r) => server.listen(path, r));
  t.after(() => {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { path, held };
}

test('a reply that comes after the timeout is dropped; the session goes on and close() resolves', async (t) => {
  // Asked for the version, the peer first answers the held commands, then the question.
  const p = await latePeer(t, (msg, held, s) => {
    for (const h of held.splice(0)) s.write(ok(h, { status: 'running', running: true }));
    s.write(ok(msg, { qemu: { major: 10, minor: 0, micro: 2 }, package: '' }));
  });
  const c = await QmpClient.connect(p.path);
  t.after(() => c.close().catch(() => {}));
  await assert.rejects(c.queryStatus({ timeout: 50 }), ExecTimeoutError);
  assert.equal(p.held.length, 1, 'the command was sent');
  assert.equal((await c.queryVersion()).qemu.major, 10);
  assert.equal(p.held.length, 0, 'its late reply went out before the answer to query-version');
  assert.equal(c.isClosed, false);
  await c.close();
});

test('a late reply to an aborted command is dropped too, an error reply as well as a return', async (t) => {
  const p = await latePeer(t, (msg, held, s) => {
    const [a, b] = held.splice(0);
    s.write(ok(a!, { status: 'running', running: true }));
    s.write(line({ error: { class: 'GenericError', desc: 'too late' }, id: b!.id }));
    s.write(ok(msg, { qemu: { major: 10, minor: 0, micro: 2 }, package: '' }));
  });
  const c = await QmpClient.connect(p.path);
  t.after(() => c.close().catch(() => {}));
  const ac = new AbortController();
  const first = c.queryStatus({ signal: ac.signal });
  const second = c.queryStatus({ timeout: 20 });
  ac.abort(new Error('no longer needed'));
  await assert.rejects(first, ExecAbortedError);
  await assert.rejects(second, ExecTimeoutError);
  // Aborted before it was sent: nothing goes out, nothing is remembered.
  await assert.rejects(c.queryStatus({ signal: AbortSignal.abort() }), ExecAbortedError);
  assert.equal((await c.queryVersion()).qemu.minor, 0);
  assert.equal(p.held.length, 0);
  await c.close();
});

test(`the client remembers the last ${MAX_ABANDONED_IDS} commands given up on, not more`, async (t) => {
  // The peer answers all held commands but the oldest at query-version, the oldest at stop.
  const p = await latePeer(t, (msg, held, s) => {
    if (msg.execute === 'query-version') {
      for (const h of held.slice(1)) s.write(ok(h, { status: 'running', running: true }));
      s.write(ok(msg, { qemu: { major: 10, minor: 0, micro: 2 }, package: '' }));
    } else if (msg.execute === 'stop') s.write(ok(held[0]!, { status: 'running', running: true }));
  });
  const c = await QmpClient.connect(p.path);
  t.after(() => c.close().catch(() => {}));
  const given = Array.from({ length: MAX_ABANDONED_IDS + 1 }, () => c.queryStatus({ timeout: 1 }));
  for (const g of given) await assert.rejects(g, ExecTimeoutError);
  assert.equal((await c.queryVersion()).qemu.major, 10, `${MAX_ABANDONED_IDS} late replies dropped`);
  assert.equal(p.held.length, MAX_ABANDONED_IDS + 1, 'every command was sent');
  assert.equal(c.isClosed, false);
  // The oldest was forgotten: its reply is one to an unknown id again.
  await assert.rejects(c.stop(), ExecInterruptedError);
  await assert.rejects(
    c.close(),
    (e: unknown) => e instanceof BadReplyError && e.message.includes(`unknown id ${p.held[0]!.id}`),
  );
});

test('a reply with an id the client never sent still ends the session with BadReplyError', async (t) => {
  const p = await latePeer(t, (msg, _held, s) => {
    s.write(line({ return: {}, id: `${msg.id}-not-mine` }));
  });
  const c = await QmpClient.connect(p.path);
  t.after(() => c.close().catch(() => {}));
  await assert.rejects(c.queryStatus({ timeout: 20 }), ExecTimeoutError);
  await assert.rejects(c.queryVersion(), ExecInterruptedError);
  await assert.rejects(c.close(), BadReplyError);
});
