// The postcopy rules of `qmigrate migrate`, without peers: what --postcopy,
// --postcopy-after-passes, --on-timeout postcopy and --resume put in the plan (and refuse),
// the commands of a resume plan, the preflight's postcopy and resume checks, exit code 5 for
// a paused postcopy migration, and the report's postcopy lines.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { exitCodeOf, type MigrateFlags, planOptions } from '../../src/cli/commands/migrate.js';
import { CliUsageError } from '../../src/cli/errors.js';
import { planCommands, planResumeCommands } from '../../src/orchestrator/plan.js';
import { comparePreflight, compareResume, type SideFacts } from '../../src/orchestrator/preflight.js';
import { formatPlainLine, formatReport } from '../../src/orchestrator/progress.js';
import type { MigratePlan, MigrationReport } from '../../src/orchestrator/types.js';

const flags = (over: Partial<MigrateFlags> = {}): MigrateFlags => ({
  from: 's',
  to: 'd',
  tcp: '127.0.0.1:0',
  onTimeout: 'cancel',
  ...over,
});

test('--postcopy: postcopy-ram on both sides, blocktime on the destination, the switch after 1 pass', () => {
  const o = planOptions(flags({ postcopy: true }));
  assert.equal(o.capabilities['postcopy-ram'], true);
  assert.equal(o.capabilities['postcopy-blocktime'], true);
  assert.deepEqual(o.postcopy, { afterPasses: 1 });
  const plan = { ...o, from: { kind: 'unix', path: 's' }, to: { kind: 'unix', path: 'd' } } as MigratePlan;
  const caps = (side: string) =>
    planCommands(plan).find((c) => c.side === side && c.execute === 'migrate-set-capabilities')?.arguments
      ?.capabilities as { capability: string }[];
  assert.deepEqual(
    caps('destination').map((c) => c.capability),
    ['events', 'postcopy-ram', 'postcopy-blocktime'],
  );
  assert.deepEqual(
    caps('source').map((c) => c.capability),
    ['events', 'postcopy-ram'],
  );
});

test('--postcopy-after-passes N, and --on-timeout postcopy alone: at the timeout only', () => {
  assert.deepEqual(planOptions(flags({ postcopy: true, postcopyAfterPasses: 0 })).postcopy, {
    afterPasses: 0,
  });
  const atTimeout = planOptions(flags({ postcopy: true, timeout: 30, onTimeout: 'postcopy' }));
  assert.deepEqual(atTimeout.postcopy, {});
  assert.equal(atTimeout.onTimeout, 'postcopy');
  assert.deepEqual(
    planOptions(flags({ postcopy: true, postcopyAfterPasses: 3, timeout: 30, onTimeout: 'postcopy' }))
      .postcopy,
    { afterPasses: 3 },
  );
  // --capability postcopy-ram is postcopy enabled too: the switch is the timeout's (or SIGUSR1's).
  const cap = planOptions(flags({ capability: ['postcopy-ram'], timeout: 30, onTimeout: 'postcopy' }));
  assert.equal(cap.postcopy, undefined);
  assert.equal(cap.capabilities['postcopy-ram'], true);
});

test('the postcopy flags refused with a usage error naming what to add or drop', () => {
  const refused = (over: Partial<MigrateFlags>, want: RegExp) =>
    assert.throws(
      () => planOptions(flags(over)),
      (e: unknown) => e instanceof CliUsageError && want.test(e.message),
    );
  refused(
    { timeout: 5, onTimeout: 'postcopy' },
    /^--on-timeout postcopy .*needs postcopy-ram on both sides: add --postcopy$/,
  );
  refused(
    { postcopy: true, onTimeout: 'postcopy' },
    /^--on-timeout postcopy applies at the --timeout: add --timeout SECONDS$/,
  );
  refused({ postcopyAfterPasses: 2 }, /add --postcopy$/);
  refused({ postcopy: true, capability: ['postcopy-ram=off'] }, /drop --capability postcopy-ram=off$/);
});

test('--resume: a resume plan with nothing to set; its commands are migrate-recover, then migrate resume', () => {
  const o = planOptions(flags({ resume: true }));
  assert.equal(o.resume, true);
  assert.deepEqual(o.capabilities, {});
  assert.deepEqual(o.parameters, {});
  const plan = { ...o, from: { kind: 'unix', path: 's' }, to: { kind: 'unix', path: 'd' } } as MigratePlan;
  const listening = [{ type: 'inet' as const, host: '127.0.0.1', port: '4321' }];
  assert.deepEqual(planResumeCommands(plan, { listening }), [
    { side: 'destination', execute: 'migrate-recover', arguments: { uri: 'tcp:127.0.0.1:0' } },
    {
      side: 'source',
      execute: 'migrate',
      arguments: {
        channels: [
          {
            'channel-type': 'main',
            addr: { transport: 'socket', type: 'inet', host: '127.0.0.1', port: '4321' },
          },
        ],
        resume: true,
      },
    },
  ]);
  assert.deepEqual(planResumeCommands(plan, { listening, sourceChannels: false })[1]?.arguments, {
    uri: 'tcp:127.0.0.1:4321',
    resume: true,
  });
});

function side(over: Partial<SideFacts> = {}): SideFacts {
  return {
    version: { qemu: { major: 10, minor: 0, micro: 0 }, package: '' },
    versionText: '10.0.0',
    channels: true,
    runState: 'running',
    migration: {},
    capabilities: { 'postcopy-ram': false, events: false },
    parameters: {},
    commands: ['migrate', 'migrate-start-postcopy', 'migrate-recover'],
    ...over,
  };
}

test('preflight: a postcopy plan needs the capability on both and migrate-start-postcopy on the source', () => {
  const plan: MigratePlan = {
    from: { kind: 'unix', path: 's' },
    to: { kind: 'unix', path: 'd' },
    uri: 'unix:m',
    capabilities: { 'postcopy-ram': true },
    parameters: {},
    onTimeout: 'cancel',
    postcopy: { afterPasses: 1 },
  };
  const dst = side({ runState: 'inmigrate' });
  assert.deepEqual(comparePreflight({ source: side(), destination: dst }, plan), []);
  assert.deepEqual(
    comparePreflight({ source: side({ capabilities: {}, commands: ['migrate'] }), destination: dst }, plan),
    [
      "source (QEMU 10.0.0) has no 'postcopy-ram' capability: it cannot migrate in postcopy",
      'source (QEMU 10.0.0) has no migrate-start-postcopy: it cannot switch to postcopy',
    ],
  );
  assert.deepEqual(comparePreflight({ source: side(), destination: dst }, { ...plan, capabilities: {} }), [
    "a switch to postcopy needs capability 'postcopy-ram' on both sides",
  ]);
});

test('preflight of a resume: both sides postcopy-paused, migrate-recover on the destination', () => {
  const paused = { migration: { status: 'postcopy-paused' as const } };
  assert.deepEqual(compareResume({ source: side(paused), destination: side(paused) }), []);
  assert.deepEqual(
    compareResume({
      source: side({ migration: { status: 'completed' } }),
      destination: side({ ...paused, commands: [] }),
    }),
    [
      "source's migration is 'completed', not 'postcopy-paused': there is no paused postcopy migration to resume",
      'destination (QEMU 10.0.0) has no migrate-recover: it cannot resume a postcopy migration',
    ],
  );
});

const report = (over: Partial<MigrationReport>): MigrationReport => ({
  type: 'report',
  status: 'completed',
  sourceRunState: 'postmigrate',
  destinationRunState: 'running',
  ...over,
});

test('exit code 5 for a paused postcopy migration; the report and progress lines show postcopy', () => {
  assert.equal(exitCodeOf(report({ status: 'postcopy-paused' })), 5);
  // A resume still recovering when qmigrate stopped waiting: the guest is on the destination,
  // so not 1 ("the source's guest keeps running").
  assert.equal(
    exitCodeOf(report({ status: 'postcopy-active', sourceRunState: 'finish-migrate', endedBy: undefined })),
    5,
  );
  assert.equal(exitCodeOf(report({})), 0);
  const done = formatReport(
    report({
      totalTimeMs: 3250,
      downtimeMs: 1,
      postcopy: { startedBy: 'passes', startedAtMs: 3016, bytes: 104011799, requests: 1723, blocktimeMs: 40 },
    }),
  );
  assert.deepEqual(done, [
    'migration completed in 3250 ms (downtime 1 ms)',
    '  postcopy: switched after precopy passes that did not converge at 3016 ms, 99.2 MiB sent in postcopy, 1723 page requests, guest blocked 40 ms on missing pages',
    '  the guest runs on the destination',
  ]);
  const paused = formatReport(
    report({
      status: 'postcopy-paused',
      reason: 'the link broke during postcopy (Channel error: Input/output error)',
      sourceRunState: 'finish-migrate',
      postcopy: { startedBy: 'timeout', startedAtMs: 2000 },
    }),
  );
  assert.equal(
    paused[0],
    'migration postcopy-paused: the link broke during postcopy (Channel error: Input/output error)',
  );
  assert.match(
    paused.at(-1) ?? '',
    /on the destination \(run state 'running'\), blocked on missing pages until the migration is resumed/,
  );
  const line = formatPlainLine({
    type: 'progress',
    elapsedMs: 4000,
    status: 'postcopy-active',
    pass: 3,
    transferred: 120 << 20,
    total: 128 << 20,
    remaining: 90 << 20,
    throughput: 0,
    dirtyPagesRate: 0,
    postcopyRequests: 46,
    postcopyBytes: 8 << 20,
  });
  assert.match(
    line,
    /^\[4\.0 s\] postcopy-active \S+, 120\.0 MiB sent, 90\.0 MiB to go, .*, postcopy 8\.0 MiB, 46 page requests, ETA/,
  );
});

test('an interrupt in postcopy: the report says why once (in its first line), not again below it', () => {
  const reason =
    'interrupted during postcopy (the source is postcopy-active), which cannot be cancelled (the guest runs on the destination): the migration goes on without qmigrate following it';
  const lines = formatReport(
    report({ status: 'postcopy-active', endedBy: 'interrupt', reason, sourceRunState: 'finish-migrate' }),
  );
  assert.equal(lines[0], `migration postcopy-active: ${reason}`);
  assert.equal(lines.filter((l) => l.includes(reason)).length, 1, lines.join('\n'));
  // A cancel in precopy still gives its reason below the headline's words.
  const cancelled = formatReport(
    report({
      status: 'cancelled',
      endedBy: 'interrupt',
      reason: 'cancelled by the user',
      sourceRunState: 'running',
    }),
  );
  assert.deepEqual(cancelled.slice(0, 2), [
    'migration cancelled: interrupted: the migration was cancelled',
    '  cancelled by the user',
  ]);
});
