// The QMP client against a real QEMU 10.0 frozen with SIGSTOP: a command times out (or is
// aborted), QEMU thaws and answers it anyway, and the client drops that reply as
// qmp-spec.rst says; the next command works and close() resolves.
import assert from 'node:assert/strict';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { QmpClient } from '../../src/qmp/client.js';
import { ExecAbortedError, ExecTimeoutError } from '../../src/qmp/errors.js';
import { requireQemu, startQemu } from '../helpers/qemu.js';

/** Resolves with the first message the client receives whose id is `id`. */
function received(t: TestContext, id: () => unknown): Promise<Record<string, unknown>> {
  return new Promise((resolve) => {
    const onMessage = (m: unknown) => {
      const msg = m as Record<string, unknown>;
      if (msg.id !== undefined && msg.id === id()) resolve(msg);
    };
    subscribe('qmigrate:qmp:client:receive', onMessage);
    t.after(() => unsubscribe('qmigrate:qmp:client:receive', onMessage));
  });
}

/** The id of the next command the client sends. */
function nextSent(t: TestContext): { id: unknown } {
  const seen: { id: unknown } = { id: undefined };
  const onSend = (m: unknown) => {
    seen.id ??= (m as Record<string, unknown>).id;
  };
  subscribe('qmigrate:qmp:client:send', onSend);
  t.after(() => unsubscribe('qmigrate:qmp:client:send', onSend));
  return seen;
}

async function frozenQemu(t: TestContext) {
  const bin = requireQemu(t, '10.0');
  if (!bin) return undefined;
  const q = await startQemu(bin);
  t.after(() => q.stop());
  q.qmp.close();
  const c = await QmpClient.connect(join(q.dir, 'qmp.sock'));
  t.after(() => c.close().catch(() => {}));
  q.child.kill('SIGSTOP');
  t.after(() => q.child.kill('SIGCONT'));
  return { q, c };
}

test('QEMU 10.0 answers a command after its timeout: the reply is dropped, the session goes on', async (t) => {
  const r = await frozenQemu(t);
  if (!r) return;
  const sent = nextSent(t);
  const late = received(t, () => sent.id);
  await assert.rejects(r.c.queryStatus({ timeout: 200 }), ExecTimeoutError);
  r.q.child.kill('SIGCONT');
  // QEMU runs what it was sent and answers; the client sees it and drops it.
  const reply = await late;
  assert.deepEqual(reply.return, { status: 'running', running: true });
  assert.equal(r.c.isClosed, false);
  assert.deepEqual(await r.c.queryStatus(), { status: 'running', running: true });
  await r.c.close();
});

test('QEMU 10.0 answers an aborted command: the reply is dropped, the session goes on', async (t) => {
  const r = await frozenQemu(t);
  if (!r) return;
  const sent = nextSent(t);
  const late = received(t, () => sent.id);
  const ac = new AbortController();
  // `stop` runs on QEMU although the caller stopped waiting: the next query sees it.
  const pending = r.c.stop({ signal: ac.signal });
  setTimeout(() => ac.abort(new Error('gave up')), 100);
  await assert.rejects(pending, ExecAbortedError);
  r.q.child.kill('SIGCONT');
  assert.deepEqual((await late).return, {});
  assert.equal(r.c.isClosed, false);
  assert.deepEqual(await r.c.queryStatus(), { status: 'paused', running: false });
  await r.c.close();
});
