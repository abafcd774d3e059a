// runMigration between two `qmigrate vm` peers: a completed migration with the destination's
// RAM equal to the source's and the samples a progress display needs; port 0 read back;
// cancel by AbortSignal; both timeout policies; and preflight failures before any byte moves.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MonitorLostError, PreflightError } from '../../src/orchestrator/errors.js';
import { type MigrationSample, runMigration } from '../../src/orchestrator/migrate.js';
import { QmpClientError } from '../../src/qmp/errors.js';
import { ramEqual, startLab } from './lab.js';

test('qmigrate -> qmigrate: completed, RAM equal, progress and events seen', async (t) => {
  const lab = await startLab(t, 'qmigrate', 'qmigrate');
  if (!lab) return;
  const job = runMigration(lab.plan, { pollMs: 100 });
  const samples: MigrationSample[] = [];
  for await (const s of job) samples.push(s);
  const report = await job.result;
  assert.equal(report.status, 'completed', JSON.stringify(report));
  assert.equal(report.sourceRunState, 'postmigrate');
  assert.equal(report.destinationRunState, 'running');
  assert.ok(report.transferred && report.transferred > 0);
  assert.ok(samples.some((s) => s.type === 'event' && s.side === 'source' && s.data.status === 'completed'));
  assert.ok(samples.some((s) => s.type === 'event' && s.side === 'destination'));
  assert.ok(samples.some((s) => s.type === 'progress'));
  assert.ok(await ramEqual(lab), 'RAM equal');
});

test('tcp port 0: the destination listening port is read back and used by migrate', async (t) => {
  const lab = await startLab(t, 'qmigrate', 'qmigrate');
  if (!lab) return;
  const addr = { transport: 'socket', type: 'inet', host: '127.0.0.1', port: '0' } as const;
  const job = runMigration({ ...lab.plan, channels: [{ 'channel-type': 'main', addr }] });
  const report = await job.result;
  assert.equal(report.status, 'completed', JSON.stringify(report));
  const commands = await job.commands;
  const incoming = commands.find((c) => c.execute === 'migrate-incoming');
  assert.deepEqual(incoming?.arguments, { channels: [{ 'channel-type': 'main', addr }] });
  const migrate = commands.find((c) => c.execute === 'migrate');
  const sent = (migrate?.arguments?.channels ?? []) as { addr: { port: string } }[];
  const port = sent[0]?.addr.port;
  assert.match(port ?? '', /^[1-9]\d*$/, 'a real port, not 0');
  assert.ok(await ramEqual(lab));
});

/** A source whose guest dirties RAM faster than max-bandwidth lets it go: never converges. */
const SLOW = { srcMiB: 16, workloadRate: 20_000 };

test('AbortSignal during active: migrate_cancel, report cancelled, the source guest runs', async (t) => {
  const lab = await startLab(t, 'qmigrate', 'qmigrate', SLOW);
  if (!lab) return;
  const ac = new AbortController();
  const job = runMigration(
    { ...lab.plan, parameters: { 'max-bandwidth': 2 << 20 } },
    { signal: ac.signal, pollMs: 100 },
  );
  for await (const s of job)
    if (s.type === 'progress' && s.status === 'active' && s.transferred > 0) ac.abort();
  const report = await job.result;
  assert.equal(report.status, 'cancelled', JSON.stringify(report));
  assert.equal(report.endedBy, 'interrupt');
  assert.equal(report.sourceRunState, 'running');
  assert.equal(report.warnings, undefined);
  assert.equal((await lab.src.qmp.queryStatus()).status, 'running');
  assert.equal((await lab.src.qmp.queryMigrate()).status, 'cancelled');
});

test('timeout with policy cancel: cancelled after the timeout, the source guest runs', async (t) => {
  const lab = await startLab(t, 'qmigrate', 'qmigrate', SLOW);
  if (!lab) return;
  const started = Date.now();
  const job = runMigration(
    { ...lab.plan, parameters: { 'max-bandwidth': 2 << 20 }, timeoutS: 1, onTimeout: 'cancel' },
    { pollMs: 100 },
  );
  const report = await job.result;
  assert.equal(report.status, 'cancelled', JSON.stringify(report));
  assert.equal(report.endedBy, 'timeout-cancel');
  assert.match(report.reason ?? '', /timed out after 1 s/);
  assert.ok(Date.now() - started >= 1000);
  assert.equal(report.sourceRunState, 'running');
});

test('timeout with policy pause: the source is stopped, the migration converges, the guest runs on the destination', async (t) => {
  const lab = await startLab(t, 'qmigrate', 'qmigrate', SLOW);
  if (!lab) return;
  const job = runMigration(
    { ...lab.plan, parameters: { 'max-bandwidth': 8 << 20 }, timeoutS: 1, onTimeout: 'pause' },
    { pollMs: 100 },
  );
  const report = await job.result;
  assert.equal(report.status, 'completed', JSON.stringify(report));
  assert.equal(report.endedBy, 'timeout-pause');
  assert.equal(report.sourceRunState, 'postmigrate');
  assert.equal(report.destinationRunState, 'running');
  // When the policy stopped the guest (ms since migrate): the --report page marks the guest
  // paused from there, which QEMU's downtime (from the switchover) does not count.
  assert.ok(
    report.pausedAtMs !== undefined && report.pausedAtMs >= 1000 && report.pausedAtMs < 1000 + 2000,
    JSON.stringify(report),
  );
});

test('a source paused before the migration ends paused on the destination, as QEMU 10.0 (no cont then)', async (t) => {
  const lab = await startLab(t, 'qmigrate', 'qmigrate');
  if (!lab) return;
  await lab.src.qmp.stop();
  const report = await runMigration(lab.plan).result;
  assert.equal(report.status, 'completed', JSON.stringify(report));
  assert.equal(report.destinationRunState, 'paused');
  assert.equal(report.endedBy, undefined);
});

test('preflight (qmigrate): destination not deferred, a capability that disagrees, nothing sent', async (t) => {
  const lab = await startLab(t, 'qmigrate', 'qmigrate', { defer: false });
  if (!lab) return;
  await lab.dst.qmp.migrateSetCapabilities({ capabilities: [{ capability: 'multifd', state: true }] });
  const e = await runMigration(lab.plan).result.then(
    () => assert.fail('expected a preflight failure'),
    (e: unknown) => e,
  );
  assert.ok(e instanceof PreflightError);
  assert.deepEqual(e.problems, [
    "destination is not waiting for a migration: its run state is 'running', not 'inmigrate' (start it with -incoming defer)",
    "capability 'multifd' is on on the destination and off on the source; it must be the same on both (set it with --capability multifd=off)",
  ]);
  assert.equal((await lab.src.qmp.queryMigrate()).status, undefined);
  assert.equal((await lab.src.qmp.queryStatus()).status, 'running');
});

test('timeout pause, then a cancel before it converged: the guest the policy stopped runs again', async (t) => {
  const lab = await startLab(t, 'qmigrate', 'qmigrate', SLOW);
  if (!lab) return;
  const ac = new AbortController();
  // 16 MiB at 1 MiB/s: still active well after the pause at 1 s.
  const job = runMigration(
    { ...lab.plan, parameters: { 'max-bandwidth': 1 << 20 }, timeoutS: 1, onTimeout: 'pause' },
    { pollMs: 100, signal: ac.signal },
  );
  for await (const s of job) if (s.type === 'progress' && s.elapsedMs > 2500) ac.abort();
  const report = await job.result;
  assert.equal(report.status, 'cancelled', JSON.stringify(report));
  assert.equal(report.endedBy, 'timeout-pause');
  assert.equal(report.sourceRunState, 'running');
  assert.equal(report.warnings, undefined);
});

test('a capability a side refuses: a PreflightError naming the side and the command', async (t) => {
  const lab = await startLab(t, 'qmigrate', 'qmigrate');
  if (!lab) return;
  const e = await runMigration({ ...lab.plan, capabilities: { xbzrle: true } }).result.then(
    () => assert.fail('expected a preflight failure'),
    (e: unknown) => e,
  );
  assert.ok(e instanceof PreflightError);
  assert.equal(
    e.message,
    "destination refused migrate-incoming: Capability 'xbzrle' is not supported by qmigrate: XBZRLE page encoding is not implemented",
  );
  assert.equal((await lab.src.qmp.queryStatus()).status, 'running');
});

test('progress samples: percent rises, throughput follows max-bandwidth, ETA from what remains; the report', async (t) => {
  const lab = await startLab(t, 'qmigrate', 'qmigrate', { srcMiB: 16 });
  if (!lab) return;
  const seen: MigrationSample[] = [];
  const job = runMigration(
    { ...lab.plan, parameters: { 'max-bandwidth': 4 << 20 } },
    { pollMs: 250, onSample: (s) => seen.push(s) },
  );
  const iterated: MigrationSample[] = [];
  for await (const s of job) iterated.push(s);
  assert.deepEqual(iterated, seen, 'onSample sees what the iterator yields');
  const active = iterated.filter((s) => s.type === 'progress' && s.status === 'active' && s.pass === 1);
  assert.ok(active.length >= 4, `${active.length} samples in the first pass`);
  const percents = active.map((s) => (s.type === 'progress' ? (s.percent ?? -1) : -1));
  for (let i = 1; i < percents.length; i++) assert.ok(percents[i]! >= percents[i - 1]!, `${percents}`);
  assert.ok(percents[0]! >= 0 && percents.at(-1)! <= 100);
  const mid = active[Math.floor(active.length / 2)];
  assert.ok(mid?.type === 'progress');
  assert.equal(mid.total, 16 << 20);
  // 4 MiB/s, with generous margins for a loaded machine.
  assert.ok(mid.throughput > 1 << 20 && mid.throughput < 12 << 20, `throughput ${mid.throughput}`);
  assert.ok(mid.etaS !== undefined && mid.etaS > 0 && mid.etaS < 30, `eta ${mid.etaS}`);
  const report = await job.result;
  assert.equal(report.status, 'completed');
  assert.ok((report.totalTimeMs ?? 0) >= 2000, `total ${report.totalTimeMs}`);
  assert.ok(report.downtimeMs !== undefined && report.setupTimeMs !== undefined);
  assert.ok((report.passes ?? 0) >= 1);
  assert.ok((report.pages?.normal ?? 0) > 0 && (report.pages?.duplicate ?? 0) > 0);
  assert.ok((report.transferred ?? 0) >= 8 << 20);
  assert.ok(report.throughput && report.throughput < 12 << 20);
});

test("the source's process dies during the migration: a MonitorLostError naming the source, not the client's bare 'client is closed'", async (t) => {
  const lab = await startLab(t, 'qmigrate', 'qmigrate', SLOW);
  if (!lab) return;
  const job = runMigration({ ...lab.plan, parameters: { 'max-bandwidth': 2 << 20 } }, { pollMs: 100 });
  await assert.rejects(
    (async () => {
      for await (const s of job)
        if (s.type === 'progress' && s.status === 'active' && s.transferred > 0)
          lab.src.child.kill('SIGKILL');
    })(),
    (e: unknown) => {
      assert.ok(e instanceof MonitorLostError, String(e));
      assert.ok(e instanceof QmpClientError);
      assert.equal(e.side, 'source');
      assert.match(e.message, /^the source's monitor closed \(did its QEMU exit\?\) during the migration: /);
      return true;
    },
  );
  await assert.rejects(job.result, MonitorLostError);
});
