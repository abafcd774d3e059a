// What `qmigrate migrate` prints and returns for each way a migration ends, with a scripted
// orchestrator in place of the real one: JSON lines and nothing else with --json, a plain
// line a second in a log, a redrawn line on a terminal, nothing with --quiet unless it
// failed; exit 0 completed, 1 failed, 3 preflight or unreachable, 4 timeout; the flags are
// checked before the orchestrator is even loaded; an abort reaches the orchestrator and its
// report is still printed.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  type MigrateFlags,
  type MigrateIo,
  type MigrateLibrary,
  type MigrationJob,
  runMigrate,
} from '../../src/cli/commands/migrate.js';
import { CliUsageError, Interrupted } from '../../src/cli/errors.js';
import { parseQmpEndpoint } from '../../src/orchestrator/endpoint.js';
import { PreflightError } from '../../src/orchestrator/errors.js';
import type {
  MigratePlan,
  MigrationEventSample,
  MigrationReport,
  ProgressSample,
} from '../../src/orchestrator/types.js';
import { ConnectError } from '../../src/qmp/errors.js';

const MiB = 2 ** 20;

function sample(elapsedMs: number, percent: number): ProgressSample {
  const total = 1024 * MiB;
  return {
    type: 'progress',
    elapsedMs,
    status: 'active',
    pass: 1,
    transferred: (total * percent) / 100,
    total,
    remaining: total - (total * percent) / 100,
    percent,
    throughput: 100 * MiB,
    dirtyPagesRate: 0,
    expectedDowntimeMs: 300,
  };
}

const event = (elapsedMs: number, status: string): MigrationEventSample => ({
  type: 'event',
  side: 'source',
  elapsedMs,
  event: 'MIGRATION',
  data: { status },
});

const completed: MigrationReport = {
  type: 'report',
  status: 'completed',
  totalTimeMs: 2600,
  setupTimeMs: 4,
  downtimeMs: 2,
  transferred: 1024 * MiB,
  throughput: 400 * MiB,
  passes: 2,
  pages: { normal: 1000, duplicate: 261144 },
  sourceRunState: 'postmigrate',
  destinationRunState: 'running',
};

const items = [
  event(1, 'setup'),
  sample(0, 0),
  event(5, 'active'),
  sample(400, 10),
  sample(900, 30),
  sample(1100, 50),
  sample(2500, 90),
];

/** An orchestrator that plays `script` and ends with `end`; it records the plan it got. */
function fakeLib(script: (ProgressSample | MigrationEventSample)[], end: MigrationReport | Error) {
  const seen: { plan?: MigratePlan; signal?: AbortSignal; loaded: boolean } = { loaded: false };
  const lib: MigrateLibrary = {
    parseQmpEndpoint: (text) => ({ kind: 'unix', path: text }),
    planFor: async (plan) => [
      { side: 'destination', execute: 'migrate-incoming', arguments: { channels: plan.channels } },
      { side: 'source', execute: 'migrate', arguments: { channels: plan.channels } },
    ],
    runMigration(plan, { signal }): MigrationJob {
      seen.plan = plan;
      seen.signal = signal;
      const result = end instanceof Error ? Promise.reject(end) : Promise.resolve(end);
      return {
        result,
        async *[Symbol.asyncIterator]() {
          if (end instanceof Error && script.length === 0) throw end;
          yield* script;
        },
      };
    },
  };
  const load = async () => {
    seen.loaded = true;
    return lib;
  };
  return { load, seen };
}

/** An io that keeps what was written; `columns` for a terminal. */
function capture(isTTY = false) {
  const out: string[] = [];
  const err: string[] = [];
  const io: MigrateIo = {
    out: (t) => void out.push(t),
    err: (l) => void err.push(l),
    isTTY,
    columns: () => 100,
  };
  return { io, out, err, stdout: () => out.join('') };
}

const flags = (extra: Partial<MigrateFlags> = {}): MigrateFlags => ({
  from: '/run/src.qmp',
  to: '/run/dst.qmp',
  unix: '/run/mig.sock',
  onTimeout: 'cancel',
  ...extra,
});

test('--json: one JSON object per line, nothing else on stdout, the report last', async () => {
  const { load } = fakeLib(items, completed);
  const c = capture(true);
  assert.equal(await runMigrate(flags({ json: true }), c.io, load), 0);
  const lines = c.stdout().split('\n');
  assert.equal(lines.pop(), '', 'ends with a newline');
  const objects = lines.map((l) => JSON.parse(l) as { type: string });
  assert.deepEqual(
    objects.map((o) => o.type),
    ['event', 'progress', 'event', 'progress', 'progress', 'progress', 'progress', 'report'],
  );
  assert.deepEqual(objects.at(-1), completed);
  assert.deepEqual(c.err, []);
});

test('not a terminal: a plain line a second, the events, then the report', async () => {
  const { load } = fakeLib(items, completed);
  const c = capture(false);
  assert.equal(await runMigrate(flags(), c.io, load), 0);
  assert.equal(
    c.stdout(),
    [
      '[0.0 s] source: MIGRATION setup',
      '[0.0 s] active 0%, 0 B / 1.0 GiB, 100.0 MiB/s, dirty 0 pages/s, pass 1, expected downtime 300 ms, ETA --:--',
      '[0.0 s] source: MIGRATION active',
      '[1.1 s] active 50%, 512.0 MiB / 1.0 GiB, 100.0 MiB/s, dirty 0 pages/s, pass 1, expected downtime 300 ms, ETA --:--',
      '[2.5 s] active 90%, 921.6 MiB / 1.0 GiB, 100.0 MiB/s, dirty 0 pages/s, pass 1, expected downtime 300 ms, ETA 00:02',
      'migration completed in 2600 ms (setup 4 ms, downtime 2 ms)',
      '  1.0 GiB sent at 400.0 MiB/s, 2 passes, pages: 1000 normal, 261144 zero',
      '  the guest runs on the destination',
      '',
    ].join('\n'),
  );
});

test('a terminal: one line redrawn in place, then the report on lines of its own', async () => {
  const { load } = fakeLib(items, completed);
  const c = capture(true);
  const ci = process.env.CI;
  delete process.env.CI;
  try {
    assert.equal(await runMigrate(flags(), c.io, load), 0);
  } finally {
    if (ci !== undefined) process.env.CI = ci;
  }
  const frames = c.out.filter((t) => t.startsWith('\r\x1b[2K'));
  assert.equal(frames.length, 5, 'a frame per sample, none per event');
  assert.equal(
    frames[4],
    '\r\x1b[2Kactive 90%  921.6 MiB / 1.0 GiB  100.0 MiB/s  dirty 0 pages/s  pass 1  downtime ~300 ms  ETA 00:02',
  );
  assert.ok(
    c
      .stdout()
      .endsWith(
        'ETA 00:02\nmigration completed in 2600 ms (setup 4 ms, downtime 2 ms)\n  1.0 GiB sent at 400.0 MiB/s, 2 passes, pages: 1000 normal, 261144 zero\n  the guest runs on the destination\n',
      ),
  );
});

test('--quiet: nothing when it completes; the report on stderr when it does not', async () => {
  const ok = capture();
  assert.equal(await runMigrate(flags({ quiet: true }), ok.io, fakeLib(items, completed).load), 0);
  assert.deepEqual([ok.out, ok.err], [[], []]);
  const failed: MigrationReport = {
    type: 'report',
    status: 'failed',
    reason: 'Connection reset by peer',
    sourceRunState: 'running',
  };
  const bad = capture();
  assert.equal(await runMigrate(flags({ quiet: true }), bad.io, fakeLib(items, failed).load), 1);
  assert.deepEqual(bad.out, []);
  assert.deepEqual(bad.err, [
    'migration failed: Connection reset by peer',
    "  the source's guest is still running",
  ]);
});

test('exit codes of the report: 1 failed, 1 cancelled by a peer, 4 timeout cancel, 0 timeout pause that completed', async () => {
  const base = { type: 'report', sourceRunState: 'running' } as const;
  for (const [report, code] of [
    [{ ...base, status: 'failed', reason: 'x' }, 1],
    [{ ...base, status: 'cancelled' }, 1],
    [{ ...base, status: 'cancelled', endedBy: 'timeout-cancel' }, 4],
    [{ ...base, status: 'failed', endedBy: 'timeout-pause', reason: 'x' }, 4],
    [{ ...completed, endedBy: 'timeout-pause' }, 0],
  ] as [MigrationReport, number][]) {
    const c = capture();
    assert.equal(await runMigrate(flags(), c.io, fakeLib([], report).load), code, JSON.stringify(report));
  }
});

test('a preflight failure: exit 3, one line per mismatch on stderr, and an error line with --json', async () => {
  const e = new PreflightError([
    "destination RAM block 'pc.ram' is 512 MiB, source's is 1024 MiB",
    "the destination is not waiting for a migration: its run state is 'running'",
  ]);
  const c = capture();
  assert.equal(await runMigrate(flags(), c.io, fakeLib([], e).load), 3);
  assert.deepEqual(c.err, [
    "qmigrate: destination RAM block 'pc.ram' is 512 MiB, source's is 1024 MiB",
    "qmigrate: the destination is not waiting for a migration: its run state is 'running'",
  ]);
  assert.equal(c.stdout(), '');
  const j = capture();
  assert.equal(await runMigrate(flags({ json: true }), j.io, fakeLib([], e).load), 3);
  assert.deepEqual(JSON.parse(j.stdout()), {
    type: 'error',
    code: 'MIGRATE_PREFLIGHT',
    message: e.message,
    exitCode: 3,
  });
});

test('an unreachable monitor: exit 3 (also for --dry-run)', async () => {
  const e = new ConnectError("cannot connect to the source's monitor at /run/src.qmp: ENOENT");
  const c = capture();
  assert.equal(await runMigrate(flags(), c.io, fakeLib([], e).load), 3);
  assert.deepEqual(c.err, [`qmigrate: ${e.message}`]);
  const { load } = fakeLib([], e);
  const lib = await load();
  lib.planFor = async () => {
    throw e;
  };
  const d = capture();
  assert.equal(await runMigrate(flags({ dryRun: true }), d.io, async () => lib), 3);
});

test('--dry-run prints the commands for each side and starts nothing', async () => {
  const { load, seen } = fakeLib(items, completed);
  const c = capture();
  assert.equal(await runMigrate(flags({ dryRun: true }), c.io, load), 0);
  assert.equal(seen.plan, undefined, 'runMigration not called');
  const ch = '[{"channel-type":"main","addr":{"transport":"socket","type":"unix","path":"/run/mig.sock"}}]';
  assert.equal(
    c.stdout(),
    `destination migrate-incoming {"channels":${ch}}\nsource      migrate {"channels":${ch}}\n`,
  );
});

test('the plan: the flags as QMP values, multifd as capability and parameter', async () => {
  const { load, seen } = fakeLib([], completed);
  const c = capture();
  await runMigrate(
    flags({
      unix: undefined,
      tcp: '10.0.0.2:0',
      multifd: 4,
      downtimeLimit: 500,
      maxBandwidth: 100 * MiB,
      capability: ['zero-copy-send=off', 'return-path'],
      parameter: ['zero-page-detection=legacy', 'announce-step=1K'],
      timeout: 30,
      onTimeout: 'pause',
    }),
    c.io,
    load,
  );
  assert.deepEqual(seen.plan, {
    from: { kind: 'unix', path: '/run/src.qmp' },
    to: { kind: 'unix', path: '/run/dst.qmp' },
    channels: [
      { 'channel-type': 'main', addr: { transport: 'socket', type: 'inet', host: '10.0.0.2', port: '0' } },
    ],
    capabilities: { multifd: true, 'zero-copy-send': false, 'return-path': true },
    parameters: {
      'announce-step': 1024,
      'max-bandwidth': 100 * MiB,
      'downtime-limit': 500,
      'multifd-channels': 4,
      'zero-page-detection': 'legacy',
    },
    timeoutS: 30,
    onTimeout: 'pause',
  });
});

test('flags QEMU would refuse fail before the orchestrator is loaded', async () => {
  for (const [extra, message] of [
    [{ unix: undefined }, /say where the stream goes/],
    [{ uri: 'tcp:h:1' }, /--uri and --unix both say where the stream goes/],
    [
      { capability: ['nosuch'] },
      /--capability: 'nosuch' is not a migration capability; QEMU 10.0 has: xbzrle, /,
    ],
    [{ capability: ['events=off'] }, /needs MIGRATION events/],
    [{ capability: ['postcopy-preempt'] }, /^--capability: Postcopy preempt requires postcopy-ram$/],
    [
      { parameter: ['multifd-channels=0'] },
      /^--parameter: Parameter 'multifd_channels' expects a value between 1 and 255$/,
    ],
    [{ parameter: ['downtime-limit=soon'] }, /^--parameter: Parameter 'downtime-limit' expects uint64$/],
    [{ parameter: ['max-bandwidth'] }, /^--parameter max-bandwidth: expected max-bandwidth=VALUE$/],
    [{ channel: ['{"channel-type": "main"}'], unix: undefined }, /^--channel: Parameter 'addr' is missing$/],
    [{ channel: ['{'], unix: undefined }, /^--channel: not JSON/],
    // QEMU takes multifd-* parameters without the capability and then sends one stream.
    [
      { parameter: ['multifd-channels=4'] },
      /^--parameter multifd-channels applies only to multifd: add --capability multifd/,
    ],
    [
      { parameter: ['multifd-compression=zlib'], capability: ['multifd=off'] },
      /^--parameter multifd-compression applies only to multifd/,
    ],
  ] as [Partial<MigrateFlags>, RegExp][]) {
    const { load, seen } = fakeLib([], completed);
    await assert.rejects(runMigrate(flags(extra), capture().io, load), (e: unknown) => {
      assert.ok(e instanceof CliUsageError, String(e));
      assert.match(e.message, message);
      return true;
    });
    assert.equal(seen.loaded, false, JSON.stringify(extra));
  }
});

test('an abort reaches the orchestrator, and its report is still printed', async () => {
  const stop = new AbortController();
  const lib: MigrateLibrary = {
    parseQmpEndpoint: (text) => ({ kind: 'unix', path: text }),
    planFor: async () => [],
    runMigration(_plan, { signal }): MigrationJob {
      const result = new Promise<MigrationReport>((resolve) =>
        signal?.addEventListener('abort', () =>
          resolve({ type: 'report', status: 'cancelled', endedBy: 'interrupt', sourceRunState: 'running' }),
        ),
      );
      return {
        result,
        async *[Symbol.asyncIterator]() {
          yield sample(0, 5);
          stop.abort();
          await result;
        },
      };
    },
  };
  const c = capture();
  assert.equal(await runMigrate(flags(), c.io, async () => lib, stop.signal), 1);
  assert.match(
    c.stdout(),
    /migration cancelled: interrupted: the migration was cancelled\n {2}the source's guest is still running\n$/,
  );
});

test('the percent shown never goes back at a new pass, and reads 100 only once completed', async () => {
  const at = (
    elapsedMs: number,
    percent: number,
    pass: number,
    status: ProgressSample['status'] = 'active',
  ) => ({
    ...sample(elapsedMs, percent),
    pass,
    status,
  });
  const script = [at(1000, 60, 1), at(2000, 100, 1), at(3000, 61, 2), at(4000, 100, 3, 'completed')];
  const c = capture(false);
  assert.equal(await runMigrate(flags(), c.io, fakeLib(script, completed).load), 0);
  const shown = c
    .stdout()
    .split('\n')
    .map((l) => /^\[[\d.]+ s\] (\w+ \d+%), .*pass (\d)/.exec(l)?.slice(1).join(' pass '))
    .filter((l) => l !== undefined);
  assert.deepEqual(shown, [
    'active 60% pass 1',
    'active 99% pass 1',
    'active 99% pass 2',
    'completed 100% pass 3',
  ]);
  const j = capture(false);
  await runMigrate(flags({ json: true }), j.io, fakeLib(script, completed).load);
  assert.equal(JSON.parse(j.stdout().split('\n')[2]!).percent, 61, 'JSON keeps the sample as it was');
});

test('a monitor lost during the migration: exit 1 (not a preflight 3), saying the end is unknown', async () => {
  const e = new ConnectError('the connection to the source monitor closed');
  const lib = await fakeLib([], completed).load();
  lib.runMigration = () => ({
    result: Promise.reject(e),
    async *[Symbol.asyncIterator]() {
      yield sample(0, 5);
      throw e;
    },
  });
  const c = capture();
  assert.equal(await runMigrate(flags(), c.io, async () => lib), 1);
  assert.deepEqual(c.err, [
    'qmigrate: the connection to the source monitor closed',
    'qmigrate: how the migration ended is unknown: check both sides (query-migrate, query-status)',
  ]);
});

test('Ctrl-C while connecting: exit 130 and "interrupted", not an unreachable monitor with exit 3', async () => {
  for (const json of [false, true]) {
    const stop = new AbortController();
    const lib: MigrateLibrary = {
      parseQmpEndpoint: (text) => ({ kind: 'unix', path: text }),
      planFor: async () => [],
      runMigration(_plan, { signal }): MigrationJob {
        // As connectQmpEndpoint fails when its signal aborts a connection in progress.
        const result = new Promise<MigrationReport>((_resolve, reject) =>
          signal?.addEventListener('abort', () =>
            reject(
              new PreflightError([
                "cannot reach the source's monitor at unix:/run/src.qmp: This operation was aborted",
              ]),
            ),
          ),
        );
        return {
          result,
          async *[Symbol.asyncIterator]() {
            stop.abort(new Interrupted('SIGINT', 130));
            yield* await result.then(() => []); // rejects: the connection was aborted
          },
        };
      },
    };
    const c = capture();
    assert.equal(await runMigrate(flags({ json }), c.io, async () => lib, stop.signal), 130);
    assert.deepEqual(c.err, [
      "qmigrate: interrupted (SIGINT) before the migration started: nothing was migrated, the source's guest runs on",
    ]);
    if (json) assert.equal(JSON.parse(c.stdout()).exitCode, 130);
  }
});

test('Ctrl-C while connecting for --resume: the guest is on the destination, the paused migration stays as it was', async () => {
  const stop = new AbortController();
  const lib: MigrateLibrary = {
    parseQmpEndpoint: (text) => ({ kind: 'unix', path: text }),
    planFor: async () => [],
    runMigration(): MigrationJob {
      const result = Promise.reject(new PreflightError(['cancelled before the migration started']));
      result.catch(() => {});
      return {
        result,
        async *[Symbol.asyncIterator]() {
          stop.abort(new Interrupted('SIGINT', 130));
          yield* await result.then(() => []);
        },
      };
    },
  };
  const c = capture();
  assert.equal(await runMigrate(flags({ resume: true }), c.io, async () => lib, stop.signal), 130);
  assert.deepEqual(c.err, [
    'qmigrate: interrupted (SIGINT) before the resume started: nothing was sent, the postcopy migration stays paused (the guest on the destination)',
  ]);
});

test('--from and --to naming the same monitor: a usage error at once, not a 10 s wait for a second session', async () => {
  for (const [from, to] of [
    ['/run/vm.qmp', '/run/vm.qmp'],
    ['/run/vm.qmp', '/run/../run/vm.qmp'],
    ['127.0.0.1:4444', 'tcp:127.0.0.1:4444'],
  ]) {
    const { load } = fakeLib([], completed);
    const lib = await load();
    lib.parseQmpEndpoint = parseQmpEndpoint;
    await assert.rejects(
      runMigrate(flags({ from, to }), capture().io, async () => lib),
      (e: unknown) => e instanceof CliUsageError && /^--from and --to are the same monitor/.test(e.message),
      `${from} ${to}`,
    );
  }
  const { load } = fakeLib([], completed);
  const lib = await load();
  lib.parseQmpEndpoint = parseQmpEndpoint;
  assert.equal(
    await runMigrate(flags({ from: '127.0.0.1:4444', to: '127.0.0.1:4445' }), capture().io, async () => lib),
    0,
  );
});

test('--json and a usage error: an error object on stdout (exit 2), as for a preflight failure', async () => {
  for (const extra of [
    { capability: ['nosuch'] },
    { from: '/run/x.qmp', to: '/run/x.qmp' },
  ] as Partial<MigrateFlags>[]) {
    const { load } = fakeLib([], completed);
    const lib = await load();
    lib.parseQmpEndpoint = parseQmpEndpoint;
    const c = capture();
    await assert.rejects(
      runMigrate(flags({ json: true, ...extra }), c.io, async () => lib),
      CliUsageError,
    );
    const lines = c.stdout().split('\n').filter(Boolean);
    assert.equal(lines.length, 1, c.stdout());
    const o = JSON.parse(lines[0] ?? '');
    assert.deepEqual([o.type, o.code, o.exitCode], ['error', 'CLI_USAGE', 2]);
  }
});
