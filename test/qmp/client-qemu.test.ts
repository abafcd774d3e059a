// The QMP client against a real QEMU 10.0: negotiation, typed commands, pipelining by id,
// errors with class and desc, events as iterators and listeners, timeouts, aborts and a
// peer that goes away mid-command.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { type ConnectOptions, QmpClient } from '../../src/qmp/client.js';
import { ConnectError, ExecInterruptedError, QmpError, StateError } from '../../src/qmp/errors.js';
import type { QmpEvent } from '../../src/qmp/events.js';
import { requireQemu, startQemu } from '../helpers/qemu.js';

/** A client on a fresh QEMU 10.0 (the helper's own QMP session is closed: one client per socket). */
async function qemuClient(t: TestContext, options?: ConnectOptions): Promise<QmpClient | undefined> {
  const bin = requireQemu(t, '10.0');
  if (!bin) return undefined;
  const q = await startQemu(bin);
  t.after(() => q.stop());
  q.qmp.close();
  const c = await QmpClient.connect(join(q.dir, 'qmp.sock'), options);
  t.after(() => c.close());
  return c;
}

test('connects, negotiates and runs typed commands', async (t) => {
  const c = await qemuClient(t);
  if (!c) return;
  assert.equal(c.greeting.QMP.version.qemu.major, 10);
  assert.deepEqual(await c.queryStatus(), { status: 'running', running: true });
  const v = await c.queryVersion();
  assert.equal(v.qemu.minor, 0);
  assert.deepEqual((await c.features()).channels, true);
});

test('pipelines commands and matches replies by id', async (t) => {
  const c = await qemuClient(t);
  if (!c) return;
  const results = await Promise.allSettled([
    c.queryStatus(),
    c.migrateSetParameters({ 'downtime-limit': 123 }),
    c.executeRaw('no-such-command'),
    c.queryMigrateParameters(),
    c.migrateSetParameters({ 'multifd-channels': 0 }),
  ]);
  assert.equal(results[0].status, 'fulfilled');
  assert.equal(results[1].status, 'fulfilled');
  assert.equal(results[2].status, 'rejected');
  const notFound = (results[2] as PromiseRejectedResult).reason as QmpError;
  assert.ok(notFound instanceof QmpError);
  assert.equal(notFound.errorClass, 'CommandNotFound');
  assert.equal(notFound.desc, 'The command no-such-command has not been found');
  assert.equal(
    (results[3] as PromiseFulfilledResult<{ 'downtime-limit': number }>).value['downtime-limit'],
    123,
  );
  const range = (results[4] as PromiseRejectedResult).reason as QmpError;
  assert.equal(range.desc, "Parameter 'multifd_channels' expects a value between 1 and 255");
});

test('events arrive as iterators and listeners, never as replies', async (t) => {
  const early: QmpEvent[] = [];
  const c = await qemuClient(t, { onEvent: (e) => early.push(e) });
  if (!c) return;
  const seen: string[] = [];
  const off = c.on('STOP', (e) => seen.push(e.event));
  const l = c.listen('STOP', 'RESUME');
  await c.stop();
  await c.cont();
  const first = await l.get();
  const second = await l.get();
  assert.equal(first?.event, 'STOP');
  assert.equal(second?.event, 'RESUME');
  assert.equal(typeof first?.timestamp.seconds, 'number');
  assert.deepEqual(seen, ['STOP']);
  off();
  l.close();
  assert.equal(await l.get(), undefined, 'a closed listener ends');
  assert.deepEqual(
    early.map((e) => e.event),
    ['STOP', 'RESUME'],
  );
});

test('a peer that exits mid-command gives ExecInterruptedError, then StateError', async (t) => {
  const bin = requireQemu(t, '10.0');
  if (!bin) return;
  const q = await startQemu(bin);
  t.after(() => q.stop());
  q.qmp.close();
  const c = await QmpClient.connect(join(q.dir, 'qmp.sock'));
  // Frozen first, so it cannot answer before it dies.
  q.child.kill('SIGSTOP');
  const pending = c.queryStatus();
  q.child.kill('SIGKILL');
  await assert.rejects(pending, ExecInterruptedError);
  await c.closed;
  await assert.rejects(c.queryStatus(), StateError);
  await c.close();
});

test('connecting to nothing is a ConnectError', async () => {
  await assert.rejects(QmpClient.connect('/nonexistent/qmp.sock', { timeout: 500 }), ConnectError);
});
