// `qmigrate demo` leaves nothing behind, however it ends: Ctrl-C (130), SIGTERM (143), its
// output closed under it (`| head -1`, 141), a VM that dies at start (3, "cannot be
// reached"), and even SIGKILL (its VMs follow their parent; the next demo removes the
// directory). Each test finds the demo's VMs as its child processes and its temp directory
// from their command lines.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { runQmigrate, spawnQmigrate } from '../helpers/qmigrate.js';

/** A demo that cannot converge (the guest dirties far more than the bandwidth carries). */
const SLOW = ['demo', '--size', '16', '--rate', '50000', '--max-bandwidth', '200000'];

function statOf(pid: number): { ppid: number; state: string } | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return { state: f[0]!, ppid: Number(f[1]) };
  } catch {
    return undefined;
  }
}

/** Gone, or a zombie nobody has reaped yet. */
function gone(pid: number): boolean {
  const s = statOf(pid);
  return s === undefined || s.state === 'Z';
}

/** The `qmigrate vm` processes `pid` started. */
function vmsOf(pid: number): number[] {
  return readdirSync('/proc')
    .filter((n) => /^\d+$/.test(n))
    .map(Number)
    .filter((p) => statOf(p)?.ppid === pid && !gone(p) && isVm(p));
}

/**
 * Whether `pid` runs `qmigrate vm`. The demo has other children at times: run from source
 * with a cold tsx cache (as in CI after any change), tsx's esbuild service is one.
 */
function isVm(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes('vm');
  } catch {
    return false;
  }
}

/** The demo's temp directory, read from a VM's -qmp argument. */
function dirOf(vm: number): string | undefined {
  try {
    const args = readFileSync(`/proc/${vm}/cmdline`, 'utf8').split('\0');
    return args.map((a) => /^unix:(.*qmigrate-demo-[^/]+)\//.exec(a)?.[1]).find((d) => d);
  } catch {
    return undefined;
  }
}

interface Demo {
  child: ChildProcess;
  exited: Promise<number | null>;
  stdout: () => string;
  stderr: () => string;
  vms: number[];
  dir?: string;
}

function startDemo(t: TestContext, args: string[]): Demo {
  const child = spawnQmigrate(args);
  let out = '';
  let err = '';
  child.stdout?.on('data', (d) => {
    out += d;
  });
  child.stderr?.on('data', (d) => {
    err += d;
  });
  const demo: Demo = {
    child,
    exited: new Promise((r) => child.once('exit', (code, sig) => r(code ?? (sig ? -1 : null)))),
    stdout: () => out,
    stderr: () => err,
    vms: [],
  };
  t.after(() => {
    child.kill('SIGKILL');
    for (const p of demo.vms) if (!gone(p)) process.kill(p, 'SIGKILL');
  });
  return demo;
}

/** Waits until the demo has both VMs running (and records them and the directory). */
async function vmsUp(demo: Demo, sockets = true): Promise<void> {
  await until(
    () => {
      const vms = vmsOf(demo.child.pid!);
      for (const v of vms) if (!demo.vms.includes(v)) demo.vms.push(v);
      demo.dir ??= vms.map(dirOf).find((d) => d);
      if (demo.vms.length !== 2 || !demo.dir) return false;
      // Each VM's own monitor (the demo's orchestrator has a second one, NAME-orch.qmp).
      const monitors = readdirSync(demo.dir).filter((f) => f === 'source.qmp' || f === 'destination.qmp');
      return !sockets || monitors.length === 2;
    },
    60_000,
    () => `the demo did not start its VMs: ${demo.stderr()}`,
  );
}

async function assertNothingLeft(demo: Demo): Promise<void> {
  await until(
    () => demo.vms.every(gone),
    20_000,
    () => `VM processes ${demo.vms.filter((p) => !gone(p))} outlived the demo`,
  );
  assert.ok(demo.dir, 'the demo directory was found');
  assert.ok(!existsSync(demo.dir), `${demo.dir} was left behind`);
}

/** Polls `cond` until it holds; fails with `what` after `ms` (generous: CI shares 2 cores). */
async function until(cond: () => boolean, ms: number, what: () => string): Promise<void> {
  for (const end = Date.now() + ms; !cond(); await sleep(20)) assert.ok(Date.now() < end, what());
}

const noStack = (s: string) => assert.doesNotMatch(s, /^\s+at /m, `a stack trace: ${s}`);

for (const [sig, code] of [
  ['SIGINT', 130],
  ['SIGTERM', 143],
  ['SIGHUP', 129],
] as const) {
  test(`${sig} during the migration: exit ${code}, VMs and temp directory gone`, async (t) => {
    const demo = startDemo(t, SLOW);
    await vmsUp(demo);
    await until(
      () => demo.stdout().includes('migrating live'),
      60_000,
      () => 'the migration did not start',
    );
    demo.child.kill(sig);
    assert.equal(await demo.exited, code, demo.stderr());
    noStack(demo.stderr());
    await assertNothingLeft(demo);
  });
}

test('SIGINT while the VMs are still starting: exit 130, nothing left', async (t) => {
  const demo = startDemo(t, SLOW);
  await vmsUp(demo, false);
  demo.child.kill('SIGINT');
  assert.equal(await demo.exited, 130, demo.stderr());
  noStack(demo.stderr());
  await assertNothingLeft(demo);
});

test('stdout closed after the first line (`| head -1`): exit 141, nothing left', async (t) => {
  const demo = startDemo(t, SLOW);
  await until(
    () => demo.stdout().includes('\n'),
    60_000,
    () => 'no first line',
  );
  await vmsUp(demo, false);
  demo.child.stdout?.destroy();
  assert.equal(await demo.exited, 141, demo.stderr());
  noStack(demo.stderr());
  await assertNothingLeft(demo);
});

test('a VM that dies before its monitor answers: exit 3 with one line, nothing left', async (t) => {
  const demo = startDemo(t, SLOW);
  let victim: number | undefined;
  // The VM's command line shows once it has exec'd, long before its monitor is up.
  for (const end = Date.now() + 60_000; victim === undefined || demo.dir === undefined; ) {
    assert.ok(Date.now() < end, 'no VM appeared');
    victim ??= vmsOf(demo.child.pid!)[0];
    if (victim !== undefined) demo.dir = dirOf(victim);
    if (demo.dir === undefined) await sleep(2);
  }
  demo.vms.push(victim);
  assert.ok(!existsSync(`${demo.dir}/source.qmp`), 'the VM was already up');
  process.kill(victim, 'SIGKILL');
  for (const v of vmsOf(demo.child.pid!)) if (!demo.vms.includes(v)) demo.vms.push(v);
  assert.equal(await demo.exited, 3, demo.stderr());
  assert.match(
    demo.stderr(),
    /^qmigrate: the (source|destination) VM exited \(killed by SIGKILL\) before its QMP monitor answered$/m,
  );
  noStack(demo.stderr());
  await assertNothingLeft(demo);
});

test('SIGKILL: the VMs end with their parent, and the next demo removes the stale directory', async (t) => {
  const demo = startDemo(t, SLOW);
  await vmsUp(demo);
  demo.child.kill('SIGKILL');
  await demo.exited;
  await until(
    () => demo.vms.every(gone),
    20_000,
    () => 'the VMs outlived their SIGKILLed parent',
  );
  assert.ok(demo.dir);
  // (Nothing could remove the directory as the demo died; a demo running meanwhile may.)
  const next = await runQmigrate(['demo', '--size', '4', '--json']);
  assert.equal(next.code, 0, next.stderr);
  assert.ok(!existsSync(demo.dir), `${demo.dir} is still there after the next demo`);
});
