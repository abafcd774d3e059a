// A destination that floods the return path with PONGs (and never says SHUT) holds a source
// in `device`: its monitor still answers within a few milliseconds, as QEMU 10.0's (which
// reads the return path in a thread of its own) does, and migrate_cancel resumes the guest.
// The flooder is a process of its own, so that this test's event loop measures only the VM.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { connectRetry, waitMigrationStatus } from '../helpers/peers.js';
import { spawnQmigrate } from '../helpers/qmigrate.js';

/** Listens on argv[1]; to each client: PONG(1) after PONG(1), as fast as it takes them. */
const FLOODER = `
const net = require('node:net');
const m = Buffer.from([0, 2, 0, 4, 0, 0, 0, 1]);
const b = Buffer.concat(Array(8192).fill(m));
net.createServer((s) => {
  s.on('error', () => {});
  s.resume();
  const f = () => { if (!s.destroyed) s.write(b, () => setImmediate(f)); };
  f();
}).listen(process.argv[1], () => console.log('up'));
`;

/** Median QMP round trip, in ms, is far below this; before the fix it was 100-230 ms. */
const MEDIAN_MAX_MS = 40;

test('a PONG flood on the return path does not hold the source monitor off; cancel resumes', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'qmigrate-rpflood-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const mig = join(dir, 'mig.sock');
  const flooder: ChildProcess = spawn(process.execPath, ['-e', FLOODER, mig], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  t.after(() => flooder.kill('SIGKILL'));
  await new Promise((r) => flooder.stdout!.once('data', r));
  const qmp = join(dir, 'q.sock');
  const vm = spawnQmigrate(
    ['vm', '-machine', 'none', '-m', '16M', '-qmp', `unix:${qmp},server=on,wait=off`],
    {
      stdio: 'inherit',
    },
  );
  t.after(() => vm.kill('SIGKILL'));
  const q = await connectRetry(qmp);
  t.after(() => q.close());
  await q.migrateSetCapabilities({ capabilities: [{ capability: 'return-path', state: true }] });
  await q.migrate({ uri: `unix:${mig}` });
  // Everything is sent; the source waits for a SHUT that never comes.
  await waitMigrationStatus(q, 'device');
  const rtt: number[] = [];
  for (let i = 0; i < 15; i++) {
    const t0 = performance.now();
    await q.queryStatus();
    rtt.push(performance.now() - t0);
    await new Promise((r) => setTimeout(r, 20));
  }
  rtt.sort((a, b) => a - b);
  const median = rtt[Math.floor(rtt.length / 2)]!;
  t.diagnostic(`query-status round trips: median ${median.toFixed(1)} ms, max ${rtt.at(-1)!.toFixed(1)} ms`);
  assert.ok(
    median < MEDIAN_MAX_MS,
    `median round trip ${median.toFixed(1)} ms (all: ${rtt.map(Math.round)})`,
  );
  await q.migrateCancel();
  await waitMigrationStatus(q, 'cancelled');
  assert.equal((await q.queryStatus()).status, 'running');
});
