/**
 * `qmigrate demo`: a live migration on the embedded engine, end to end. Two `qmigrate vm`
 * processes, a guest whose workload keeps writing memory, a migration over the channels API,
 * then proof: the destination's RAM equals the source's at switchover, passes QEMU's
 * consistency check, and the guest runs on. Prints a summary; exits 0 only on success.
 * Whatever way it ends, its VMs and its temp directory go with it.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { QmigrateError } from '../../errors.js';
import { WORKLOAD_START } from '../../machine/workload.js';
import { runMigration } from '../../orchestrator/migrate.js';
import { formatReport } from '../../orchestrator/progress.js';
import type { MigratePlan, MigrationReport } from '../../orchestrator/types.js';
import type { MigrationAddress, MigrationInfo } from '../../qapi/types.js';
import { QmpClient } from '../../qmp/client.js';
import { QmpError } from '../../qmp/errors.js';
import { CliFailure, CliUsageError, PeerUnreachableError } from '../errors.js';
import { ProgressView } from '../progress-view.js';
import { checkReportPath, commandLine, REPORT_POLL_MS, ReportRecorder } from '../report-file.js';

export interface DemoOptions {
  sizeMiB: number;
  transport: 'unix' | 'tcp' | 'exec' | 'file';
  /** Pages the guest writes per second; 0: as fast as it can. */
  rate: number;
  downtimeLimit: number;
  maxBandwidth: number;
  json: boolean;
  /** Write the migration's page to this HTML file (unix and tcp only). */
  report?: string;
}

/** Where the demo writes: the report on stdout, progress (in JSON mode) on stderr. */
export interface DemoIo {
  out(line: string): void;
  err(line: string): void;
  /** The terminal for the live progress line, when stdout is one (and not a CI log). */
  tty?: { write(text: string): void; columns(): number | undefined };
  /** A line on stderr even after an interrupt silenced `err`: where the report went. */
  notice?(line: string): void;
}

const PAGE = 4096;
const MiB = 1 << 20;
/** How long a VM may take to answer on QMP after it was started (ms). */
const CONNECT_MS = 20_000;
/** Temp directories are named after the demo's pid, so a later run can tell stale ones. */
const DIR_PREFIX = 'qmigrate-demo-';

function vmCommand(): string[] {
  // Re-run this very CLI (compiled, or from source under tsx) as `qmigrate vm`.
  return [...process.execArgv, process.argv[1]!, 'vm'];
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes the directories of demos that were killed outright (SIGKILL leaves no chance to
 * clean up): `qmigrate-demo-PID-XXXXXX` whose PID is gone. Their VMs follow their parent
 * on their own (`-run-with exit-with-parent=on`).
 */
function sweepStale(base: string): void {
  let names: string[];
  try {
    names = readdirSync(base);
  } catch {
    return;
  }
  for (const name of names) {
    const m = /^qmigrate-demo-(\d+)-[A-Za-z0-9]{6}$/.exec(name);
    if (!m || alive(Number(m[1]))) continue;
    try {
      rmSync(join(base, name), { recursive: true, force: true });
    } catch {
      // Someone else's: not ours to remove.
    }
  }
}

function how(c: ChildProcess): string {
  return c.signalCode ? `killed by ${c.signalCode}` : `status ${c.exitCode}`;
}

async function connect(path: string, name: string, child: ChildProcess, signal?: AbortSignal) {
  const deadline = Date.now() + CONNECT_MS;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new PeerUnreachableError(`the ${name} VM exited (${how(child)}) before its QMP monitor answered`);
    }
    try {
      return await QmpClient.connect(path, { timeout: 1000, signal });
    } catch (e) {
      if (signal?.aborted) throw e;
      if (Date.now() > deadline) {
        throw new PeerUnreachableError(
          `the ${name} VM's QMP monitor at ${path} did not answer within ${CONNECT_MS / 1000} s`,
          { cause: e },
        );
      }
      await sleep(25, undefined, { signal });
    }
  }
}

/** Compares two RAM dumps chunk by chunk, checks the workload's rule on the second. */
async function verify(a: string, b: string, size: number, signal?: AbortSignal) {
  const fa = await open(a, 'r');
  const fb = await open(b, 'r');
  const chunk = 32 * MiB;
  const ba = Buffer.allocUnsafe(chunk);
  const bb = Buffer.allocUnsafe(chunk);
  const hash = createHash('sha1');
  let equal = true;
  let bad = 0;
  let last = -1;
  let edge = false;
  try {
    for (let at = 0; at < size; at += chunk) {
      signal?.throwIfAborted();
      const n = Math.min(chunk, size - at);
      await fa.read(ba, 0, n, at);
      await fb.read(bb, 0, n, at);
      hash.update(ba.subarray(0, n));
      if (equal && ba.compare(bb, 0, n, 0, n) !== 0) equal = false;
      for (let p = Math.max(at, WORKLOAD_START); p < at + n; p += PAGE) {
        const v = bb[p - at]!;
        if (last < 0) last = v;
        else if (v !== last) {
          if (((v + 1) & 0xff) === last && !edge) {
            edge = true;
            last = v;
          } else bad++;
        }
      }
    }
  } finally {
    await fa.close();
    await fb.close();
  }
  return { equal, bad, sha1: hash.digest('hex').slice(0, 16) };
}

const mib = (b: number) => `${(b / 1048576).toFixed(1)} MiB`;

/**
 * The demo's temp directory, its VMs and their QMP clients, and the one way to end them all.
 * `teardown` is synchronous, so that it also runs from an 'exit' handler and as a signal
 * arrives.
 */
class DemoLab {
  readonly dir: string;
  readonly vms: { name: string; child: ChildProcess }[] = [];
  readonly clients: QmpClient[] = [];
  #tornDown = false;

  /** @throws {CliFailure} when the directory cannot be made. */
  constructor(base: string) {
    try {
      this.dir = mkdtempSync(join(base, `${DIR_PREFIX}${process.pid}-`));
    } catch (e) {
      throw new CliFailure(`cannot create the demo's directory in ${base}: ${(e as Error).message}`, {
        cause: e,
      });
    }
  }

  /** Starts `qmigrate vm` with the demo's guest and a QMP socket named after the VM. */
  startVm(name: string, o: DemoOptions, extra: string[]): ChildProcess {
    const args = [
      ...vmCommand(),
      '-machine',
      'none',
      '-m',
      `${o.sizeMiB}M`,
      '-object',
      `qmigrate-workload,id=w0,rate=${o.rate}`,
      '-qmp',
      `unix:${this.qmpPath(name)},server=on,wait=off`,
      // A second monitor for the orchestrator: a QMP socket serves one client at a time.
      '-qmp',
      `unix:${this.qmpPath(`${name}-orch`)},server=on,wait=off`,
      // Should this process be killed outright, the VM still ends with it.
      '-run-with',
      'exit-with-parent=on',
      ...extra,
    ];
    // detached: a VM leads its own process group, so Ctrl-C in a terminal reaches only
    // this process, which then ends the VMs itself; the parent's pid closes the race of a
    // parent killed before the VM looks at it.
    const child = spawn(process.execPath, args, {
      stdio: ['ignore', 'ignore', 'inherit'],
      detached: true,
      env: { ...process.env, QMIGRATE_PARENT_PID: String(process.pid) },
    });
    child.on('error', () => {}); // a failed spawn shows up as an exit, reported by connect()
    this.vms.push({ name, child });
    return child;
  }

  qmpPath(name: string): string {
    return join(this.dir, `${name}.qmp`);
  }

  /** Connects to a started VM's QMP monitor; the client is closed with the lab. */
  async connect(name: string, child: ChildProcess, signal?: AbortSignal): Promise<QmpClient> {
    const c = await connect(this.qmpPath(name), name, child, signal);
    this.clients.push(c);
    return c;
  }

  /** Kills the VMs (with their process groups) and removes the directory; runs once. */
  readonly teardown = (): void => {
    if (this.#tornDown) return;
    this.#tornDown = true;
    for (const { child } of this.vms) {
      if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) continue;
      try {
        // Each VM leads its own process group: this also ends an exec transport's child.
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
    }
    try {
      rmSync(this.dir, { recursive: true, force: true });
    } catch {
      // Left for the next demo's sweep.
    }
  };

  /** The VM that ended, if one did (its exit event may trail the broken connection a little). */
  async deadVm(): Promise<{ name: string; child: ChildProcess } | undefined> {
    const ended = ({ child }: { child: ChildProcess }) =>
      child.exitCode !== null || child.signalCode !== null;
    for (let i = 0; i < 20 && !this.vms.some(ended); i++) await sleep(50);
    return this.vms.find(ended);
  }
}

/** Where each transport sends the stream and where the destination takes it from. */
function addresses(
  dir: string,
): Record<DemoOptions['transport'], { out: MigrationAddress; in: MigrationAddress }> {
  return {
    unix: {
      out: { transport: 'socket', type: 'unix', path: join(dir, 'mig.sock') },
      in: { transport: 'socket', type: 'unix', path: join(dir, 'mig.sock') },
    },
    tcp: {
      out: { transport: 'socket', type: 'inet', host: '127.0.0.1', port: '0' },
      in: { transport: 'socket', type: 'inet', host: '127.0.0.1', port: '0' },
    },
    exec: {
      out: { transport: 'exec', args: ['/bin/dd', `of=${join(dir, 'mig.exec')}`, 'bs=1M', 'status=none'] },
      in: { transport: 'exec', args: ['/bin/cat', join(dir, 'mig.exec')] },
    },
    file: {
      out: { transport: 'file', filename: join(dir, 'mig.file'), offset: 0 },
      in: { transport: 'file', filename: join(dir, 'mig.file'), offset: 0 },
    },
  };
}

/** Starts the source and the destination (paused after switchover: -S) and connects to both. */
async function startVms(
  lab: DemoLab,
  o: DemoOptions,
  progress: (line: string) => void,
  signal?: AbortSignal,
) {
  const rate = o.rate === 0 ? 'as fast as it can' : `${o.rate} pages/s`;
  progress(`starting two qmigrate VMs with ${o.sizeMiB} MiB of RAM; the guest writes ${rate}`);
  const srcChild = lab.startVm('source', o, []);
  // -S: the destination stays paused after switchover until its RAM has been checked.
  const dstChild = lab.startVm('destination', o, ['-incoming', 'defer', '-S']);
  const src = await lab.connect('source', srcChild, signal);
  const dst = await lab.connect('destination', dstChild, signal);
  await sleep(300, undefined, { signal });
  return { src, dst };
}

/**
 * Migrates over a socket as `qmigrate migrate` does: the orchestrator on the VMs' second
 * monitors (preflight, set-up, `migrate`, its samples), shown by the same ProgressView.
 * @returns the report and the wall time from the start to the end.
 * @throws {CliFailure} when the migration does not complete.
 */
async function migrateStreamed(
  lab: DemoLab,
  o: DemoOptions,
  view: ProgressView,
  progress: (line: string) => void,
  signal?: AbortSignal,
  recorder?: DemoRecorder,
): Promise<{ report: MigrationReport; elapsed: number }> {
  const addr = addresses(lab.dir)[o.transport].in;
  const plan: MigratePlan = {
    from: { kind: 'unix', path: lab.qmpPath('source-orch') },
    to: { kind: 'unix', path: lab.qmpPath('destination-orch') },
    channels: [{ 'channel-type': 'main', addr }],
    capabilities: {},
    parameters: { 'max-bandwidth': o.maxBandwidth, 'downtime-limit': o.downtimeLimit },
    onTimeout: 'cancel',
  };
  progress(`migrating live over ${o.transport} with migrate {channels: [...]}`);
  const started = Date.now();
  const job = runMigration(plan, { signal, ...(recorder ? { pollMs: REPORT_POLL_MS } : {}) });
  if (recorder) recorder.started = true;
  for await (const item of job) {
    recorder?.page.add(item);
    if (item.type === 'progress') view.sample(item);
    else view.event(item);
  }
  const report = await job.result;
  if (recorder) recorder.report = report;
  view.end();
  if (report.status !== 'completed') {
    throw new CliFailure(`migration ${report.status}${report.reason ? `: ${report.reason}` : ''}`);
  }
  return { report, elapsed: Date.now() - started };
}

/**
 * Migrates from `src` to `dst` through a file or an exec child and waits until both sides
 * are done: the destination reads once the source is done writing, which the orchestrator
 * (destination first) does not do.
 * @returns the source's final query-migrate and the wall time from migrate to the end.
 * @throws {CliFailure} when the migration fails on either side.
 */
async function migrate(
  lab: DemoLab,
  src: QmpClient,
  dst: QmpClient,
  o: DemoOptions,
  progress: (line: string) => void,
  signal?: AbortSignal,
): Promise<{ info: MigrationInfo; elapsed: number }> {
  const plan = addresses(lab.dir)[o.transport];
  await src.migrateSetCapabilities({ capabilities: [{ capability: 'events', state: true }] });
  await src.migrateSetParameters({ 'max-bandwidth': o.maxBandwidth, 'downtime-limit': o.downtimeLimit });
  progress(`migrating live over ${o.transport} with migrate {channels: [...]}`);
  const started = Date.now();
  await src.migrate({ channels: [{ 'channel-type': 'main', addr: plan.out }] });
  const info = await watchSource(src, progress, signal);
  if (info.status !== 'completed') {
    throw new CliFailure(`migration ${info.status}${info['error-desc'] ? `: ${info['error-desc']}` : ''}`);
  }
  await dst.migrateIncoming({ channels: [{ 'channel-type': 'main', addr: plan.in }] });
  for (;;) {
    const d = await dst.queryMigrate();
    if (d.status === 'completed') break;
    if (d.status === 'failed') throw new CliFailure(`the destination failed: ${d['error-desc']}`);
    await sleep(20, undefined, { signal });
  }
  return { info, elapsed: Date.now() - started };
}

/** Polls the source until its migration ends, with a progress line every 500 ms. */
async function watchSource(
  src: QmpClient,
  progress: (line: string) => void,
  signal?: AbortSignal,
): Promise<MigrationInfo> {
  let lastLog = 0;
  for (;;) {
    const info = await src.queryMigrate();
    if (info.status === 'completed' || info.status === 'failed' || info.status === 'cancelled') return info;
    if (Date.now() - lastLog > 500 && info.ram) {
      lastLog = Date.now();
      progress(
        `  ${info.status}: ${mib(Number(info.ram.transferred))} sent, ${mib(Number(info.ram.remaining))} dirty, pass ${info.ram['dirty-sync-count']}`,
      );
    }
    await sleep(50, undefined, { signal });
  }
}

/**
 * The proof: both RAMs as they were at switchover (the destination is still paused), compared
 * and checked against the workload's rule; then the destination's guest is started.
 */
async function checkResult(
  lab: DemoLab,
  src: QmpClient,
  dst: QmpClient,
  o: DemoOptions,
  signal?: AbortSignal,
) {
  const size = o.sizeMiB * MiB;
  await src.pmemsave({ val: 0, size, filename: join(lab.dir, 'src.ram') });
  await dst.pmemsave({ val: 0, size, filename: join(lab.dir, 'dst.ram') });
  const check = await verify(join(lab.dir, 'src.ram'), join(lab.dir, 'dst.ram'), size, signal);
  rmSync(join(lab.dir, 'src.ram'), { force: true });
  rmSync(join(lab.dir, 'dst.ram'), { force: true });
  await dst.cont();
  await sleep(200, undefined, { signal });
  const runState = (await dst.queryStatus()).status;
  return { ...check, running: runState === 'running', runState };
}

type Check = Awaited<ReturnType<typeof checkResult>>;

/** The demo's result, as `--json` prints it. */
function summarize(o: DemoOptions, info: MigrationInfo, check: Check, elapsed: number) {
  const ram = info.ram!;
  const total = Number(info['total-time']);
  return {
    ok: check.equal && check.bad === 0 && check.running,
    transport: o.transport,
    sizeMiB: o.sizeMiB,
    totalTimeMs: total,
    downtimeMs: Number(info.downtime),
    setupTimeMs: Number(info['setup-time']),
    transferredBytes: Number(ram.transferred),
    throughputMiBps: Number((Number(ram.transferred) / 1048576 / (total / 1000)).toFixed(1)),
    normalPages: Number(ram.normal),
    zeroPages: Number(ram.duplicate),
    iterations: Number(ram['dirty-sync-count']),
    ramIdentical: check.equal,
    consistencyBadPages: check.bad,
    ramSha1: check.sha1,
    destinationRunning: check.running,
    wallMs: elapsed,
  };
}

/**
 * Prints the summary: one JSON line, or lines of text: the orchestrator's report as
 * `qmigrate migrate` prints it (over a socket), or the counters (file, exec), then the check.
 */
function report(
  s: ReturnType<typeof summarize>,
  o: DemoOptions,
  io: DemoIo,
  migration: MigrationReport | undefined,
): void {
  if (o.json) {
    io.out(JSON.stringify(s));
    return;
  }
  if (migration) {
    for (const line of formatReport(migration)) io.out(line);
  } else {
    printCounters(s, io);
  }
  io.out(
    `check: destination RAM ${s.ramIdentical ? 'equals' : 'DIFFERS FROM'} the source's at switchover (sha1 ${s.ramSha1}), consistency ${s.consistencyBadPages === 0 ? 'ok' : `FAILED (${s.consistencyBadPages} bad pages)`}, guest ${s.destinationRunning ? 'running' : 'NOT running'}`,
  );
}

/** The counters of a migration through a file or an exec child. */
function printCounters(s: ReturnType<typeof summarize>, io: DemoIo): void {
  io.out(
    `done: total ${s.totalTimeMs} ms, downtime ${s.downtimeMs} ms, ${mib(s.transferredBytes)} sent at ${s.throughputMiBps} MiB/s`,
  );
  io.out(`      pages: ${s.normalPages} normal, ${s.zeroPages} zero; ${s.iterations} dirty-bitmap syncs`);
}

/**
 * The error a failed demo ends with: a broken QMP connection most likely means a VM ended, so
 * it says which and how. In JSON mode a one-line result with the error goes to stdout too.
 */
async function failure(e: unknown, lab: DemoLab, o: DemoOptions, io: DemoIo): Promise<unknown> {
  let error = e;
  if (!(e instanceof CliFailure || e instanceof PeerUnreachableError || e instanceof QmpError)) {
    const dead = await lab.deadVm();
    if (dead) {
      error = new CliFailure(`the ${dead.name} VM exited (${how(dead.child)}) during the demo`, {
        cause: e,
      });
    }
  }
  if (o.json && error instanceof QmigrateError) {
    io.out(JSON.stringify({ ok: false, transport: o.transport, sizeMiB: o.sizeMiB, error: error.message }));
  }
  return error;
}

/**
 * The progress of a migration over a socket, as `qmigrate migrate` shows it: the live line on
 * a terminal, else a plain line a second (on stderr with --json, whose stdout is the summary).
 */
function progressView(o: DemoOptions, io: DemoIo): ProgressView {
  if (io.tty && !o.json)
    return new ProgressView({ out: io.tty.write, err: io.err, columns: io.tty.columns }, 'tty');
  const lines = o.json ? io.err : io.out;
  // Plain text comes whole lines at a time; the demo's writers add the newline themselves.
  return new ProgressView({ out: (text) => lines(text.replace(/\n$/, '')), err: io.err }, 'plain');
}

/** The demo's report page in the making, and what it learned of the migration. */
interface DemoRecorder {
  page: ReportRecorder;
  /** runMigration was called: there is something to show. */
  started: boolean;
  report?: MigrationReport;
}

/**
 * The recorder of --report, its path checked before anything starts.
 * @throws {CliUsageError} for a path that cannot be written, or a transport the
 *   orchestrator does not follow (file, exec).
 */
function demoRecorder(o: DemoOptions): DemoRecorder | undefined {
  if (o.report === undefined) return undefined;
  const path = checkReportPath(o.report);
  if (o.transport !== 'unix' && o.transport !== 'tcp')
    throw new CliUsageError(
      `--report draws what the orchestrator samples, which follows socket migrations: use --transport unix or tcp, not ${o.transport}`,
    );
  const facts = [
    {
      name: 'guest',
      value: `${o.sizeMiB} MiB, writing ${o.rate === 0 ? 'as fast as it can' : `${o.rate} pages/s`}`,
    },
    { name: 'stream', value: o.transport },
    { name: 'parameters', value: `downtime-limit=${o.downtimeLimit} max-bandwidth=${o.maxBandwidth}` },
  ];
  return {
    page: new ReportRecorder(path, { command: commandLine(['qmigrate', ...process.argv.slice(2)]), facts }),
    started: false,
  };
}

/**
 * Writes the report page once the migration was started, with its report or the error that
 * ended the demo, and says where on stderr.
 * @returns false when the page could not be written (said on stderr).
 */
function saveDemoReport(recorder: DemoRecorder | undefined, io: DemoIo, error?: unknown): boolean {
  if (!recorder?.started) return true;
  const say = io.notice ?? io.err;
  const end = recorder.report
    ? { report: recorder.report }
    : { error: error instanceof Error ? error.message : 'the demo ended before the migration did' };
  try {
    const path = recorder.page.write(end);
    if (path !== undefined) say(`qmigrate: report written to ${path}`);
    return true;
  } catch (e) {
    if (!(e instanceof CliFailure)) throw e;
    say(`qmigrate: ${e.message}`);
    return false;
  }
}

/**
 * Runs the demo. Resolves with 0 (the migration completed and the result checks out) or 1
 * (it completed but did not check out; the summary says why).
 * @throws {PeerUnreachableError} when a VM does not start or its QMP monitor does not answer.
 * @throws {CliFailure} when the migration fails or a VM ends during the demo.
 * @throws the signal's reason when `signal` aborts; the VMs and the temp directory are
 *   gone by then (they are removed synchronously as the signal fires).
 */
export async function runDemo(o: DemoOptions, io: DemoIo, signal?: AbortSignal): Promise<number> {
  signal?.throwIfAborted();
  const recorder = demoRecorder(o);
  const progress = o.json ? io.err : io.out;
  const base = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
  sweepStale(base);
  const lab = new DemoLab(base);
  const onAbort = () => {
    lab.teardown();
    for (const c of lab.clients) void c.close().catch(() => {});
  };
  signal?.addEventListener('abort', onAbort, { once: true });
  process.once('exit', lab.teardown);
  try {
    const { src, dst } = await startVms(lab, o, progress, signal);
    let end: { info: MigrationInfo; elapsed: number; report?: MigrationReport };
    if (o.transport === 'unix' || o.transport === 'tcp') {
      const view = progressView(o, io);
      const { report, elapsed } = await migrateStreamed(lab, o, view, progress, signal, recorder);
      end = { info: report.source ?? (await src.queryMigrate()), elapsed, report };
    } else {
      end = await migrate(lab, src, dst, o, progress, signal);
    }
    const check = await checkResult(lab, src, dst, o, signal);
    const summary = summarize(o, end.info, check, end.elapsed);
    if (end.report) {
      // The migration's report saw the destination paused (-S, for the check); the guest was
      // started since, and the summary and the page say where it is as the demo ends.
      end.report = { ...end.report, destinationRunState: check.runState };
      if (recorder) recorder.report = end.report;
    }
    report(summary, o, io, end.report);
    const saved = saveDemoReport(recorder, io);
    return summary.ok && saved ? 0 : 1;
  } catch (e) {
    const error = signal?.aborted ? signal.reason : await failure(e, lab, o, io);
    saveDemoReport(recorder, io, error);
    throw error;
  } finally {
    signal?.removeEventListener('abort', onAbort);
    for (const c of lab.clients) await c.close().catch(() => {});
    lab.teardown();
    process.removeListener('exit', lab.teardown);
  }
}
