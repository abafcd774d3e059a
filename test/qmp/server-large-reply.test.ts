// A client that sends one huge stray token and reads gets QEMU's error reply, which quotes the
// whole token, and its session goes on. QEMU 10.0 answers a 17 MiB stray string token with a
// 17,825,876-byte error reply (observed: 85 s to come, so not compared here; the reply's form is
// in test/qmp/json-stream-qemu.test.ts). qmigrate before this fix dropped the session as if the
// client had left 16 MiB of output unread (QMP_OUTPUT_HARD_LIMIT).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { QMP_OUTPUT_HARD_LIMIT } from '../../src/qmp/server.js';
import { LineClient, startMonitors } from '../helpers/monitors.js';

test('a stray token larger than the output hard limit is answered with its whole error; the session goes on', {
  timeout: 60_000,
}, async (t) => {
  const vm = (await startMonitors(t, 'qmigrate', { a: 'qmp' }))!;
  const a = await LineClient.open(vm.path('a'));
  t.after(() => a.destroy());
  await a.negotiate();
  const size = QMP_OUTPUT_HARD_LIMIT + (1 << 20);
  a.socket.write('"');
  a.socket.write(Buffer.alloc(size, 'a'));
  a.socket.write(Buffer.from('\xff\n{"execute":"query-status","id":1}\n', 'latin1'));
  await a.waitLines(4, 30_000);
  const stray = a.lines[2]!;
  // 17,825,876 bytes, as QEMU 10.0 sent for the same 17 MiB.
  assert.equal(stray.length, size + 84);
  assert.ok(stray.startsWith(`{"error": {"class": "GenericError", "desc": "JSON parse error, stray '\\"aaa`));
  assert.ok(stray.endsWith(`aaa\\uFFFD'"}}\r\n`), stray.slice(-40));
  assert.equal(a.lines[3], '{"return": {"status": "running", "running": true}, "id": 1}\r\n');
});
