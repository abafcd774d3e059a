// A request whose id is a 32 MiB string (under QEMU's 64 MiB token limit, so QEMU takes it and
// echoes it in the reply) is answered with the whole id, and `qmigrate vm` grows by a few times
// the id's size, not more. The reply's writer appended one character at a time, which grew the
// process by over 1 GiB for a 30 MiB id, for good.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LineClient, startMonitors } from '../helpers/monitors.js';

const MIB = 1 << 20;
/** Over the RSS before: the id as read, parsed, written and queued on the socket, and V8's slack. */
const RSS_BOUND_MIB = 320;

test('a request with a 32 MiB id is answered with it, and the monitor grows by a bounded amount', {
  timeout: 120_000,
}, async (t) => {
  const vm = (await startMonitors(t, 'qmigrate', { a: 'qmp' }))!;
  const a = await LineClient.open(vm.path('a'));
  t.after(() => a.destroy());
  await a.negotiate();
  // Read on raw bytes from here: the reply is one 32 MiB line.
  a.socket.removeAllListeners('data');
  const chunks: Buffer[] = [];
  let got = 0;
  let tail = '';
  const done = new Promise<void>((res) =>
    a.socket.on('data', (d: Buffer) => {
      chunks.push(d);
      got += d.length;
      tail = (tail + d.subarray(-64).toString('latin1')).slice(-64);
      if (tail.endsWith('"id": "end"}\r\n')) res();
    }),
  );
  const before = vm.rssMiB();
  const id = 'i'.repeat(32 * MIB);
  a.socket.write(`{"execute":"query-status","id":"${id}"}\n{"execute":"query-status","id":"end"}\n`);
  await done;
  const grown = vm.rssMiB() - before;
  const text = Buffer.concat(chunks).toString('latin1');
  const lines = text.split('\r\n');
  assert.equal(lines[0], `{"return": {"status": "running", "running": true}, "id": "${id}"}`);
  assert.equal(lines[1], '{"return": {"status": "running", "running": true}, "id": "end"}');
  assert.ok(got > 32 * MIB);
  assert.ok(grown < RSS_BOUND_MIB, `RSS grew by ${grown.toFixed(0)} MiB (bound ${RSS_BOUND_MIB})`);
});
