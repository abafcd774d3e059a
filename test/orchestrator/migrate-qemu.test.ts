// runMigration with real QEMU peers: QEMU 10.0 -> QEMU 10.0, the cross pairs with `qmigrate vm`
// and QEMU 7.2 -> 10.0 (the uri form on the source) complete with equal RAM; each preflight
// failure is one line naming the difference and the side, before any byte moves.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PreflightError } from '../../src/orchestrator/errors.js';
import { planMigration, runMigration } from '../../src/orchestrator/migrate.js';
import { QmpClient } from '../../src/qmp/client.js';
import { type PeerKind, waitMigrationStatus } from '../helpers/peers.js';
import { ramEqual, startLab } from './lab.js';

const PAIRS: [PeerKind, PeerKind][] = [
  ['10.0', '10.0'],
  ['10.0', 'qmigrate'],
  ['qmigrate', '10.0'],
  ['7.2', '10.0'],
];
for (const [from, to] of PAIRS) {
  test(`${from} -> ${to}: completed, RAM equal, the guest runs on the destination`, async (t) => {
    const lab = await startLab(t, from, to);
    if (!lab) return;
    const job = runMigration(lab.plan, { pollMs: 100 });
    const report = await job.result;
    assert.equal(report.status, 'completed', JSON.stringify(report));
    assert.equal(report.sourceRunState, 'postmigrate');
    assert.equal(report.destinationRunState, 'running');
    const facts = await job.facts;
    const migrate = (await job.commands).find((c) => c.execute === 'migrate');
    // QEMU 7.2 has no `channels`: it is sent the equivalent uri.
    if (from === '7.2') {
      assert.equal(facts.source.channels, false);
      assert.deepEqual(migrate?.arguments, { uri: `unix:${lab.dir}/mig.sock` });
    } else assert.ok(migrate?.arguments?.channels);
    assert.ok(await ramEqual(lab), 'RAM equal');
  });
}

async function preflightProblems(job: ReturnType<typeof runMigration>): Promise<readonly string[]> {
  const e = await job.result.then(
    (r) => assert.fail(`expected a preflight failure, got ${JSON.stringify(r)}`),
    (e: unknown) => e,
  );
  assert.ok(e instanceof PreflightError, String(e));
  assert.equal(e.code, 'MIGRATE_PREFLIGHT');
  return e.problems;
}

test('preflight (QEMU 10.0): RAM blocks of different sizes', async (t) => {
  const lab = await startLab(t, '10.0', '10.0', { srcMiB: 64, dstMiB: 32 });
  if (!lab) return;
  const problems = await preflightProblems(runMigration(lab.plan));
  assert.deepEqual(problems, ["destination RAM block 'm0' is 32 MiB, source's is 64 MiB"]);
  assert.equal((await lab.dst.qmp.queryMigrate()).status, undefined, 'nothing was sent to the destination');
  assert.equal((await lab.src.qmp.queryStatus()).status, 'running');
});

test('preflight (QEMU 10.0): the destination is not in -incoming defer', async (t) => {
  const lab = await startLab(t, '10.0', '10.0', { defer: false });
  if (!lab) return;
  const problems = await preflightProblems(runMigration(lab.plan));
  assert.deepEqual(problems, [
    "destination is not waiting for a migration: its run state is 'running', not 'inmigrate' (start it with -incoming defer)",
  ]);
});

test('preflight (QEMU 10.0): a migration is already active on the source', async (t) => {
  const lab = await startLab(t, '10.0', '10.0');
  if (!lab) return;
  // Another migration, 1 MiB/s to the same destination: active for a minute.
  await lab.src.qmp.migrateSetParameters({ 'max-bandwidth': 1 << 20 });
  await lab.dst.qmp.migrateIncoming({ uri: `unix:${lab.dir}/other.sock` });
  await lab.src.qmp.migrate({ uri: `unix:${lab.dir}/other.sock` });
  // 'setup' for a moment on a loaded host, and the problem line says which.
  await waitMigrationStatus(lab.src.qmp, 'active');
  const problems = await preflightProblems(runMigration(lab.plan));
  assert.deepEqual(problems, [
    "source already has a migration in progress (status 'active')",
    "destination already has an incoming migration (status 'active'); start it with -incoming defer, not an address",
  ]);
  await lab.src.qmp.migrateCancel();
});

test('preflight (QEMU 10.0): a capability that must agree does not', async (t) => {
  const lab = await startLab(t, '10.0', '10.0');
  if (!lab) return;
  await lab.dst.qmp.migrateSetCapabilities({ capabilities: [{ capability: 'multifd', state: true }] });
  const problems = await preflightProblems(runMigration(lab.plan));
  assert.deepEqual(problems, [
    "capability 'multifd' is on on the destination and off on the source; it must be the same on both (set it with --capability multifd=off)",
  ]);
  // What the user asks for is set on both ends, so then they agree.
  const report = await runMigration({ ...lab.plan, capabilities: { multifd: true } }).result;
  assert.equal(report.status, 'completed', JSON.stringify(report));
});

test('an unreachable monitor: one line per side, naming the address', async (t) => {
  const lab = await startLab(t, '10.0', '10.0');
  if (!lab) return;
  const gone = { kind: 'unix', path: `${lab.dir}/none.qmp` } as const;
  const problems = await preflightProblems(runMigration({ ...lab.plan, from: gone, to: gone }));
  assert.equal(problems.length, 2);
  assert.match(problems[0] ?? '', /^cannot reach the source's monitor at unix:.*none\.qmp: .*No such file/);
  assert.match(problems[1] ?? '', /^cannot reach the destination's monitor at unix:/);
});

test('QEMU 10.0: a source paused before the migration ends paused on the destination', async (t) => {
  const lab = await startLab(t, '10.0', '10.0');
  if (!lab) return;
  await lab.src.qmp.stop();
  const report = await runMigration(lab.plan).result;
  assert.equal(report.status, 'completed', JSON.stringify(report));
  assert.equal(report.destinationRunState, 'paused');
});

/** QEMU 10.0 -> QEMU 10.0 held in `active` by max-bandwidth (64 MiB at 1 MiB/s). */
const SLOW = { 'max-bandwidth': 1 << 20 };

test('QEMU 10.0: AbortSignal during active cancels; the source runs, the destination is as QEMU leaves it', async (t) => {
  const lab = await startLab(t, '10.0', '10.0');
  if (!lab) return;
  const ac = new AbortController();
  const job = runMigration({ ...lab.plan, parameters: SLOW }, { signal: ac.signal, pollMs: 100 });
  for await (const s of job)
    if (s.type === 'progress' && s.status === 'active' && s.transferred > 0) ac.abort();
  const report = await job.result;
  assert.equal(report.status, 'cancelled', JSON.stringify(report));
  assert.equal(report.endedBy, 'interrupt');
  assert.equal(report.sourceRunState, 'running');
  assert.equal(report.warnings, undefined);
  // QEMU 10.0's migrate-incoming has exit-on-error true by default: the destination whose
  // stream was cut fails its load and exits.
  assert.equal(report.destinationRunState, 'unreachable');
  assert.equal(await lab.dst.exited, 1);
});

test('QEMU 10.0: timeout with policy cancel', async (t) => {
  const lab = await startLab(t, '10.0', '10.0');
  if (!lab) return;
  const report = await runMigration({ ...lab.plan, parameters: SLOW, timeoutS: 1 }, { pollMs: 100 }).result;
  assert.equal(report.status, 'cancelled', JSON.stringify(report));
  assert.equal(report.endedBy, 'timeout-cancel');
  assert.equal(report.sourceRunState, 'running');
});

test('QEMU 10.0: timeout with policy pause stops the source; the destination, paused by QEMU, is started', async (t) => {
  const lab = await startLab(t, '10.0', '10.0', { srcMiB: 8 });
  if (!lab) return;
  const job = runMigration(
    { ...lab.plan, parameters: { 'max-bandwidth': 2 << 20 }, timeoutS: 1, onTimeout: 'pause' },
    { pollMs: 100 },
  );
  const events: string[] = [];
  for await (const s of job)
    if (s.type === 'event' && s.side === 'source') events.push(String(s.data.status ?? s.event));
  const report = await job.result;
  assert.equal(report.status, 'completed', JSON.stringify(report));
  assert.equal(report.endedBy, 'timeout-pause');
  assert.ok((report.totalTimeMs ?? 0) >= 1000, 'still active when the timeout came');
  assert.equal(report.sourceRunState, 'postmigrate');
  assert.equal(report.destinationRunState, 'running');
  assert.deepEqual(events.filter((e) => e !== 'MIGRATION_PASS').slice(-1), ['completed']);
});

test('a destination whose load fails: reported failed with the reason, the source guest runs', async (t) => {
  // A 64 MiB source into a 32 MiB QEMU 10.0: caught by the preflight where both sides have
  // query-memdev; a qmigrate vm without it starts sending, the destination's load fails on
  // the block's length and QEMU 10.0 exits, which cuts the source's stream.
  const lab = await startLab(t, 'qmigrate', '10.0', { srcMiB: 64, dstMiB: 32 });
  if (!lab) return;
  const hasMemdev = (await lab.src.qmp.queryCommands()).some((c) => c.name === 'query-memdev');
  const job = runMigration(lab.plan, { pollMs: 100 });
  if (hasMemdev) {
    assert.deepEqual(await preflightProblems(job), [
      "destination RAM block 'm0' is 32 MiB, source's is 64 MiB",
    ]);
    return;
  }
  const report = await job.result;
  assert.equal(report.status, 'failed', JSON.stringify(report));
  assert.match(report.reason ?? '', /Connection reset by peer|Broken pipe|the destination failed to load/);
  assert.equal(report.sourceRunState, 'running');
  assert.equal(report.destinationRunState, 'unreachable');
});

test("planMigration (--dry-run): the commands in each side's form after a preflight, and nothing sent", async (t) => {
  const lab = await startLab(t, '7.2', '10.0');
  if (!lab) return;
  const { facts, commands } = await planMigration({ ...lab.plan, capabilities: { multifd: true } });
  assert.equal(facts.source.versionText.startsWith('7.2.'), true);
  assert.deepEqual(
    commands.map((c) => `${c.side} ${c.execute}`),
    [
      'destination migrate-set-capabilities',
      'destination migrate-incoming',
      'source migrate-set-capabilities',
      'source migrate-set-parameters',
      'source migrate',
    ],
  );
  assert.deepEqual(commands.at(-1)?.arguments, { uri: `unix:${lab.dir}/mig.sock` });
  // max-bandwidth, the lab's only parameter, is read by the source alone.
  assert.ok(commands[1]?.arguments?.channels, 'QEMU 10.0 takes channels');
  assert.equal((await lab.dst.qmp.queryMigrate()).status, undefined);
  const caps = await lab.dst.qmp.queryMigrateCapabilities();
  assert.equal(caps.find((c) => c.capability === 'multifd')?.state, false, 'nothing was set');
  await assert.rejects(
    planMigration({ ...lab.plan, from: lab.plan.to, to: lab.plan.from }),
    (e: unknown) =>
      e instanceof PreflightError &&
      /^destination is not waiting/.test(e.problems[0] ?? '') &&
      /^source is itself waiting/.test(e.problems[1] ?? ''),
  );
});

test('QEMU 10.0: a monitor another client holds is named as such after the connect timeout', async (t) => {
  const lab = await startLab(t, '10.0', '10.0');
  if (!lab) return;
  // Another client holds the destination's second monitor; QEMU greets no one else there.
  const other = await QmpClient.connect(`${lab.dir}/dst-orch.qmp`);
  t.after(() => other.close());
  const e = await planMigration(lab.plan, { connectTimeoutMs: 1000 }).then(
    () => assert.fail('expected a preflight failure'),
    (e: unknown) => e,
  );
  assert.ok(e instanceof PreflightError);
  assert.match(
    e.message,
    /^cannot reach the destination's monitor at unix:.*dst-orch\.qmp: no QMP session within 1000 ms \(a QEMU monitor serves one client at a time: is another one connected to it\?\)$/,
  );
});

for (const [from, to] of [
  ['10.0', 'qmigrate'],
  ['qmigrate', '10.0'],
] as [PeerKind, PeerKind][]) {
  test(`${from} -> ${to} with multifd 3: capability and channel count set on both ends`, async (t) => {
    const lab = await startLab(t, from, to);
    if (!lab) return;
    const plan = { ...lab.plan, capabilities: { multifd: true }, parameters: { 'multifd-channels': 3 } };
    const report = await runMigration(plan, { pollMs: 100 }).result;
    assert.equal(report.status, 'completed', JSON.stringify(report));
    for (const qmp of [lab.src.qmp, lab.dst.qmp]) {
      assert.equal((await qmp.queryMigrateParameters())['multifd-channels'], 3);
      const caps = await qmp.queryMigrateCapabilities();
      assert.equal(caps.find((c) => c.capability === 'multifd')?.state, true);
    }
    assert.ok(await ramEqual(lab), 'RAM equal');
  });
}

test('an abort while the destination has not finished after the source completed: the report at once, with a warning', async (t) => {
  const lab = await startLab(t, '10.0', '10.0');
  if (!lab) return;
  // x-colo: the source completes, the destination stays in 'colo' (no secondary ever comes).
  const ac = new AbortController();
  const job = runMigration(
    { ...lab.plan, capabilities: { 'x-colo': true } },
    { pollMs: 100, signal: ac.signal, completionWaitMs: 20_000 },
  );
  const started = Date.now();
  for await (const s of job)
    if (s.type === 'event' && s.side === 'source' && s.data.status === 'completed')
      setTimeout(() => ac.abort(), 300);
  const report = await job.result;
  assert.ok(Date.now() - started < 5000, `${Date.now() - started} ms`);
  assert.equal(report.status, 'completed');
  assert.match(report.warnings?.join('\n') ?? '', /^interrupted while the destination was still 'colo'/);
});
