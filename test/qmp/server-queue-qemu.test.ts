// How many in-band requests a QMP session reads ahead, against a real QEMU 10.0. With OOB
// enabled, QEMU queues at most QMP_REQ_QUEUE_LEN_MAX (8) in-band requests and stops reading
// until its dispatcher takes one, so an `exec-oob` sent behind K slow in-band requests is
// read, and answered, once K - 8 of them have been: that position shows the limit. qmigrate
// must stop at the same place. QEMU's in-band commands here are query-qmp-schema, slow enough
// for its reader thread to keep the queue full; qmigrate's position does not depend on speed.
// Then the same 100 KB of `]` as server-flood.test.ts, on QEMU 10.0 and on qmigrate: the same
// replies, and qmigrate's time comparable to QEMU's.
import assert from 'node:assert/strict';
import { type TestContext, test } from 'node:test';
import { QMP_REQ_QUEUE_LEN_MAX } from '../../src/qmp/server.js';
import { LineClient, startMonitors } from '../helpers/monitors.js';

const K = 50;

async function oobPosition(
  t: TestContext,
  kind: 'qmigrate' | '10.0',
  command: string,
): Promise<number | undefined> {
  const host = await startMonitors(t, kind, { a: 'qmp' });
  if (!host) return undefined;
  const a = await LineClient.open(host.path('a'));
  t.after(() => a.destroy());
  await a.negotiate(true);
  let burst = '';
  for (let i = 0; i < K; i++) burst += `{"execute":"${command}","id":${i}}\n`;
  burst += '{"exec-oob":"migrate-pause","id":"oob"}\n';
  a.socket.write(burst);
  await a.waitLines(2 + K + 1, 60_000);
  const ids = a.lines.slice(2).map((l) => (JSON.parse(l) as { id: unknown }).id);
  assert.deepEqual(
    ids.filter((id) => id !== 'oob'),
    Array.from({ length: K }, (_, i) => i),
    'in-band replies in order',
  );
  return ids.indexOf('oob');
}

test('QEMU 10.0 reads at most 8 in-band requests ahead of its dispatcher with OOB on', async (t) => {
  const pos = await oobPosition(t, '10.0', 'query-qmp-schema');
  if (pos === undefined) return;
  // Exactly K - 8 when the reader keeps up; a loaded machine can only make it later.
  assert.ok(pos >= K - 8 && pos <= K - 6, `exec-oob answered after ${pos} of ${K} in-band replies`);
});

test('qmigrate reads as far ahead as QEMU 10.0: an exec-oob behind 50 requests is answered after 42', async (t) => {
  assert.equal(QMP_REQ_QUEUE_LEN_MAX, 8);
  for (const command of ['query-status', 'query-qmp-schema']) {
    assert.equal(await oobPosition(t, 'qmigrate', command), K - QMP_REQ_QUEUE_LEN_MAX, command);
  }
});

test('100 k malformed messages: the replies QEMU 10.0 sends, in time comparable to its own', {
  timeout: 120_000,
}, async (t) => {
  const n = 100_000;
  const times: Record<string, number> = {};
  const replies: Record<string, string[]> = {};
  for (const kind of ['10.0', 'qmigrate'] as const) {
    const host = await startMonitors(t, kind, { a: 'qmp' });
    if (!host) return;
    const a = await LineClient.open(host.path('a'));
    t.after(() => a.destroy());
    await a.negotiate();
    const t0 = performance.now();
    a.socket.write(Buffer.alloc(n, ']'));
    await a.waitLines(2 + n, 60_000);
    times[kind] = performance.now() - t0;
    replies[kind] = [...new Set(a.lines.slice(2))];
  }
  assert.deepEqual(replies.qmigrate, replies['10.0']);
  t.diagnostic(
    `100 k error replies: QEMU 10.0 ${Math.round(times['10.0']!)} ms, qmigrate ${Math.round(times.qmigrate!)} ms`,
  );
  assert.ok(times.qmigrate! < 2 * times['10.0']! + 2000, JSON.stringify(times));
});
