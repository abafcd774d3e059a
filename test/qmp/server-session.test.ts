// The QMP session's flow control, in process on an in-memory stream: how many requests it
// reads ahead (QEMU's QMP_REQ_QUEUE_LEN_MAX with OOB, one without), that it holds the rest of
// the input back until there is room, and that a client reading nothing while events pile up
// is dropped at QMP_OUTPUT_HARD_LIMIT rather than growing the process.
import assert from 'node:assert/strict';
import { Duplex } from 'node:stream';
import { test } from 'node:test';
import { setImmediate as tick } from 'node:timers/promises';
import type { StatusInfo } from '../../src/qapi/types.js';
import { QMP_OUTPUT_HARD_LIMIT, QMP_REQ_QUEUE_LEN_MAX, type QmpSession } from '../../src/qmp/server.js';
import { Vm } from '../../src/vm/vm.js';

/** A stream whose peer writes with `type` and reads (or, with `stalled`, never reads). */
function peer(stalled = false) {
  let written = '';
  const d = new Duplex({
    read() {},
    write(chunk: Buffer, _enc, cb) {
      if (stalled) return; // the write never completes: everything after it stays queued
      written += chunk.toString('latin1');
      cb();
    },
  });
  return {
    stream: d,
    type: (s: string) => d.push(Buffer.from(s)),
    replies: () => written.split('\r\n').slice(1, -1),
  };
}

async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await tick();
}

for (const oob of [true, false]) {
  const waiting = oob ? QMP_REQ_QUEUE_LEN_MAX : 0;
  const title = oob
    ? `with OOB on, a session queues ${QMP_REQ_QUEUE_LEN_MAX} in-band requests behind the running one and holds the rest back`
    : 'with OOB off, a session reads the next request only once the last is answered';
  test(title, async (t) => {
    const vm = new Vm();
    t.after(() => vm.close());
    let release!: () => void;
    const gate = new Promise<void>((res) => {
      release = res;
    });
    vm.dispatcher.register('query-status', async () => {
      await gate;
      return { status: 'running', running: true } as StatusInfo;
    });
    const p = peer();
    const session: QmpSession = vm.server.attach(p.stream);
    p.type(
      oob
        ? '{"execute":"qmp_capabilities","arguments":{"enable":["oob"]}}\n'
        : '{"execute":"qmp_capabilities"}\n',
    );
    await settle();
    let burst = '';
    for (let i = 0; i < 100; i++) burst += `{"execute":"query-status","id":${i}}\n`;
    p.type(burst);
    await settle();
    assert.equal(session.queued, waiting, 'requests waiting behind the running one');
    assert.ok(p.stream.isPaused(), 'reading stopped');
    release();
    await new Promise<void>((res) => {
      const check = () => (p.replies().length >= 101 ? res() : setTimeout(check, 5));
      check();
    });
    const ids = p
      .replies()
      .slice(1)
      .map((l) => (JSON.parse(l) as { id: number }).id);
    assert.deepEqual(
      ids,
      Array.from({ length: 100 }, (_, i) => i),
    );
    assert.equal(session.queued, 0);
    assert.ok(!p.stream.isPaused(), 'reading again');
  });
}

test('while an out-of-band request runs the session reads nothing more, as QEMU whose reader runs it', async (t) => {
  const vm = new Vm();
  t.after(() => vm.close());
  let release!: () => void;
  const gate = new Promise<void>((res) => {
    release = res;
  });
  vm.dispatcher.register('migrate-pause', async () => {
    await gate;
    return {};
  });
  const p = peer();
  const session = vm.server.attach(p.stream);
  p.type('{"execute":"qmp_capabilities","arguments":{"enable":["oob"]}}\n');
  await settle();
  p.type(
    '{"exec-oob":"migrate-pause","id":"oob"}\n{"execute":"query-status","id":1}\n{"exec-oob":"migrate-pause","id":"oob2"}\n',
  );
  await settle();
  assert.equal(session.queued, 0, 'nothing read behind the running exec-oob');
  assert.ok(p.stream.isPaused(), 'reading stopped');
  release();
  await new Promise<void>((res) => {
    const check = () => (p.replies().length >= 4 ? res() : setTimeout(check, 5));
    check();
  });
  const ids = p
    .replies()
    .slice(1)
    .map((l) => (JSON.parse(l) as { id: unknown }).id);
  assert.equal(ids[0], 'oob');
  assert.deepEqual([...ids].sort(), [1, 'oob', 'oob2']);
});

test('a session that reads nothing while events pile up is dropped at the hard limit', async (t) => {
  const vm = new Vm();
  t.after(() => vm.close());
  const p = peer(true);
  const session = vm.server.attach(p.stream);
  p.type('{"execute":"qmp_capabilities"}\n');
  await settle();
  assert.ok(session.negotiated);
  let sent = 0;
  while (!session.isClosed && sent < 1_000_000) {
    vm.server.emit('STOP');
    sent++;
  }
  assert.ok(session.isClosed, 'the session was dropped');
  // Each STOP event is 70 to 100 bytes.
  assert.ok(sent > QMP_OUTPUT_HARD_LIMIT / 100 && sent < QMP_OUTPUT_HARD_LIMIT / 70, `${sent} events`);
  await assert.rejects(session.close(), { code: 'QMP_OUTPUT_OVERFLOW' });
  assert.ok(p.stream.destroyed);
});
