// `qmigrate migrate` run as a user runs it, between two `qmigrate vm` peers, once for each
// exit code: 0 completed (its --json read line by line), 1 failed (the destination killed
// mid-way), 3 preflight (a destination not waiting in -incoming defer; a monitor nobody
// listens on), 4 timeout (--on-timeout cancel), 130 for Ctrl-C and for SIGTERM (cancelled,
// reported). In every failure the source's guest is still running afterwards.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { spawnQmigrate } from '../helpers/qmigrate.js';
import { type Lab, ramEqual, startLab } from '../orchestrator/lab.js';

/** A source that dirties its 16 MiB faster than 2 MiB/s can carry: it never converges. */
const SLOW = { srcMiB: 16, workloadRate: 20_000 };

interface Run {
  /** Resolves with the exit code and everything written. */
  done: Promise<{ code: number | null; stdout: string; stderr: string }>;
  /** Resolves once stdout has a line matching `re`. */
  waitFor(re: RegExp): Promise<void>;
  kill(signal: NodeJS.Signals): void;
}

/** Runs `qmigrate migrate` from the lab's source to its destination with `args`. */
function migrate(lab: Lab, args: string[], env: NodeJS.ProcessEnv = {}): Run {
  const from = lab.plan.from.kind === 'unix' ? lab.plan.from.path : '';
  const to = lab.plan.to.kind === 'unix' ? lab.plan.to.path : '';
  const child = spawnQmigrate(['migrate', '--from', from, '--to', to, ...args], {
    env: { ...process.env, CI: '', ...env },
  });
  let stdout = '';
  let stderr = '';
  const waiters: { re: RegExp; resolve: () => void }[] = [];
  child.stdout?.on('data', (d) => {
    stdout += d;
    for (const w of waiters.filter((w) => w.re.test(stdout))) {
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve();
    }
  });
  child.stderr?.on('data', (d) => {
    stderr += d;
  });
  const done = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) =>
    child.on('close', (code) => resolve({ code, stdout, stderr })),
  );
  return {
    done,
    waitFor: (re) =>
      new Promise((resolve, reject) => {
        if (re.test(stdout)) return resolve();
        waiters.push({ re, resolve });
        void done.then(() => reject(new Error(`ended before ${re}: ${stdout}${stderr}`)));
      }),
    kill: (signal) => child.kill(signal),
  };
}

const unixStream = (lab: Lab) => ['--unix', join(lab.dir, 'mig.sock')];

/**
 * The source's guest runs and its migration is over: what every failure must leave.
 * `status` undefined: none was started (QEMU's query-migrate then has no status).
 */
async function sourceRuns(lab: Lab, status: string | undefined): Promise<void> {
  assert.equal((await lab.src.qmp.queryStatus()).status, 'running');
  assert.equal((await lab.src.qmp.queryMigrate()).status, status);
}

test('exit 0: completed; --json is one JSON object per line, samples and events, the report last', async (t) => {
  const lab = await startLab(t, 'qmigrate', 'qmigrate');
  if (!lab) return;
  const r = await migrate(lab, [...unixStream(lab), '--json']).done;
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, '');
  const lines = r.stdout.split('\n');
  assert.equal(lines.pop(), '');
  const objects: { type: string; status?: string; event?: string }[] = [];
  for (const [i, l] of lines.entries()) {
    try {
      objects.push(JSON.parse(l));
    } catch {
      assert.fail(`line ${i + 1} is not JSON: ${l}`);
    }
  }
  const report = objects.pop();
  assert.equal(report?.type, 'report');
  assert.equal(report?.status, 'completed');
  assert.ok(objects.length > 0 && objects.every((o) => o.type === 'progress' || o.type === 'event'));
  assert.ok(objects.some((o) => o.type === 'progress'));
  assert.ok(objects.some((o) => o.type === 'event' && o.event === 'MIGRATION'));
  assert.ok(await ramEqual(lab), "the destination's RAM is the source's");
  assert.equal((await lab.dst.qmp.queryStatus()).status, 'running');
});

test('exit 1: the destination dies mid-way; the report says so and the source runs on', async (t) => {
  const lab = await startLab(t, 'qmigrate', 'qmigrate', SLOW);
  if (!lab) return;
  const run = migrate(lab, [...unixStream(lab), '--max-bandwidth', '2M']);
  await run.waitFor(/active [1-9]\d*%/);
  lab.dst.child.kill('SIGKILL');
  const r = await run.done;
  assert.equal(r.code, 1, r.stdout + r.stderr);
  assert.match(r.stdout, /^migration failed/m);
  assert.match(r.stdout, /^ {2}the source's guest is still running$/m);
  await sourceRuns(lab, 'failed');
});

test('exit 3: a destination that does not wait in -incoming defer, before any byte moves', async (t) => {
  const lab = await startLab(t, 'qmigrate', 'qmigrate', { defer: false });
  if (!lab) return;
  const r = await migrate(lab, unixStream(lab)).done;
  assert.equal(r.code, 3, r.stdout + r.stderr);
  assert.equal(r.stdout, '');
  assert.match(r.stderr, /^qmigrate: .*destination.*/);
  assert.doesNotMatch(r.stderr, /^\s+at /m, 'no stack trace');
  await sourceRuns(lab, undefined);
});

test('exit 3: a monitor nobody listens on, also for --dry-run', async (t) => {
  const lab = await startLab(t, 'qmigrate', 'qmigrate');
  if (!lab) return;
  const nowhere = join(lab.dir, 'nobody.qmp');
  for (const extra of [[], ['--dry-run']]) {
    const child = migrate({ ...lab, plan: { ...lab.plan, to: { kind: 'unix', path: nowhere } } }, [
      ...unixStream(lab),
      ...extra,
    ]);
    const r = await child.done;
    assert.equal(r.code, 3, r.stdout + r.stderr);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(
      r.stderr,
      new RegExp(`^qmigrate: cannot reach the destination's monitor at unix:${nowhere}: `),
    );
  }
  await sourceRuns(lab, undefined);
});

test('exit 4: --timeout 2 --on-timeout cancel on a migration that does not converge', async (t) => {
  const lab = await startLab(t, 'qmigrate', 'qmigrate', SLOW);
  if (!lab) return;
  const started = Date.now();
  const r = await migrate(lab, [...unixStream(lab), '--max-bandwidth', '2M', '--timeout', '2']).done;
  assert.equal(r.code, 4, r.stdout + r.stderr);
  assert.ok(Date.now() - started >= 2000);
  assert.match(
    r.stdout,
    /^migration cancelled(?: after [^:]*)?: the timeout passed and the migration was cancelled/m,
  );
  assert.match(r.stdout, /^ {2}the source's guest is still running$/m);
  await sourceRuns(lab, 'cancelled');
});

for (const [signal, code] of [
  ['SIGINT', 130],
  ['SIGTERM', 130],
] as const) {
  test(`exit ${code}: ${signal} cancels the migration, reports, and the source runs on`, async (t) => {
    const lab = await startLab(t, 'qmigrate', 'qmigrate', SLOW);
    if (!lab) return;
    const run = migrate(lab, [...unixStream(lab), '--max-bandwidth', '2M']);
    await run.waitFor(/active [1-9]\d*%/);
    run.kill(signal);
    const r = await run.done;
    assert.equal(r.code, code, r.stdout + r.stderr);
    assert.match(r.stdout, /^migration cancelled.*: interrupted: the migration was cancelled$/m);
    assert.match(r.stdout, /^ {2}the source's guest is still running$/m);
    await sourceRuns(lab, 'cancelled');
  });
}
