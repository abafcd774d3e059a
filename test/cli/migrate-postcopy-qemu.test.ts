// `qmigrate migrate --postcopy` between two QEMU 10.0 running the TCG vCPU guest of
// test/helpers/vcpu-guest.ts, which dirties its 99 MiB faster than the max-bandwidth given
// lets precopy converge: the switch after the first pass and the one at --on-timeout postcopy
// complete with the guest's RAM consistent on the destination; a link cut during postcopy
// (a FaultProxy the source's `migrate` is redirected to) ends with exit 5 and both sides in
// postcopy-paused, and `--resume` completes it; Ctrl-C during postcopy cancels nothing.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { FaultProxy, QmpRelay, type Where } from '../../faults/proxy.js';
import { waitMigration, waitMigrationStatus, waitRunstate } from '../helpers/peers.js';
import { runQmigrate, startQmigrate } from '../helpers/qmigrate.js';
import {
  checkGuestCounters,
  dumpGuestRam,
  startVcpuGuest,
  type VcpuGuest,
  waitSerial,
} from '../helpers/vcpu-guest.js';

type Report = {
  type: string;
  status: string;
  reason?: string;
  sourceRunState?: string;
  destinationRunState?: string;
  postcopy?: {
    startedBy: string;
    startedAtMs?: number;
    bytes?: number;
    requests?: number;
    blocktimeMs?: number;
  };
};

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'qmigrate-postcopy-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Two QEMU 10.0 vCPU guests, the source's writing; undefined when QEMU or nasm is absent. */
async function guests(t: TestContext, dir: string): Promise<[VcpuGuest, VcpuGuest] | undefined> {
  const src = await startVcpuGuest(t, '10.0', dir, 'src');
  const dst = await startVcpuGuest(t, '10.0', dir, 'dst', { extra: ['-incoming', 'defer'] });
  if (!src || !dst) return undefined;
  await waitSerial(src, 3);
  return [src, dst];
}

/** Waits for `p` for at most `ms`: a qmigrate that never ends fails the test instead of hanging it. */
function lastJson(stdout: string): Report {
  return JSON.parse(stdout.trim().split('\n').at(-1) ?? '{}') as Report;
}

/** The destination's guest goes on printing and its RAM keeps the guest's invariant. */
async function assertGuestMoved(src: VcpuGuest, dst: VcpuGuest, dir: string): Promise<void> {
  await waitRunstate(dst.qmp, 'running');
  assert.equal((await src.qmp.queryStatus()).status, 'postmigrate');
  const out = (await waitSerial(dst, 0)).length;
  assert.ok((await waitSerial(dst, out)).length > out, 'the destination keeps printing');
  checkGuestCounters(await dumpGuestRam(dst.qmp, join(dir, 'dst.dump')));
}

// 32 MiB/s: a pass takes about 3 s, in which the guest dirties every page again.
const SLOW = ['--max-bandwidth', '32M'];

test('--postcopy: precopy does not converge, the switch after the first pass completes, RAM consistent on the destination', async (t) => {
  const dir = tempDir(t);
  const g = await guests(t, dir);
  if (!g) return;
  const [src, dst] = g;
  const args = ['migrate', '--from', src.cliQmp, '--to', dst.cliQmp, '--tcp', '127.0.0.1:0', ...SLOW];
  const r = await runQmigrate([...args, '--postcopy', '--json']);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const report = lastJson(r.stdout);
  assert.equal(report.status, 'completed');
  assert.equal(report.postcopy?.startedBy, 'passes');
  assert.ok((report.postcopy?.bytes ?? 0) > 0, 'pages were sent in postcopy');
  assert.equal(typeof report.postcopy?.blocktimeMs, 'number', "the destination's blocktime is reported");
  assert.match(
    r.stdout,
    /"event":"MIGRATION","data":\{"status":"postcopy-active"\}/,
    'the events show postcopy-active',
  );
  await assertGuestMoved(src, dst, dir);
});

test('--on-timeout postcopy: at the timeout qmigrate switches to postcopy, and the migration completes', async (t) => {
  const dir = tempDir(t);
  const g = await guests(t, dir);
  if (!g) return;
  const [src, dst] = g;
  const args = ['migrate', '--from', src.cliQmp, '--to', dst.cliQmp, '--tcp', '127.0.0.1:0', ...SLOW];
  const r = await runQmigrate([...args, '--postcopy', '--timeout', '2', '--on-timeout', 'postcopy']);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /^migration completed in /m);
  assert.match(
    r.stdout,
    /postcopy: switched at the timeout \(--on-timeout postcopy\) at \d+ ms, [\d.]+ MiB sent in postcopy, \d+ page requests, guest blocked/,
  );
  assert.match(r.stdout, /the guest runs on the destination/);
  await assertGuestMoved(src, dst, dir);
});

test('a link cut during postcopy: exit 5, both sides postcopy-paused, the guest not cancelled; --resume completes it', async (t) => {
  const dir = tempDir(t);
  const g = await guests(t, dir);
  if (!g) return;
  const [src, dst] = g;
  // The orchestrator reaches the source through a relay that sends its `migrate` to a proxy.
  let proxy: FaultProxy | undefined;
  const relay = await QmpRelay.start(join(dir, 'relay.qmp'), src.cliQmp, async (to: Where) => {
    proxy = await FaultProxy.start(to, { host: '127.0.0.1', port: 0 });
    return proxy.where;
  });
  t.after(async () => {
    await relay.stop();
    await proxy?.stop();
  });
  const args = ['migrate', '--from', relay.path, '--to', dst.cliQmp, '--tcp', '127.0.0.1:0', ...SLOW];
  // Postcopy at 4 MiB/s lasts long enough to cut it.
  const pc = ['--postcopy', '--postcopy-after-passes', '0', '--parameter', 'max-postcopy-bandwidth=4M'];
  const run = startQmigrate(t, [...args, ...pc, '--json']);
  await waitMigrationStatus(src.qmp, 'postcopy-active', 30_000);
  await sleep(500);
  await proxy?.stop();
  const code = await run.exit(60_000);
  assert.equal(code, 5, run.stdout + run.stderr);
  const report = lastJson(run.stdout);
  assert.equal(report.status, 'postcopy-paused');
  assert.match(report.reason ?? '', /the link broke during postcopy/);
  assert.match(run.stderr, /qmigrate migrate --resume --from /, 'it says how to resume');
  assert.equal((await src.qmp.queryMigrate()).status, 'postcopy-paused');
  assert.equal((await dst.qmp.queryMigrate()).status, 'postcopy-paused');
  assert.equal((await dst.qmp.queryStatus()).status, 'running', "the destination's guest was not stopped");
  // Nothing the orchestrator did cancels a paused postcopy migration; now the rest fast.
  await src.qmp.executeRaw('migrate-set-parameters', { 'max-postcopy-bandwidth': 0 });
  const back = [
    'migrate',
    '--from',
    src.cliQmp,
    '--to',
    dst.cliQmp,
    '--tcp',
    '127.0.0.1:0',
    '--resume',
    '--json',
  ];
  const r = await runQmigrate(back);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const resumed = lastJson(r.stdout);
  assert.equal(resumed.status, 'completed');
  assert.equal(resumed.postcopy?.startedBy, 'resume');
  assert.match(r.stdout, /"execute":"migrate-recover"|"status":"postcopy-recover/);
  await assertGuestMoved(src, dst, dir);
});

test('Ctrl-C during postcopy cancels nothing: exit 130, the report says the migration goes on, and it completes', async (t) => {
  const dir = tempDir(t);
  const g = await guests(t, dir);
  if (!g) return;
  const [src, dst] = g;
  const args = ['migrate', '--from', src.cliQmp, '--to', dst.cliQmp, '--tcp', '127.0.0.1:0', ...SLOW];
  const pc = ['--postcopy', '--postcopy-after-passes', '0', '--parameter', 'max-postcopy-bandwidth=16M'];
  const run = startQmigrate(t, [...args, ...pc]);
  await waitMigrationStatus(src.qmp, 'postcopy-active', 30_000);
  run.child.kill('SIGINT');
  assert.equal(await run.exit(60_000), 130, run.stdout);
  const stdout = run.stdout;
  assert.match(
    stdout,
    /^migration postcopy-active after .*: interrupted during postcopy, which cannot be cancelled/m,
  );
  assert.match(stdout, /the guest runs on the destination/);
  const info = await waitMigration(src.qmp, 60_000);
  assert.equal(info.status, 'completed', 'the migration was not cancelled');
  await assertGuestMoved(src, dst, dir);
});

test('SIGUSR1 switches to postcopy on request (postcopy-ram set, no switch of its own); the migration completes', async (t) => {
  const dir = tempDir(t);
  const g = await guests(t, dir);
  if (!g) return;
  const [src, dst] = g;
  const args = ['migrate', '--from', src.cliQmp, '--to', dst.cliQmp, '--tcp', '127.0.0.1:0', ...SLOW];
  const run = startQmigrate(t, [...args, '--capability', 'postcopy-ram', '--json']);
  await waitMigrationStatus(src.qmp, 'active', 30_000);
  await sleep(300);
  run.child.kill('SIGUSR1');
  assert.equal(await run.exit(60_000), 0, run.stdout);
  const report = lastJson(run.stdout);
  assert.equal(report.status, 'completed');
  assert.equal(report.postcopy?.startedBy, 'request');
  await assertGuestMoved(src, dst, dir);
});
