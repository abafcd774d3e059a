/**
 * Drives one live migration between two QMP endpoints, as `qmigrate migrate` does and as
 * libvirt's qemuMigrationSrcRun / virsh `migrate --verbose --timeout` do for QEMU: connect,
 * preflight, set up both sides, `migrate`, then follow MIGRATION / MIGRATION_PASS events and
 * the source's query-migrate until the migration ends, with cancel, a timeout policy, the
 * switch to postcopy, and the recovery of a postcopy migration paused on a broken link.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { MigrationInfo } from '../qapi/types.js';
import type { QmpClient } from '../qmp/client.js';
import { QmpClientError, QmpError } from '../qmp/errors.js';
import { connectQmpEndpoint } from './endpoint.js';
import { MonitorLostError, PreflightError } from './errors.js';
import { cleanupCommands, planCommands, planResumeCommands } from './plan.js';
import { type PreflightFacts, preflight, preflightResume } from './preflight.js';
import type {
  MigratePlan,
  MigrationEventSample,
  MigrationReport,
  PlannedCommand,
  PostcopyReport,
  ProgressSample,
} from './types.js';

/** What a running migration yields: progress from query-migrate, and the MIGRATION events. */
export type MigrationSample = ProgressSample | MigrationEventSample;

export interface RunMigrationOptions {
  /** Aborting cancels the migration (`migrate_cancel`), as Ctrl-C does. */
  signal?: AbortSignal;
  /** Called with every sample as it is made (besides the iterator). */
  onSample?: (sample: MigrationSample) => void;
  /** ms between two query-migrate of the source (default 500). */
  pollMs?: number;
  /** ms for each monitor's connection and each query (default 10000). */
  connectTimeoutMs?: number;
  /** ms to wait for `cancelled` after `migrate_cancel` (default 10000). */
  cancelWaitMs?: number;
  /** ms to wait for the destination to finish loading once the source completed (default 60000). */
  completionWaitMs?: number;
  /** Aborting it switches to postcopy now, as MigrationJob.startPostcopy() does. */
  postcopySignal?: AbortSignal;
  /** ms a resumed migration may take to get back to postcopy-active (default 30000). */
  recoverWaitMs?: number;
}

/**
 * A migration under way: iterate it for its samples (buffered from the start, so a late
 * reader misses none; one reader), await `result` for the report.
 */
export interface MigrationJob extends AsyncIterable<MigrationSample> {
  /**
   * The final report, also when the migration failed, was cancelled or timed out.
   * @throws {PreflightError} when no byte moved: a monitor unreachable, a check failed, or a
   *   side refused a set-up command.
   * @throws {MonitorLostError} (a QmpClientError) when the source's monitor closes or stops
   *   answering during the migration.
   */
  readonly result: Promise<MigrationReport>;
  /** The commands as sent (the destination's real port in `migrate`), once both sides are set up. */
  readonly commands: Promise<PlannedCommand[]>;
  /** What the preflight learned of both sides. */
  readonly facts: Promise<PreflightFacts>;
  /**
   * Cancels the migration, as aborting `signal` does; once postcopy has begun QEMU refuses a
   * cancel (the destination runs the guest), and the run ends with status `postcopy-active`.
   */
  cancel(): void;
  /**
   * Switches to postcopy (`migrate-start-postcopy`) as soon as the migration is active; a
   * warning in the report when the plan has no `postcopy-ram` or QEMU refuses.
   */
  startPostcopy(): void;
}

/**
 * Starts a migration: connects to both monitors, runs preflight(), sends the commands of
 * planCommands() (events on at both ends; the destination's real listening address read
 * back for a tcp port 0), sends `migrate`, and follows it to its end. On abort or a timeout
 * with policy `cancel` it sends `migrate_cancel` and waits (bounded) for the source to settle;
 * with policy `pause` it stops the source's guest so the migration converges, and starts the
 * guest on the destination once it completed (as libvirt resumes it there after
 * `--timeout-suspend`); with policy `postcopy`, or once `plan.postcopy.afterPasses` passes
 * ended, it sends `migrate-start-postcopy`. If the destination fails after the source
 * completed (in precopy), the source's guest is started again. A postcopy migration whose link
 * breaks ends the run with status `postcopy-paused` (nothing is cancelled: the destination
 * runs the guest); a `resume` plan recovers it. Both monitors are closed on every path; the
 * destination's process is never told to quit.
 */
export function runMigration(plan: MigratePlan, options: RunMigrationOptions = {}): MigrationJob {
  const run = new MigrationRun(plan, options);
  const result = run.start();
  result.catch(() => {});
  run.commands.catch(() => {});
  run.facts.catch(() => {});
  return {
    result,
    commands: run.commands,
    facts: run.facts,
    cancel: () => run.cancel(),
    startPostcopy: () => run.requestPostcopy(),
    [Symbol.asyncIterator]: () => run.samples(),
  };
}

/**
 * What `--dry-run` shows: connects to both monitors, runs preflight() and returns the
 * commands runMigration() would send, in the form each side takes (channels, or uri for QEMU
 * before 8.2), without sending any of them. A tcp port 0 stays 0: the real port exists only
 * once the destination listens.
 * @throws {PreflightError} as runMigration() would, before any byte moves.
 * @throws {QmpClientError} when a monitor goes away during the queries.
 */
export async function planMigration(
  plan: MigratePlan,
  options: Pick<RunMigrationOptions, 'signal' | 'connectTimeoutMs'> = {},
): Promise<{ facts: PreflightFacts; commands: PlannedCommand[] }> {
  const o = { timeoutMs: options.connectTimeoutMs ?? 10_000, signal: options.signal };
  const [s, d] = await Promise.allSettled([
    connectQmpEndpoint(plan.from, 'source', o),
    connectQmpEndpoint(plan.to, 'destination', o),
  ]);
  try {
    if (s.status === 'rejected' || d.status === 'rejected') throw connectFailure(s, d);
    if (plan.resume) {
      const facts = await preflightResume(s.value, d.value, { timeoutMs: o.timeoutMs });
      const commands = planResumeCommands(plan, { sourceChannels: facts.source.channels });
      // The TLS set-up an earlier run left goes once the migration ends (all its parameters to '').
      const tls = resumedTlsPlan(plan, facts);
      const cleanup = tls ? cleanupCommands(tls, {}) : [];
      const keep = (c: PlannedCommand) =>
        c.side === 'source' || facts.destination.parameters['tls-creds'] === tls?.tls?.id;
      return { facts, commands: [...commands, ...cleanup.filter(keep)] };
    }
    const facts = await preflight(s.value, d.value, plan, { timeoutMs: o.timeoutMs });
    const forms = { sourceChannels: facts.source.channels, destinationChannels: facts.destination.channels };
    const before = { source: facts.source.parameters, destination: facts.destination.parameters };
    return { facts, commands: [...planCommands(plan, forms), ...cleanupCommands(plan, before)] };
  } finally {
    await Promise.all(
      [s, d].map((r) => (r.status === 'fulfilled' ? r.value.close().catch(() => {}) : undefined)),
    );
  }
}

/**
 * For a resume plan: the TLS set-up a `--tls-creds` run left for its paused migration (the
 * source's tls-creds naming a `qmigrate-tls` object), as a plan whose cleanupCommands() undo
 * it; undefined when the paused migration has none of qmigrate's.
 */
function resumedTlsPlan(plan: MigratePlan, facts: PreflightFacts): MigratePlan | undefined {
  const id = facts.source.parameters['tls-creds'];
  if (typeof id !== 'string' || !id.startsWith('qmigrate-tls')) return undefined;
  const hostname = facts.source.parameters['tls-hostname'];
  return {
    ...plan,
    tls: { id, sourceDir: '', destinationDir: '', ...(hostname ? { hostname: String(hostname) } : {}) },
  };
}

/** One PreflightError for the monitors that could not be reached, source first. */
function connectFailure(...results: PromiseSettledResult<QmpClient>[]): PreflightError {
  const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
  const problems = failed.flatMap((r) =>
    r.reason instanceof PreflightError ? r.reason.problems : [String((r.reason as Error).message)],
  );
  return new PreflightError(problems, { cause: failed[0]?.reason });
}

type Deferred<T> = { promise: Promise<T>; resolve: (v: T) => void; reject: (e: unknown) => void };

function deferred<T>(): Deferred<T> {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

const FINAL = new Set(['completed', 'failed', 'cancelled']);

/** The source's states once postcopy began: the guest runs on the destination, no cancel. */
const POSTCOPY = new Set([
  'postcopy-active',
  'postcopy-paused',
  'postcopy-recover-setup',
  'postcopy-recover',
]);

/** The state of one runMigration(): its monitors, its samples, and how it is being ended. */
class MigrationRun {
  readonly #plan: MigratePlan;
  readonly #o: Required<Omit<RunMigrationOptions, 'signal' | 'onSample' | 'postcopySignal'>> &
    RunMigrationOptions;
  readonly #cancel = new AbortController();
  readonly #commands = deferred<PlannedCommand[]>();
  readonly #facts = deferred<PreflightFacts>();
  readonly #queue: MigrationSample[] = [];
  #done = false;
  #error: unknown;
  #notify: (() => void) | undefined;
  #wake: (() => void) | undefined;
  #src: QmpClient | undefined;
  #dst: QmpClient | undefined;
  #t0 = 0;
  #last: { at: number; transferred: number } | undefined;
  #endedBy: MigrationReport['endedBy'];
  #cancelSentAt: number | undefined;
  #paused = false;
  /** ms since migrate when the timeout policy stopped the source's guest. */
  #pausedAtMs: number | undefined;
  /** The source's last migration status. */
  #status = 'none';
  /** What switched (or was to switch) to postcopy, when, and whether the source got there. */
  #postcopyBy: PostcopyReport['startedBy'] | undefined;
  #postcopyAt: number | undefined;
  #postcopyRequested = false;
  #sawPostcopy = false;
  #timeoutDone = false;
  readonly #warnings: string[] = [];
  /** The sides where the plan's TLS object was created, so that it is removed at the end. */
  readonly #tlsCreated = new Set<'source' | 'destination'>();
  #before: PreflightFacts | undefined;
  /** A resume plan's: the TLS set-up an earlier run left for the paused migration, to undo at the end. */
  #resumedTls: MigratePlan | undefined;

  constructor(plan: MigratePlan, options: RunMigrationOptions) {
    this.#plan = plan;
    // An option given as undefined takes its default too.
    this.#o = {
      ...options,
      pollMs: options.pollMs ?? 500,
      connectTimeoutMs: options.connectTimeoutMs ?? 10_000,
      cancelWaitMs: options.cancelWaitMs ?? 10_000,
      completionWaitMs: options.completionWaitMs ?? 60_000,
      recoverWaitMs: options.recoverWaitMs ?? 30_000,
    };
  }

  get commands(): Promise<PlannedCommand[]> {
    return this.#commands.promise;
  }

  get facts(): Promise<PreflightFacts> {
    return this.#facts.promise;
  }

  cancel(): void {
    this.#cancel.abort();
    this.#wake?.();
  }

  requestPostcopy(): void {
    this.#postcopyRequested = true;
    this.#wake?.();
  }

  async start(): Promise<MigrationReport> {
    const onAbort = () => this.cancel();
    const onPostcopy = () => this.requestPostcopy();
    this.#o.signal?.addEventListener('abort', onAbort, { once: true });
    this.#o.postcopySignal?.addEventListener('abort', onPostcopy, { once: true });
    if (this.#o.signal?.aborted) this.#cancel.abort();
    if (this.#o.postcopySignal?.aborted) this.#postcopyRequested = true;
    let report: MigrationReport | undefined;
    try {
      report = await this.#run();
      return report;
    } catch (e) {
      this.#error = e;
      this.#commands.reject(e);
      this.#facts.reject(e);
      throw e;
    } finally {
      this.#o.signal?.removeEventListener('abort', onAbort);
      this.#o.postcopySignal?.removeEventListener('abort', onPostcopy);
      // Whatever ended the migration (completed, failed, cancelled, a signal, a refusal in
      // the set-up), what qmigrate created on the peers goes before it lets them go; but a
      // postcopy migration that goes on, or waits to be resumed, still uses its TLS objects.
      const live = report?.status === 'postcopy-paused' || report?.status === 'postcopy-active';
      if (live && this.#tlsCreated.size) {
        // The report is built already: the warning goes into it too, not only the list.
        const kept = 'the TLS objects stay on both sides: the postcopy migration still uses them';
        this.#warnings.push(kept);
        if (report) report.warnings = [...(report.warnings ?? []), kept];
      }
      const left = live ? [] : await this.#removeTls();
      if (report && left.length) report.warnings = [...(report.warnings ?? []), ...left];
      await Promise.all([this.#src?.close().catch(() => {}), this.#dst?.close().catch(() => {})]);
      this.#done = true;
      this.#notify?.();
    }
  }

  async *samples(): AsyncGenerator<MigrationSample> {
    for (;;) {
      const next = this.#queue.shift();
      if (next) {
        yield next;
        continue;
      }
      if (this.#done) {
        if (this.#error !== undefined) throw this.#error;
        return;
      }
      await new Promise<void>((r) => {
        this.#notify = r;
      });
      this.#notify = undefined;
    }
  }

  #push(sample: MigrationSample): void {
    this.#queue.push(sample);
    this.#o.onSample?.(sample);
    this.#notify?.();
  }

  async #run(): Promise<MigrationReport> {
    await this.#connect();
    const src = this.#src as QmpClient;
    const dst = this.#dst as QmpClient;
    const o = { timeoutMs: this.#o.connectTimeoutMs };
    const facts = this.#plan.resume
      ? await preflightResume(src, dst, o)
      : await preflight(src, dst, this.#plan, o);
    this.#before = facts;
    this.#facts.resolve(facts);
    if (this.#cancel.signal.aborted) throw new PreflightError(['cancelled before the migration started']);
    if (this.#plan.resume) await this.#setUpResume(src, dst, facts);
    else await this.#setUp(src, dst, facts);
    const info = await this.#follow(src).catch((e: unknown) => {
      // Not the QMP client's bare 'cannot run 'query-migrate': the client is closed'.
      throw e instanceof QmpClientError && !(e instanceof QmpError) ? new MonitorLostError('source', e) : e;
    });
    return this.#finish(src, dst, facts, info);
  }

  async #connect(): Promise<void> {
    const o = { timeoutMs: this.#o.connectTimeoutMs, signal: this.#cancel.signal };
    const [s, d] = await Promise.allSettled([
      connectQmpEndpoint(this.#plan.from, 'source', o),
      connectQmpEndpoint(this.#plan.to, 'destination', o),
    ]);
    if (s.status === 'fulfilled') this.#src = s.value;
    if (d.status === 'fulfilled') this.#dst = d.value;
    if (s.status === 'rejected' || d.status === 'rejected') throw connectFailure(s, d);
  }

  /**
   * The TLS objects on both sides, the destination's commands, its real address read back,
   * then the source's up to `migrate`.
   */
  async #setUp(src: QmpClient, dst: QmpClient, facts: PreflightFacts): Promise<void> {
    const forms = { sourceChannels: facts.source.channels, destinationChannels: facts.destination.channels };
    const planned = planCommands(this.#plan, forms);
    const objects = planned.filter((c) => c.execute === 'object-add');
    const first = planned.filter((c) => c.side === 'destination' && c.execute !== 'object-add');
    for (const c of objects) await this.#send(c.side === 'source' ? src : dst, c);
    for (const c of first) await this.#send(dst, c);
    const listening = (await dst.queryMigrate({ timeout: this.#o.connectTimeoutMs }))['socket-address'];
    const all = planCommands(this.#plan, { ...forms, listening });
    const second = all.filter((c) => c.side === 'source' && c.execute !== 'object-add');
    this.#commands.resolve([...objects, ...first, ...second]);
    this.#listen(src, dst);
    for (const c of second) {
      if (c.execute === 'migrate') this.#t0 = Date.now();
      await this.#send(src, c);
    }
  }

  /**
   * A resume plan's set-up: `migrate-recover` on the destination, its real address read back
   * (QEMU 10.0 reports the new listener in query-migrate's socket-address), then the source's
   * `migrate` with `resume: true`.
   */
  async #setUpResume(src: QmpClient, dst: QmpClient, facts: PreflightFacts): Promise<void> {
    const forms = { sourceChannels: facts.source.channels };
    const [recover] = planResumeCommands(this.#plan, forms);
    await this.#send(dst, recover as PlannedCommand);
    const listening = (await dst.queryMigrate({ timeout: this.#o.connectTimeoutMs }))['socket-address'];
    const all = planResumeCommands(this.#plan, { ...forms, listening });
    this.#adoptTls(facts);
    this.#commands.resolve(all);
    this.#listen(src, dst);
    this.#postcopyBy = 'resume';
    this.#sawPostcopy = true;
    this.#t0 = Date.now();
    await this.#send(src, all[1] as PlannedCommand);
  }

  /**
   * The TLS objects a `--tls-creds` run made and left for its paused migration (tls-creds
   * naming a `qmigrate-tls-` object): this run removes them once the migration ends (not when
   * it is left paused or going on), tls-creds and the source's tls-hostname back to ''.
   */
  #adoptTls(facts: PreflightFacts): void {
    this.#resumedTls = resumedTlsPlan(this.#plan, facts);
    const id = this.#resumedTls?.tls?.id;
    if (id === undefined) return;
    this.#tlsCreated.add('source');
    if (facts.destination.parameters['tls-creds'] === id) this.#tlsCreated.add('destination');
  }

  /** Sends one set-up command; a refusal means nothing moved yet: a preflight failure. */
  async #send(qmp: QmpClient, c: PlannedCommand): Promise<void> {
    try {
      await qmp.executeRaw(c.execute, c.arguments, { timeout: this.#o.connectTimeoutMs });
      if (c.execute === 'object-add') this.#tlsCreated.add(c.side);
    } catch (e) {
      if (!(e instanceof QmpError)) throw e;
      const left = c.side === 'source' ? '; the destination is left waiting for the incoming migration' : '';
      throw new PreflightError([`${c.side} refused ${c.execute}: ${e.desc}${left}`], { cause: e });
    }
  }

  /**
   * Undoes the TLS set-up where it was done: tls-creds as it was, the object deleted. A side
   * whose monitor is gone is skipped (QEMU 10.0's destination exits after a failed incoming
   * migration, and its objects with it); a refusal is returned as a warning for the report.
   */
  async #removeTls(): Promise<string[]> {
    if (this.#tlsCreated.size === 0) return [];
    // A resumed run cannot know what the parameters were before the first run: ''.
    const before = this.#resumedTls
      ? {}
      : { source: this.#before?.source.parameters, destination: this.#before?.destination.parameters };
    const left: string[] = [];
    for (const c of cleanupCommands(this.#resumedTls ?? this.#plan, before)) {
      const qmp = c.side === 'source' ? this.#src : this.#dst;
      if (!qmp || qmp.isClosed || !this.#tlsCreated.has(c.side)) continue;
      try {
        await qmp.executeRaw(c.execute, c.arguments, { timeout: this.#o.connectTimeoutMs });
      } catch (e) {
        if (qmp.isClosed) continue;
        left.push(
          `could not undo the TLS set-up on the ${c.side}: ${c.execute} failed: ${(e as Error).message}`,
        );
      }
    }
    return left;
  }

  #listen(src: QmpClient, dst: QmpClient): void {
    const event = (side: 'source' | 'destination') => (e: { event: string; data: unknown }) => {
      this.#push({
        type: 'event',
        side,
        elapsedMs: this.#t0 ? Date.now() - this.#t0 : 0,
        event: e.event,
        data: (e.data ?? {}) as Record<string, unknown>,
      });
      // A short postcopy phase may fall between two polls: its event says it was there.
      if (side === 'source' && POSTCOPY.has(String((e.data as { status?: unknown })?.status)))
        this.#sawPostcopy = true;
      if (side === 'source') this.#wake?.();
    };
    src.on('MIGRATION', event('source'));
    src.on('MIGRATION_PASS', event('source'));
    dst.on('MIGRATION', event('destination'));
  }

  /**
   * Polls the source until its migration is final, applying cancel, the timeout policy and
   * the switch to postcopy. It also ends at `postcopy-paused` (a resume plan's `migrate` has
   * moved the source on to postcopy-recover-setup before it returns), on an interrupt once
   * postcopy began (nothing to cancel), and when a resumed migration does not get back to
   * postcopy-active within recoverWaitMs.
   */
  async #follow(src: QmpClient): Promise<MigrationInfo> {
    for (;;) {
      const interrupted = this.#cancel.signal.aborted;
      if (interrupted && this.#cancelSentAt === undefined && !POSTCOPY.has(this.#status))
        await this.#sendCancel(src, 'interrupt');
      const info = await src.queryMigrate({ timeout: this.#o.connectTimeoutMs });
      this.#status = info.status ?? 'none';
      if (POSTCOPY.has(this.#status)) this.#sawPostcopy = true;
      this.#push(this.#sample(info));
      if (FINAL.has(this.#status) || this.#status === 'postcopy-paused') return info;
      if (interrupted && POSTCOPY.has(this.#status) && this.#cancelSentAt === undefined) {
        this.#endedBy = 'interrupt';
        return info;
      }
      if (this.#status.startsWith('postcopy-recover') && Date.now() - this.#t0 > this.#o.recoverWaitMs) {
        this.#warnings.push(
          `the source is still '${this.#status}' ${this.#o.recoverWaitMs} ms after migrate with resume; qmigrate stopped waiting`,
        );
        return info;
      }
      if (this.#cancelSentAt !== undefined && Date.now() - this.#cancelSentAt > this.#o.cancelWaitMs) {
        this.#warnings.push(
          `the source is still '${info.status}' ${this.#o.cancelWaitMs} ms after migrate_cancel; qmigrate stopped waiting`,
        );
        return info;
      }
      await this.#applyTimeout(src);
      await this.#maybeStartPostcopy(src, info);
      await this.#sleep(this.#o.pollMs);
    }
  }

  /** The switch a request or the plan's passes ask for, once the migration is active. */
  async #maybeStartPostcopy(src: QmpClient, info: MigrationInfo): Promise<void> {
    if (this.#postcopyBy !== undefined || info.status !== 'active' || this.#endedBy !== undefined) return;
    if (this.#postcopyRequested) return this.#startPostcopy(src, 'request');
    const after = this.#plan.postcopy?.afterPasses;
    // dirty-sync-count is 1 during the first pass: above N once N passes have ended.
    if (after !== undefined && Number(info.ram?.['dirty-sync-count'] ?? 0) > after)
      return this.#startPostcopy(src, 'passes');
  }

  async #startPostcopy(src: QmpClient, by: PostcopyReport['startedBy']): Promise<void> {
    this.#postcopyBy = by;
    this.#postcopyAt = Date.now() - this.#t0;
    if (this.#plan.capabilities['postcopy-ram'] !== true) {
      this.#warnings.push("a switch to postcopy was asked for, but the migration has no 'postcopy-ram'");
      return;
    }
    try {
      await src.migrateStartPostcopy({ timeout: this.#o.connectTimeoutMs });
    } catch (e) {
      if (!(e instanceof QmpError)) throw e;
      this.#warnings.push(`the source refused migrate-start-postcopy: ${e.desc}`);
    }
  }

  async #applyTimeout(src: QmpClient): Promise<void> {
    const t = this.#plan.timeoutS;
    if (t === undefined || this.#timeoutDone || this.#endedBy !== undefined) return;
    if (Date.now() - this.#t0 < t * 1000) return;
    this.#timeoutDone = true;
    if (POSTCOPY.has(this.#status)) {
      // The guest runs on the destination: there is nothing to cancel or pause any more.
      this.#warnings.push(
        `the ${t} s timeout passed in postcopy, which cannot be cancelled or paused (the guest runs on the destination); the migration went on`,
      );
      return;
    }
    if (this.#plan.onTimeout === 'postcopy') {
      if (this.#postcopyBy === undefined) await this.#startPostcopy(src, 'timeout');
      return;
    }
    if (this.#plan.onTimeout === 'cancel') return this.#sendCancel(src, 'timeout-cancel');
    this.#endedBy = 'timeout-pause';
    this.#paused = true;
    this.#pausedAtMs = Date.now() - this.#t0;
    // As virsh --timeout-suspend: with the guest stopped nothing is dirtied, so it converges.
    await src.stop({ timeout: this.#o.connectTimeoutMs });
  }

  async #sendCancel(src: QmpClient, why: 'interrupt' | 'timeout-cancel'): Promise<void> {
    try {
      await src.migrateCancel({ timeout: this.#o.connectTimeoutMs });
    } catch (e) {
      // The switch to postcopy came first: QEMU refuses ('Postcopy migration in progress,
      // cannot cancel.'), and the next poll sees the postcopy state.
      if (!(e instanceof QmpError) || !/postcopy/i.test(e.desc)) throw e;
      if (why === 'timeout-cancel') this.#warnings.push(`the source refused migrate_cancel: ${e.desc}`);
      this.#status = 'postcopy-active';
      return;
    }
    this.#endedBy ??= why;
    this.#cancelSentAt = Date.now();
  }

  /** Waits `ms`, or less when a source event or a cancel comes. */
  async #sleep(ms: number): Promise<void> {
    const ac = new AbortController();
    this.#wake = () => ac.abort();
    if (this.#cancel.signal.aborted && this.#cancelSentAt === undefined) return;
    await sleep(ms, undefined, { signal: ac.signal }).catch(() => {});
    this.#wake = undefined;
  }

  /** A ProgressSample from one query-migrate of the source. */
  #sample(info: MigrationInfo): ProgressSample {
    const now = Date.now();
    const ram = info.ram;
    const transferred = Number(ram?.transferred ?? 0);
    const total = Number(ram?.total ?? 0);
    const remaining = Number(ram?.remaining ?? 0);
    const last = this.#last;
    const dt = last ? (now - last.at) / 1000 : 0;
    const throughput =
      last && dt > 0 ? Math.max(0, (transferred - last.transferred) / dt) : Number(ram?.mbps ?? 0) * 125_000;
    this.#last = { at: now, transferred };
    // In postcopy the source's guest is stopped: QEMU's figure is the last precopy sync's.
    const dirtyPagesRate = POSTCOPY.has(info.status ?? '') ? 0 : Number(ram?.['dirty-pages-rate'] ?? 0);
    const dirtyBytes = dirtyPagesRate * Number(ram?.['page-size'] || 4096);
    const net = throughput - dirtyBytes;
    return {
      type: 'progress',
      elapsedMs: now - this.#t0,
      status: info.status ?? 'none',
      pass: Number(ram?.['dirty-sync-count'] ?? 0),
      transferred,
      total,
      remaining,
      percent: total > 0 ? Math.min(100, Math.max(0, (100 * (total - remaining)) / total)) : undefined,
      throughput,
      dirtyPagesRate,
      expectedDowntimeMs:
        info['expected-downtime'] === undefined ? undefined : Number(info['expected-downtime']),
      etaS: !ram ? undefined : remaining === 0 ? 0 : net > 0 ? remaining / net : undefined,
      ...(this.#sawPostcopy
        ? {
            postcopyRequests: Number(ram?.['postcopy-requests'] ?? 0),
            postcopyBytes: Number(ram?.['postcopy-bytes'] ?? 0),
          }
        : {}),
    };
  }

  #postcopyReport(info: MigrationInfo, dstInfo: MigrationInfo | undefined): PostcopyReport | undefined {
    if (!this.#sawPostcopy) return undefined;
    return postcopyReportOf(this.#postcopyBy, this.#postcopyAt, info, dstInfo);
  }

  /** The end: the destination's side of a completed migration, both run states, the report. */
  async #finish(
    src: QmpClient,
    dst: QmpClient,
    facts: PreflightFacts,
    info: MigrationInfo,
  ): Promise<MigrationReport> {
    if (POSTCOPY.has(info.status ?? '')) return this.#postcopyUnfinished(src, dst, info);
    let status = (FINAL.has(info.status ?? '') ? info.status : 'failed') as MigrationReport['status'];
    let reason = info['error-desc'];
    let dstInfo: MigrationInfo | undefined;
    if (status === 'completed') {
      const d = await this.#destinationOutcome(dst);
      dstInfo = d.info;
      if (d.failed) {
        status = 'failed';
        reason = `the destination failed to load the migration: ${d.failed}`;
        await this.#resumeSource(src, facts);
      } else if (this.#paused && d.runState === 'paused') {
        // libvirt starts the guest on the destination after --timeout-suspend, unless the
        // user asked for it paused; the source stays stopped (postmigrate).
        await dst.cont({ timeout: this.#o.connectTimeoutMs });
      }
    } else if (this.#endedBy && !reason) {
      reason =
        this.#endedBy === 'interrupt' ? 'cancelled by the user' : `timed out after ${this.#plan.timeoutS} s`;
    }
    if (status === 'cancelled' && this.#endedBy === undefined)
      reason ??= 'cancelled on the source (migrate_cancel)';
    const sourceRunState = await this.#settledSourceState(src, facts, status);
    const destinationRunState = await runStateOf(dst);
    return this.#report(info, { status, reason, sourceRunState, destinationRunState }, dstInfo);
  }

  /**
   * The end of a run that leaves a postcopy migration going: paused on a broken link (how to
   * resume it is the caller's to say), interrupted (it goes on), or a resume that did not get
   * back to postcopy-active in time. Neither side's guest is touched: the destination's runs
   * and waits for pages only the source has.
   */
  async #postcopyUnfinished(src: QmpClient, dst: QmpClient, info: MigrationInfo): Promise<MigrationReport> {
    // Only postcopy-paused is a broken link; a run that ended in postcopy-recover(-setup) was
    // interrupted or gave up waiting while the recovery goes on, which may yet complete.
    const paused = info.status === 'postcopy-paused';
    const status = info.status ?? 'none';
    const goesOn = 'the migration goes on without qmigrate following it';
    const reason = paused
      ? `the link broke during postcopy (${info['error-desc'] ?? 'no reason given'}); the guest runs on the destination and waits for the pages it lacks, which only the source has`
      : this.#endedBy === 'interrupt'
        ? `interrupted during postcopy${status === 'postcopy-active' ? '' : ` (the source '${status}')`}, which cannot be cancelled (the guest runs on the destination): ${goesOn}`
        : `the resumed migration did not get back to postcopy-active in time (the source '${status}'): ${goesOn}`;
    const dstInfo = await dst.queryMigrate({ timeout: this.#o.connectTimeoutMs }).catch(() => undefined);
    return this.#report(
      info,
      {
        status: paused ? 'postcopy-paused' : 'postcopy-active',
        reason,
        sourceRunState: await runStateOf(src),
        destinationRunState: await runStateOf(dst),
      },
      dstInfo,
    );
  }

  /** Polls the destination until it has loaded the stream (or failed), bounded. */
  async #destinationOutcome(
    dst: QmpClient,
  ): Promise<{ failed?: string; runState?: string; info?: MigrationInfo }> {
    const deadline = Date.now() + this.#o.completionWaitMs;
    for (;;) {
      let m: MigrationInfo;
      let runState: string;
      try {
        m = await dst.queryMigrate({ timeout: this.#o.connectTimeoutMs });
        runState = (await dst.queryStatus({ timeout: this.#o.connectTimeoutMs })).status;
      } catch (e) {
        return { failed: `its monitor went away (${(e as Error).message})` };
      }
      if (m.status === 'failed') return { failed: m['error-desc'] ?? 'no reason given' };
      if (m.status === 'completed' && runState !== 'inmigrate') return { runState, info: m };
      if (this.#cancel.signal.aborted) {
        // The source has completed: there is nothing left to cancel, and a Ctrl-C here waited
        // out the whole completionWaitMs (the CLI ended the process first, with no report).
        this.#warnings.push(
          `interrupted while the destination was still '${m.status}' (run state '${runState}') after the source completed; qmigrate stopped waiting`,
        );
        return { runState };
      }
      if (Date.now() > deadline) {
        this.#warnings.push(
          `the destination is still '${m.status}' (run state '${runState}') ${this.#o.completionWaitMs} ms after the source completed`,
        );
        return { runState };
      }
      await sleep(50);
    }
  }

  /** After a destination failure past the source's completion: the guest runs on at the source. */
  async #resumeSource(src: QmpClient, facts: PreflightFacts): Promise<void> {
    if (this.#sawPostcopy) {
      // The destination ran the guest: the source's RAM is stale, starting it would fork the guest.
      this.#warnings.push(
        "the destination failed after postcopy began: the source's guest was NOT started again (the destination ran it, the source's copy is stale)",
      );
      return;
    }
    if (facts.source.runState !== 'running' || this.#paused) return;
    const s = await src.queryStatus({ timeout: this.#o.connectTimeoutMs });
    if (s.status === 'postmigrate') {
      await src.cont({ timeout: this.#o.connectTimeoutMs });
      this.#warnings.push("the source's guest was started again ('cont') as the destination failed");
    }
  }

  /**
   * The source's run state once a failed or cancelled migration has resumed its guest (QEMU
   * restarts it just after the status turns final, so it is polled for up to 2 s); a guest
   * that ran before and does not now is reported in `warnings`. A guest the pause policy
   * stopped is started again when the migration did not complete after all.
   */
  async #settledSourceState(src: QmpClient, facts: PreflightFacts, status: string): Promise<string> {
    const wasRunning = facts.source.runState === 'running';
    if (status === 'completed' || !wasRunning) return runStateOf(src);
    if (this.#paused && (await runStateOf(src)) === 'paused')
      await src.cont({ timeout: this.#o.connectTimeoutMs });
    const deadline = Date.now() + 2000;
    for (;;) {
      const state = await runStateOf(src);
      if (state === 'running') return state;
      if (Date.now() > deadline) {
        this.#warnings.push(`the source's guest was running before the migration and is '${state}' now`);
        return state;
      }
      await sleep(50);
    }
  }

  #report(
    info: MigrationInfo,
    end: Pick<MigrationReport, 'status' | 'reason' | 'sourceRunState' | 'destinationRunState'>,
    dstInfo?: MigrationInfo,
  ): MigrationReport {
    const ram = info.ram;
    const totalTimeMs = info['total-time'] === undefined ? undefined : Number(info['total-time']);
    const transferred = ram ? Number(ram.transferred) : undefined;
    return {
      type: 'report',
      ...end,
      endedBy: this.#endedBy,
      ...(this.#pausedAtMs === undefined ? {} : { pausedAtMs: this.#pausedAtMs }),
      totalTimeMs,
      setupTimeMs: info['setup-time'] === undefined ? undefined : Number(info['setup-time']),
      downtimeMs: info.downtime === undefined ? undefined : Number(info.downtime),
      transferred,
      throughput:
        transferred !== undefined && totalTimeMs ? Math.round((transferred * 1000) / totalTimeMs) : undefined,
      passes: ram ? Number(ram['dirty-sync-count']) : undefined,
      pages: ram ? { normal: Number(ram.normal), duplicate: Number(ram.duplicate) } : undefined,
      postcopy: this.#postcopyReport(info, dstInfo),
      warnings: this.#warnings.length ? [...this.#warnings] : undefined,
      source: info,
    };
  }
}

/** How postcopy went, once the source got there (or a resume plan ran). */
function postcopyReportOf(
  by: PostcopyReport['startedBy'] | undefined,
  at: number | undefined,
  info: MigrationInfo,
  dstInfo: MigrationInfo | undefined,
): PostcopyReport {
  const ram = info.ram;
  const blocktime = dstInfo?.['postcopy-blocktime'];
  const vcpu = dstInfo?.['postcopy-vcpu-blocktime'];
  return {
    startedBy: by ?? 'request',
    ...(at !== undefined && by !== 'resume' ? { startedAtMs: at } : {}),
    ...(ram?.['postcopy-bytes'] !== undefined ? { bytes: Number(ram['postcopy-bytes']) } : {}),
    ...(ram?.['postcopy-requests'] !== undefined ? { requests: Number(ram['postcopy-requests']) } : {}),
    ...(blocktime !== undefined ? { blocktimeMs: Number(blocktime) } : {}),
    ...(vcpu !== undefined ? { vcpuBlocktimeMs: vcpu.map(Number) } : {}),
  };
}

/** A side's run state, or `unreachable` when its monitor is gone (QEMU 10.0 exits after a failed incoming migration by default). */
async function runStateOf(qmp: QmpClient): Promise<string> {
  try {
    return (await qmp.queryStatus({ timeout: 5000 })).status;
  } catch {
    return 'unreachable';
  }
}
