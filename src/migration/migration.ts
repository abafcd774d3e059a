/**
 * The migration state machine of one VM (migration/migration.c): outgoing and incoming
 * status, the error, timings and RAM statistics, and the QMP commands that read or drive
 * them. Each command's rules (below, as pure functions over a snapshot of the state, and
 * options.ts's) run before anything changes; moving bytes is a MigrationEngine's work.
 */
import type { Readable, Writable } from 'node:stream';
import { genericError, QapiError } from '../qapi/errors.js';
import type {
  EventName,
  Events,
  MigrationCapabilityStatus,
  MigrationInfo,
  MigrationStats,
  MigrationStatus,
  RunState,
  SocketAddress,
} from '../qapi/types.js';
import { type MigrationInput, type ParsedInput, parseMigrationInput } from './channel-rules.js';
import {
  type Capabilities,
  checkIncomingSupport,
  checkListenAddress,
  checkMigrateOptions,
  checkOutgoingSupport,
  checkTransport,
  MigrationOptions,
  type Parameters,
  type SupportContext,
} from './options.js';
import type { PostcopyIncoming } from './postcopy-ram.js';
import { INCOMING_REPORTED, isRunning, POSTCOPY_STATES, RAM_STATES } from './status.js';
import type { QemuFileReader } from './stream/qemu-file.js';

/** What the state machine needs from the VM around it. */
export interface MigrationHost {
  runstate(): RunState;
  /** Emits a QMP event to every monitor. */
  emit<N extends EventName>(event: N, data?: Events[N]): void;
  /** RAM blocks not shared with another process (no share=on), by idstr, in order. */
  unsharedRam?(): readonly string[];
}

/**
 * The guest's run state as migration drives it (system/runstate.c); the VM implements it.
 * The source stops the guest for the last pass and resumes it after a failure; the
 * destination starts it, or leaves it paused, once the stream is loaded.
 */
export interface GuestRunState {
  readonly state: RunState;
  /** Start the guest when an incoming migration completes (QEMU's autostart, -S clears it). */
  readonly autostart: boolean;
  /** Sets a state without STOP / RESUME (migration's own steps: finish-migrate, postmigrate). */
  set(s: RunState): void;
  /** vm_stop(): a live guest stops in state `to` and STOP is sent; otherwise nothing happens. */
  stop(to?: RunState): void;
  /** vm_start(): a stopped guest runs and RESUME is sent. */
  start(): void;
}

/** A started outgoing migration, as the engine runs it. */
export interface OutgoingRun {
  /**
   * Asks the engine to stop; the run then ends (cancelled).
   * @returns false when the end of the stream is already out and the run ends on its own.
   */
  cancel(): boolean;
  /** Resumes from pre-switchover (migrate-continue). */
  continue(): void;
  /** migrate-start-postcopy: switch to postcopy at the next iteration. */
  startPostcopy?(): void;
  /** migrate-pause in postcopy: shut the stream down (the run pauses). */
  pause?(): void;
}

/** A channel a migrate-recover listener accepted, for the paused postcopy it resumes. */
export interface RecoveredChannel {
  input: Readable;
  rp: Writable | undefined;
  reader?: QemuFileReader;
}

/** A started incoming migration. */
export interface IncomingRun {
  /** Addresses the listener is bound to (for query-migrate's socket-address). */
  socketAddress?: SocketAddress[];
  cancel(): void;
}

/** Moves the bytes; implemented by the engine (issue-sized work kept out of this file). */
export interface MigrationEngine {
  /** @throws {QapiError} for synchronous connect errors (bad fd name, spawn, open...). */
  startOutgoing(parsed: ParsedInput, m: Migration): OutgoingRun | Promise<OutgoingRun>;
  /**
   * Connects to the destination's new address for a paused postcopy (migrate with resume)
   * and hands the connection to `run`.
   * @throws {QapiError} for synchronous connect errors.
   */
  resumeOutgoing?(parsed: ParsedInput, m: Migration, run: OutgoingRun): void;
  /** @throws {QapiError} when the listener or transport cannot be set up. */
  startIncoming(parsed: ParsedInput, m: Migration, exitOnError: boolean): IncomingRun | Promise<IncomingRun>;
}

// ---- the commands' rules (qmp_migrate, migrate_prepare, qmp_migrate_incoming, ...) -----

export interface MigrationSnapshot {
  /** Outgoing migration status. */
  status: MigrationStatus;
  runstate: RunState;
  caps: Capabilities;
  params: Parameters;
}

/**
 * `migrate`: everything checked before the state moves to `setup` (qmp_migrate's input
 * checks, then migrate_prepare).
 * @throws {QapiError}
 */
export function checkMigrate(args: MigrationInput & { resume?: boolean }, s: MigrationSnapshot): ParsedInput {
  const parsed = parseMigrationInput(args, 'migrate', s.params.mode);
  checkTransport(parsed.main.addr, s.caps, s.params);
  if (args.resume) {
    if (s.status !== 'postcopy-paused') throw genericError('Cannot resume if there is no paused migration');
    if (s.caps['release-ram']) {
      throw genericError('Postcopy recovery cannot work when release-ram capability is set');
    }
    return parsed;
  }
  if (isRunning(s.status)) throw genericError("There's a migration process in progress");
  if (s.runstate === 'inmigrate') throw genericError('Guest is waiting for an incoming migration');
  if (s.runstate === 'postmigrate') {
    throw genericError("Can't migrate the vm that was paused due to previous migration");
  }
  checkMigrateOptions(s.caps, s.params);
  return parsed;
}

export interface IncomingSnapshot {
  /** A previous migrate-incoming (or a non-defer -incoming) succeeded. */
  incomingStarted: boolean;
  runstate: RunState;
  /** Incoming migration status. */
  incomingStatus: MigrationStatus;
  caps: Capabilities;
  params: Parameters;
}

/**
 * `migrate-incoming`: everything checked before the listener is set up.
 * @throws {QapiError}
 */
export function checkMigrateIncoming(args: MigrationInput, s: IncomingSnapshot): ParsedInput {
  if (s.incomingStarted) throw genericError('The incoming migration has already been started');
  if (s.runstate !== 'inmigrate') throw genericError("'-incoming' was not specified on the command line");
  const parsed = parseMigrationInput(args, 'migrate-incoming', s.params.mode);
  checkTransport(parsed.main.addr, s.caps, s.params);
  if (s.incomingStatus !== 'none' && s.incomingStatus !== 'postcopy-paused') {
    throw genericError(`Illegal migration incoming state: ${s.incomingStatus}`);
  }
  return parsed;
}

/** `migrate-continue state=S`: only from state S (pause-before-switchover). */
export function checkMigrateContinue(state: MigrationStatus, current: MigrationStatus): void {
  if (state !== current) throw genericError(`Migration not in expected state: ${current}`);
}

/** `migrate_cancel`: refused only while postcopy runs; a no-op otherwise. */
export function checkMigrateCancel(current: MigrationStatus): void {
  if (POSTCOPY_STATES.includes(current)) throw genericError('Postcopy migration in progress, cannot cancel.');
}

/** `migrate-start-postcopy`. */
export function checkStartPostcopy(caps: Capabilities, current: MigrationStatus): void {
  if (!caps['postcopy-ram'] && !caps['dirty-bitmaps']) {
    throw genericError('Enable postcopy with migrate_set_capability before the start of migration');
  }
  if (current === 'none') throw genericError('Postcopy must be started after migration has been started');
}

/** `migrate-pause`, on either side. */
export function checkMigratePause(outgoing: MigrationStatus, incoming: MigrationStatus): void {
  const ok = (s: MigrationStatus) => s === 'postcopy-active' || s === 'postcopy-recover';
  if (!ok(outgoing) && !ok(incoming)) {
    throw genericError(
      'migrate-pause is currently only supported during postcopy-active or postcopy-recover state',
    );
  }
}

/** `migrate-recover` on a destination. */
export function checkMigrateRecover(incoming: MigrationStatus): void {
  if (incoming !== 'postcopy-paused')
    throw genericError('Migrate recover can only be run when postcopy is paused.');
}

// ---- the state machine ----------------------------------------------------------------

export function emptyStats(): MigrationStats {
  return {
    transferred: 0,
    remaining: 0,
    total: 0,
    duplicate: 0,
    normal: 0,
    'normal-bytes': 0,
    'dirty-pages-rate': 0,
    mbps: 0,
    'dirty-sync-count': 0,
    'postcopy-requests': 0,
    'page-size': 4096,
    'multifd-bytes': 0,
    'pages-per-second': 0,
    'precopy-bytes': 0,
    'downtime-bytes': 0,
    'postcopy-bytes': 0,
    'dirty-sync-missed-zero-copy': 0,
  };
}

export class Migration {
  readonly options = new MigrationOptions();
  readonly #host: MigrationHost;
  readonly #engine: MigrationEngine;

  status: MigrationStatus = 'none';
  incomingStatus: MigrationStatus = 'none';
  incomingStarted = false;
  error: string | undefined;
  /** Outgoing timings in ms since the epoch / durations, filled by the engine. */
  startTime = 0;
  setupTime = 0;
  totalTime = 0;
  downtime = 0;
  expectedDowntime = 0;
  stats: MigrationStats = emptyStats();
  #outgoing: OutgoingRun | undefined;
  #incoming: IncomingRun | undefined;
  /** Shuts the incoming channel (set by the load while it reads one), for migrate-pause. */
  incomingShutdown: (() => void) | undefined;
  /** A postcopy destination's page state (blocktime), once ADVISE came. */
  postcopyIncoming: PostcopyIncoming | undefined;
  /** The migrate-recover listener, while one waits for a resuming source. */
  #recoverListener: IncomingRun | undefined;
  /** The paused load waiting for a resumed source's channel. */
  #recoverWait: { resolve(ch: RecoveredChannel): void; reject(e: Error): void } | undefined;

  constructor(host: MigrationHost, engine: MigrationEngine) {
    this.#host = host;
    this.#engine = engine;
  }

  /** Records an outgoing state change and emits MIGRATION when `events` is on. */
  setStatus(s: MigrationStatus): void {
    if (this.status === s) return;
    this.status = s;
    if (this.options.caps.events) this.#host.emit('MIGRATION', { status: s });
  }

  setIncomingStatus(s: MigrationStatus): void {
    if (this.incomingStatus === s) return;
    this.incomingStatus = s;
    if (this.options.caps.events) this.#host.emit('MIGRATION', { status: s });
  }

  /** Called by the engine at each dirty-bitmap sync. */
  pass(count: number): void {
    if (this.options.caps.events) this.#host.emit('MIGRATION_PASS', { pass: count });
  }

  // ---- QMP ----------------------------------------------------------------------------

  /**
   * Every check `migrate` makes before anything changes: QEMU 10.0's rules, then what
   * qmigrate cannot do (options.ts). `qmigrate check` calls this too.
   * @throws {QapiError}
   */
  prepare(args: MigrationInput & { resume?: boolean }): ParsedInput {
    const parsed = checkMigrate(args, {
      status: this.status,
      runstate: this.#host.runstate(),
      caps: this.options.caps,
      params: this.options.params,
    });
    checkOutgoingSupport(parsed, this.#support());
    return parsed;
  }

  /** `migrate`: checks, then state `setup`, then the engine. */
  async migrate(args: MigrationInput & { resume?: boolean }): Promise<void> {
    const parsed = this.prepare(args);
    if (args.resume) {
      this.#resume(parsed);
      return;
    }
    this.error = undefined;
    this.stats = emptyStats();
    this.startTime = Date.now();
    this.setupTime = this.totalTime = this.downtime = 0;
    this.expectedDowntime = Number(this.options.params['downtime-limit']);
    this.setStatus('setup');
    try {
      this.#outgoing = await this.#engine.startOutgoing(parsed, this);
    } catch (e) {
      // Synchronous connect errors are returned and leave the state failed, as in QEMU.
      this.fail(e instanceof QapiError ? e.desc : (e as Error).message);
      throw e instanceof QapiError ? e : genericError((e as Error).message);
    }
  }

  /**
   * `migrate` with resume: true in postcopy-paused (qmp_migrate's resume path): state
   * postcopy-recover-setup, then the run takes the new connection; a connect error returns
   * it to postcopy-paused.
   */
  #resume(parsed: ParsedInput): void {
    const run = this.#outgoing;
    this.setStatus('postcopy-recover-setup');
    try {
      if (!run || !this.#engine.resumeOutgoing)
        throw genericError('Cannot resume if there is no paused migration');
      this.#engine.resumeOutgoing(parsed, this, run);
    } catch (e) {
      this.setStatus('postcopy-paused');
      throw e instanceof QapiError ? e : genericError((e as Error).message);
    }
  }

  #support(): SupportContext {
    return { caps: this.options.caps, params: this.options.params, unsharedRam: this.#host.unsharedRam?.() };
  }

  /** Ends an outgoing run in `failed` with an error-desc. */
  fail(desc: string): void {
    this.error = desc;
    this.#outgoing = undefined;
    this.setStatus('failed');
  }

  /**
   * Every check `migrate-incoming` makes before anything changes (QEMU 10.0's rules, then
   * what qmigrate cannot do). `qmigrate check` calls this too.
   * @throws {QapiError}
   */
  prepareIncoming(args: MigrationInput): ParsedInput {
    const parsed = checkMigrateIncoming(args, {
      incomingStarted: this.incomingStarted,
      runstate: this.#host.runstate(),
      incomingStatus: this.incomingStatus,
      caps: this.options.caps,
      params: this.options.params,
    });
    checkIncomingSupport(parsed, this.#support());
    return parsed;
  }

  /** What `migrate-incoming` would refuse, with nothing changed (for `qmigrate check`). @throws {QapiError} */
  checkIncoming(args: MigrationInput): void {
    checkListenAddress(this.prepareIncoming(args).main.addr);
  }

  /** `migrate-incoming`: checks, then `setup`, then the listener. */
  async migrateIncoming(args: MigrationInput & { 'exit-on-error'?: boolean }): Promise<void> {
    const parsed = this.prepareIncoming(args);
    // QEMU moves to setup before the listener exists, so a listener failure leaves `setup`.
    this.setIncomingStatus('setup');
    checkListenAddress(parsed.main.addr);
    this.#incoming = await this.#engine.startIncoming(parsed, this, args['exit-on-error'] ?? true);
    this.incomingStarted = true;
  }

  incomingEnded(): void {
    this.#incoming = undefined;
  }

  outgoingEnded(): void {
    this.#outgoing = undefined;
  }

  /**
   * The VM is going away (an in-process Vm's close): a listener still waiting for a source,
   * or a run still sending, must not keep sockets open after it.
   */
  shutdown(): void {
    this.#incoming?.cancel();
    this.#outgoing?.cancel();
    this.#recoverListener?.cancel();
    this.#recoverListener = undefined;
    this.#recoverWait?.reject(genericError('the VM is going away while its postcopy migration is paused'));
    this.#recoverWait = undefined;
  }

  /**
   * A paused postcopy load waits here for the channel of a resuming source (which a
   * migrate-recover listener accepts). Rejects when the VM goes away.
   */
  waitRecoveredChannel(): Promise<RecoveredChannel> {
    return new Promise((resolve, reject) => {
      this.#recoverWait = { resolve, reject };
    });
  }

  /**
   * Gives an accepted channel to a paused postcopy load, if one waits.
   * @returns false when no load waits (the channel starts a migration of its own).
   */
  takeRecoveredChannel(ch: RecoveredChannel): boolean {
    const w = this.#recoverWait;
    if (!w || this.incomingStatus !== 'postcopy-paused') return false;
    this.#recoverWait = undefined;
    this.#recoverListener = undefined;
    w.resolve(ch);
    return true;
  }

  /**
   * `migrate_cancel` on the source.
   * @returns false when the cancel came too late: the end of the stream is already with the
   *   peer (an exec child, a socket with no return path), so the migration ends as the peer
   *   decides; QEMU replies `{}` then too, the caller says why nothing happened.
   * @throws {QapiError} in postcopy (checkMigrateCancel).
   */
  cancel(): boolean {
    checkMigrateCancel(this.status);
    if (!isRunning(this.status) || !this.#outgoing) return true;
    if (!this.#outgoing.cancel()) return false;
    this.setStatus('cancelling');
    return true;
  }

  continue(state: MigrationStatus): void {
    checkMigrateContinue(state, this.status);
    this.#outgoing?.continue();
  }

  /**
   * `migrate-pause`. On a destination in postcopy-active or postcopy-recover (qmp_migrate_pause's
   * incoming part) the channel is shut: the load pauses as on a broken link, and a resume can follow.
   */
  pause(): void {
    checkMigratePause(this.status, this.incomingStatus);
    if (this.status === 'postcopy-active' || this.status === 'postcopy-recover') this.#outgoing?.pause?.();
    // In postcopy-recover too (QEMU 10.0 shuts the channel in both): a resume channel that
    // never speaks would otherwise keep the destination there, refusing migrate-recover.
    if (this.incomingStatus === 'postcopy-active' || this.incomingStatus === 'postcopy-recover')
      this.incomingShutdown?.();
  }

  /** Every check `migrate-recover` makes before it listens (`qmigrate check` calls it too). @throws {QapiError} */
  prepareRecover(args: { uri: string }): ParsedInput {
    checkMigrateRecover(this.incomingStatus);
    const parsed = parseMigrationInput({ uri: args.uri }, 'migrate-incoming', this.options.params.mode);
    checkTransport(parsed.main.addr, this.options.caps, this.options.params);
    checkIncomingSupport(parsed, this.#support());
    checkListenAddress(parsed.main.addr);
    return parsed;
  }

  /**
   * `migrate-recover URI` (qmp_migrate_recover): a paused postcopy destination listens on a
   * new address; the resuming source's connection continues the load.
   * @throws {QapiError} when not paused, or for the address (as migrate-incoming's checks).
   */
  async recover(args: { uri: string }): Promise<void> {
    const parsed = this.prepareRecover(args);
    // A second migrate-recover replaces the first listener (QEMU releases the old transport).
    this.#recoverListener?.cancel();
    this.#recoverListener = undefined;
    const run = await this.#engine.startIncoming(parsed, this, false);
    this.#recoverListener = run;
    // query-migrate reports the new listener's address, as QEMU does once it listens.
    this.#incoming = run;
  }

  startPostcopy(): void {
    checkStartPostcopy(this.options.caps, this.status);
    // QEMU only raises a flag: in any later state it is taken without a word.
    this.#outgoing?.startPostcopy?.();
  }

  setCapabilities(list: MigrationCapabilityStatus[]): void {
    this.options.setCapabilities(list, {
      status: this.status,
      runstate: this.#host.runstate(),
      incomingStarted: this.incomingStarted,
      host: { backgroundSnapshotKernel: false, postcopyUnsupported: undefined },
    });
  }

  /** `query-migrate`, with the members QEMU 10.0 fills in each state. */
  info(): MigrationInfo {
    const info: MigrationInfo = {};
    if (INCOMING_REPORTED.includes(this.incomingStatus)) {
      info.status = this.incomingStatus;
      const sa = this.#incoming?.socketAddress;
      if (sa?.length) info['socket-address'] = sa;
    }
    if (this.status !== 'none') {
      info.status = this.status;
      if (RAM_STATES.includes(this.status)) {
        const done = this.status === 'completed';
        info['total-time'] = done ? this.totalTime : Date.now() - this.startTime;
        info['setup-time'] = this.setupTime;
        // QEMU 10.0 reports downtime in every postcopy state too (0 until the migration ends;
        // populate_time_info: completed or migration_in_postcopy()).
        if (done || POSTCOPY_STATES.includes(this.status)) info.downtime = this.downtime;
        else info['expected-downtime'] = this.expectedDowntime;
        info.ram = { ...this.stats, ...(done ? { remaining: 0, 'dirty-pages-rate': 0 } : {}) };
      }
    }
    // The destination's blocktime, once completed (fill_destination_postcopy_migration_info).
    const bt = this.incomingStatus === 'completed' ? this.postcopyIncoming?.blocktime() : undefined;
    if (bt && this.status === 'none') {
      info['postcopy-blocktime'] = bt.total;
      info['postcopy-vcpu-blocktime'] = bt.vcpu;
    }
    if (this.error !== undefined) info['error-desc'] = this.error;
    return info;
  }
}
