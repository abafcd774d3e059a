// A hostile client on `qmigrate vm -monitor unix:...`. The monitor echoes by redrawing the
// whole line for each byte typed, as QEMU's readline does, so a client that types long lines
// and never reads makes up to 4 KB of output per byte. The monitor must stop reading from it
// instead of buffering that output: QEMU 10.0 grows by 25 to 50 MiB a second and keeps it,
// and qmigrate at a44a293 grew by 1.5 GiB in 10 s and kept its QMP monitor waiting 10 s.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { LineClient, Prober, startMonitors } from '../helpers/monitors.js';

test('an HMP client that types long lines and never reads is stopped; the process stays small and serves others', {
  timeout: 120_000,
}, async (t) => {
  const vm = (await startMonitors(t, 'qmigrate', { h: 'hmp', b: 'qmp' }))!;
  const b = await LineClient.open(vm.path('b'));
  t.after(() => b.destroy());
  await b.negotiate();
  const h = await LineClient.open(vm.path('h'));
  t.after(() => h.destroy());
  h.socket.pause();
  await sleep(500);
  const before = vm.rssMiB();
  const probe = new Prober(b);
  const line = Buffer.from(`${'x'.repeat(3999)}\n`);
  let accepted = 0;
  let writing = true;
  void (async () => {
    while (writing && accepted < 1_000_000) {
      if (!(await new Promise<boolean>((res) => h.socket.write(line, (e) => res(!e))))) return;
      accepted += line.length;
    }
  })();
  let peak = 0;
  let acceptedAt3s = 0;
  for (let ms = 0; ms < 5000; ms += 100) {
    await sleep(100);
    peak = Math.max(peak, vm.rssMiB());
    if (ms === 3000) acceptedAt3s = accepted;
  }
  writing = false;
  const worst = probe.stop();
  assert.ok(peak - before < 64, `RSS went from ${before.toFixed(0)} to ${peak.toFixed(0)} MiB`);
  assert.ok(worst < 1000, `the QMP monitor took ${Math.round(worst)} ms to answer query-status`);
  assert.ok(accepted < 1_000_000, 'the monitor kept reading');
  assert.equal(accepted, acceptedAt3s, 'the monitor kept reading after 3 s');

  h.destroy();
  await sleep(500);
  assert.ok(vm.rssMiB() - before < 64, 'memory after the disconnect');
  // A new HMP client is served as usual.
  const h2 = await LineClient.open(vm.path('h'));
  t.after(() => h2.destroy());
  await h2.waitLines(1, 10_000);
  h2.socket.write('info status\r');
  await h2.waitLines(3, 10_000);
  assert.ok(h2.lines[2]?.includes('VM status: running'), JSON.stringify(h2.lines));
});
