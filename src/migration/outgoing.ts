/**
 * The source side of a precopy migration (migration/migration.c migration_thread,
 * migration_iteration_run, migration_completion): header, RAM setup, iterations of dirty
 * pages under the bandwidth limit until what is left fits in `downtime-limit`, then
 * stop-and-copy, device sections and the trailer; or, once migrate-start-postcopy asked for it,
 * postcopy (postcopy_start, the postcopy iterations with page requests served first, and
 * postcopy_pause / postcopy_do_resume when the link breaks). On failure or cancel before the
 * switchover the guest keeps running with its RAM untouched (the source never writes guest memory).
 */
import { type Duplex, Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { InternalError, QmigrateError } from '../errors.js';
import type { GuestRam, RamBlock } from '../machine/ram.js';
import { QapiError } from '../qapi/errors.js';
import type { RunState } from '../qapi/types.js';
import { strerror, systemError } from '../util/errno.js';
import type { GuestRunState, Migration, OutgoingRun } from './migration.js';
import { MultifdSender } from './multifd.js';
import { RAM_SAVE_FLAG_MULTIFD_FLUSH, RamSaver } from './ram.js';
import { encodeMultifdInit } from './stream/multifd-packet.js';
import { encodeAdvise, encodeCountedName, encodeRamDiscards, readRecvBitmap } from './stream/postcopy.js';
import { QemuFileReader, QemuFileWriter, StreamError } from './stream/qemu-file.js';
import { type PostcopyHandlers, readReturnPath } from './stream/return-path.js';
import {
  MIG_CMD_OPEN_RETURN_PATH,
  MIG_CMD_PACKAGED,
  MIG_CMD_PING,
  MIG_CMD_POSTCOPY_ADVISE,
  MIG_CMD_POSTCOPY_LISTEN,
  MIG_CMD_POSTCOPY_RAM_DISCARD,
  MIG_CMD_POSTCOPY_RESUME,
  MIG_CMD_POSTCOPY_RUN,
  MIG_CMD_RECV_BITMAP,
  MIG_CMD_SWITCHOVER_START,
  QEMU_VM_EOF,
  QEMU_VM_SECTION_END,
  QEMU_VM_SECTION_PART,
  QEMU_VM_SECTION_START,
  RAM_VERSION,
  SECTION_ID,
  writeCommand,
  writeFooter,
  writeGlobalState,
  writeHeader,
  writeSectionPart,
  writeSectionStart,
  writeTimer,
  writeTrailer,
} from './stream/savevm.js';
import { TimeSlice } from './time-slice.js';

/** QEMU's iteration budget and counter-update period. */
const MAX_WAIT_MS = 50;
const BUFFER_DELAY_MS = 100;
const FLUSH_BYTES = 1 << 20;
/** How long a resumed postcopy waits for each answer of the destination's handshake. */
const RESUME_HANDSHAKE_MS = 10_000;
const PAGE_SIZE = 4096;

export interface OutgoingTransport {
  /** The stream, once connected (socket connects may fail later, asynchronously). */
  stream: Promise<Writable | Duplex>;
  /** What QEMU calls it in I/O errors: socket, command or file. */
  kind: 'socket' | 'command' | 'file';
  /** Opens one more connection to the same address (multifd), for socket transports. */
  openChannel?: () => Promise<Duplex>;
  /** Whether the stream can carry a return path (sockets). */
  bidirectional: boolean;
  /** Resolves when the transport is finished (exec child exited), rejects on its failure. */
  finished?: Promise<void>;
  close(): void;
}

/** The user cancelled: thrown and caught inside run() only, which reports `cancelled`. */
class Cancelled extends QmigrateError {
  constructor() {
    super('MIGRATION_CANCELLED', 'migration was cancelled');
  }
}

/** The rate limit's current window: when it began, and the bytes handed over by then. */
interface RateWindow {
  start: number;
  bytes: number;
}

/** What the counters were at their last update (performance.now(), bytes written, pages sent). */
interface Counters {
  at: number;
  bytes: number;
  pages: number;
  /** Bytes per ms over the last period. */
  bandwidth: number;
}

export class OutgoingMigration implements OutgoingRun {
  readonly #m: Migration;
  readonly #ram: GuestRam;
  readonly #runstate: GuestRunState;
  #transport: OutgoingTransport;
  #cancelled = false;
  /** migrate-start-postcopy was given (QEMU's start_postcopy). */
  #postcopyRequested = false;
  /** The package with RUN is being handed over: the destination may run the guest from here on. */
  #switched = false;
  /**
   * When the switch to postcopy had handed its package over (Date.now()): the end of the
   * downtime, as QEMU's postcopy_start records it (migration_downtime_end); 0 in precopy.
   */
  #switchedAt = 0;
  /** Page requests of the destination not served yet, in order (src_page_requests). */
  #requests: { b: RamBlock; page: number; pages: number }[] = [];
  #lastReqBlock: RamBlock | undefined;
  /** Set while postcopy is paused: migrate with resume hands the new transport here. */
  #resume: ((t: OutgoingTransport) => void) | undefined;
  /** Ends the wait of a paused postcopy (the VM is going away). */
  #abortPause: (() => void) | undefined;
  /** Woken when the return path brought something a postcopy wait may be waiting for. */
  #progress: (() => void) | undefined;
  #bitmapsPending = 0;
  /** The return path ended as a connection does (EOF, reset), not on a bad message. */
  #rpIo = false;
  #ramSaver: RamSaver | undefined;
  /** The stream's end is in the kernel with no word from the peer to wait for: too late to cancel. */
  #committed = false;
  #continue: (() => void) | undefined;
  #wake: (() => void) | undefined;
  #rpError: Error | undefined;
  #shut: Promise<number> | undefined;
  #channels: Duplex[] = [];
  #multifd: MultifdSender | undefined;
  /** When stop-and-copy was done (Date.now()). */
  #doneAt = 0;
  /** The main channel's writer now (a recovery brings a new one), and what earlier ones wrote. */
  #file: QemuFileWriter | undefined;
  #writtenBefore = 0;
  /** The dirty-rate period: since when (performance.now(), from setup) and pages dirtied in it. */
  #dirtyPeriod = { since: 0, pages: 0 };
  /**
   * The run state the guest had when the migration stopped it for switchover (QEMU's
   * vm_old_state); undefined while the migration has not stopped it.
   */
  #vmOldState: RunState | undefined;

  constructor(m: Migration, ram: GuestRam, runstate: GuestRunState, transport: OutgoingTransport) {
    this.#m = m;
    this.#ram = ram;
    this.#runstate = runstate;
    this.#transport = transport;
  }

  /**
   * Stops the migration, unless the end of the stream has already been handed over (then the
   * destination may be running the guest, and the migration ends as its peer decides).
   * @returns false when it was too late to cancel.
   */
  cancel(): boolean {
    if (this.#committed) return false;
    this.#cancelled = true;
    this.#transport.close();
    for (const c of this.#channels) c.destroy();
    this.#wake?.();
    this.#continue?.();
    this.#progress?.();
    this.#abortPause?.();
    return true;
  }

  continue(): void {
    this.#continue?.();
  }

  /** migrate-start-postcopy: the switch happens at the next iteration, as in QEMU. */
  startPostcopy(): void {
    this.#postcopyRequested = true;
    this.#wake?.();
  }

  /**
   * migrate-pause in postcopy (qmp_migrate_pause): shuts the stream down, so the run goes to
   * postcopy-paused as for a broken link.
   */
  pause(): void {
    this.#transport.close();
    for (const c of this.#channels) c.destroy();
    this.#wake?.();
    this.#progress?.();
  }

  /**
   * migrate with resume: true, in postcopy-paused: the transport to the destination's new
   * address, for the recovery handshake.
   * @returns false when the run is not waiting for one.
   */
  resume(t: OutgoingTransport): boolean {
    if (!this.#resume) return false;
    this.#resume(t);
    return true;
  }

  /** Runs the migration to its end; never throws (the outcome is in the migration state). */
  async run(): Promise<void> {
    const m = this.#m;
    let stoppedAt = 0;
    try {
      const stream = await this.#transport.stream;
      if (this.#cancelled) throw new Cancelled();
      const f = new QemuFileWriter(stream);
      this.#file = f;
      const ram = new RamSaver(this.#ram, f, m.options.params['zero-page-detection']);
      this.#ramSaver = ram;
      if (m.options.caps.multifd) {
        // The extra connections go to the same address; each opens with its init packet.
        const open = this.#transport.openChannel;
        if (!open) throw new QapiError('Migration requires multi-channel URIs (e.g. tcp)');
        const n = m.options.params['multifd-channels'];
        // Each channel says who it is as soon as it is open, as QEMU's channel threads do: a
        // QEMU destination reads a TLS channel's init packet before it answers the next
        // channel's handshake.
        const chans = await Promise.all(
          Array.from({ length: n }, async (_, id) => {
            const c = await open();
            c.write(encodeMultifdInit({ id }));
            return c;
          }),
        );
        this.#channels = chans;
        ram.multifd = new MultifdSender(chans, m.options.params['zero-page-detection'] === 'multifd', true);
        this.#multifd = ram.multifd;
      }
      await this.#precopy(f, ram, (t) => {
        stoppedAt = t;
      });
      // Two millisecond clock readings, as QEMU takes them; both end where QEMU's do, once
      // stop-and-copy has handed its last byte over (and the return path said SHUT).
      // In postcopy the guest runs on the destination from the switch on: the downtime ends
      // there, not when the last page arrives.
      m.downtime = (this.#switchedAt || this.#doneAt) - stoppedAt;
      m.totalTime = this.#doneAt - m.startTime;
      this.#updateStats(f, ram);
      m.outgoingEnded();
      this.#runstate.set('postmigrate');
      m.setStatus('completed');
    } catch (caught) {
      // A return path that failed first is the cause; the writes it ended only followed it.
      const e = this.#rpError ?? caught;
      for (const b of this.#ram.blocks) b.logging = false;
      this.#transport.close();
      for (const c of this.#channels) c.destroy();
      m.outgoingEnded();
      // The guest goes on where it was; its RAM was only read. Only a guest the migration
      // stopped is put back, as it was then (migration_iteration_finish): a guest the user
      // paused meanwhile stays paused. QEMU's order: a cancelled migration resumes the guest
      // before it reports `cancelled`, a failed one after `failed`.
      const resume = () => {
        // Past the switchover the destination may run the guest: it stays stopped here.
        if (this.#switched) return;
        const old = this.#vmOldState;
        if (old === 'running') this.#runstate.start();
        else if (old !== undefined && this.#runstate.state === 'finish-migrate') this.#runstate.set(old);
      };
      if (this.#cancelled || e instanceof Cancelled) {
        resume();
        m.setStatus('cancelled');
      } else {
        m.error = this.#describe(e);
        m.setStatus('failed');
        resume();
      }
    }
  }

  /** QEMU's words for a failure, naming the transport for I/O errors. */
  #describe(e: unknown): string {
    if (e instanceof QapiError || e instanceof InternalError) return e.message;
    const code = (e as NodeJS.ErrnoException)?.code;
    if (code) return `Unable to write to ${this.#transport.kind}: ${strerror(e)}`;
    return (e as Error)?.message ?? String(e);
  }

  #check(): void {
    if (this.#cancelled) throw new Cancelled();
    if (this.#rpError) throw this.#rpError;
    this.#multifd?.check();
  }

  /**
   * The whole precopy on the main channel (migration_thread): setup, iterations until what
   * is left fits the downtime limit, then switchover and completion.
   * @param onStop receives the time (Date.now()) the guest was stopped.
   */
  async #precopy(f: QemuFileWriter, ram: RamSaver, onStop: (t: number) => void): Promise<void> {
    const slice = new TimeSlice();
    await this.#setup(f, ram);
    if (await this.#iterate(f, ram, slice)) {
      await this.#postcopyStart(f, ram, onStop);
      await this.#postcopy(f, ram, slice);
      return;
    }
    // Stop-and-copy.
    const runstateBefore = await this.#switchover(f, ram, onStop);
    await this.#completePrecopy(f, ram, slice, runstateBefore);
    await this.#complete(f, ram, slice);
  }

  /**
   * The stream's header, the return path's opening and the RAM section's setup: every page
   * dirty, the block list (qemu_savevm_state_header, qemu_savevm_state_setup). Ends in `active`.
   */
  async #setup(f: QemuFileWriter, ram: RamSaver): Promise<void> {
    const m = this.#m;
    const caps = m.options.caps;
    const returnPath = (caps['return-path'] || caps['postcopy-ram']) && this.#transport.bidirectional;
    const stream = await this.#transport.stream;
    writeHeader(f);
    if (returnPath) {
      writeCommand(f, MIG_CMD_OPEN_RETURN_PATH);
      const ping = Buffer.alloc(4);
      ping.writeUInt32BE(1);
      writeCommand(f, MIG_CMD_PING, ping);
      this.#shut = this.#readReturnPath(stream as Duplex);
      this.#shut.catch(() => {});
    }
    // Told early, so a destination that cannot do postcopy fails now (migration_thread).
    if (caps['postcopy-ram']) writeCommand(f, MIG_CMD_POSTCOPY_ADVISE, encodeAdvise(PAGE_SIZE, PAGE_SIZE));
    // Setup: every page dirty, the block list.
    writeSectionStart(f, QEMU_VM_SECTION_START, SECTION_ID.ram, 'ram', RAM_VERSION);
    ram.setup();
    this.#dirtyPeriod = { since: performance.now(), pages: 0 };
    m.pass(1);
    this.#multifdSync(f, ram);
    ram.eos();
    writeFooter(f, SECTION_ID.ram);
    await f.drain();
    this.#check();
    m.setupTime = Date.now() - m.startTime;
    this.#updateStats(f, ram);
    m.setStatus('active');
  }

  /**
   * Iterations (migration_iteration_run) while the guest runs: one RAM section part per turn
   * under the rate limit, until a finished pass leaves no more than the downtime limit allows,
   * or until migrate-start-postcopy asks for the switch.
   * @returns true for postcopy, false for stop-and-copy.
   */
  async #iterate(f: QemuFileWriter, ram: RamSaver, slice: TimeSlice): Promise<boolean> {
    const m = this.#m;
    // The rate limit counts bytes as they are queued (QEMU's does, into its QEMUFile);
    // bandwidth and progress count bytes the transport has passed on.
    const window: RateWindow = { start: performance.now(), bytes: this.#handed(f, ram) };
    const counters: Counters = {
      at: performance.now(),
      bytes: this.#written(f, ram),
      pages: 0,
      bandwidth: 0,
    };
    for (;;) {
      this.#check();
      if (this.#postcopyRequested) return true;
      // Read once per turn: migrate-set-parameters may replace them meanwhile.
      const params = m.options.params;
      const maxBw = Number(params['max-bandwidth']);
      const budget = maxBw > 0 ? (maxBw * BUFFER_DELAY_MS) / 1000 : Number.POSITIVE_INFINITY;
      const wait = this.#rateLimitWait(f, ram, window, budget);
      if (wait > 0) {
        // Rate limited: wait for the next window, as QEMU's migration thread does.
        await this.#sleep(wait);
        continue;
      }
      const allSent = await this.#iterateSection(f, ram, slice, window.bytes, budget);
      const t = performance.now();
      this.#updateCounters(f, ram, counters, t);
      if (this.#pendingFits(f, ram, params, counters.bandwidth, allSent)) return false;
    }
  }

  /**
   * The rate limit (migration_rate_limit): starts a new window every BUFFER_DELAY and says how
   * long to wait once the window's budget is spent.
   * @returns milliseconds to wait for the next window, or 0 when the budget allows more.
   */
  #rateLimitWait(f: QemuFileWriter, ram: RamSaver, window: RateWindow, budget: number): number {
    const now = performance.now();
    if (now - window.start >= BUFFER_DELAY_MS) {
      window.start = now;
      window.bytes = this.#handed(f, ram);
    }
    if (this.#handed(f, ram) - window.bytes < budget) return 0;
    return Math.max(1, BUFFER_DELAY_MS - (performance.now() - window.start));
  }

  /**
   * One RAM section part (qemu_savevm_state_iterate): dirty pages until the rate budget or
   * MAX_WAIT is spent, or the pass is done; then waits for its bytes to leave.
   * @param windowBytes bytes handed over when the rate window began.
   * @returns true when the pass is done (no dirty page left).
   */
  async #iterateSection(
    f: QemuFileWriter,
    ram: RamSaver,
    slice: TimeSlice,
    windowBytes: number,
    budget: number,
  ): Promise<boolean> {
    const chunkStart = performance.now();
    writeSectionPart(f, QEMU_VM_SECTION_PART, SECTION_ID.ram);
    // Double buffering: this chunk's pages are prepared while the previous chunk is still
    // draining into the transport, and written as soon as it has, so the destination is
    // never left waiting while the next batch is built.
    const allSent = await this.#fill(
      f,
      ram,
      slice,
      () => {
        const overBudget = this.#handed(f, ram) + f.pendingBytes - windowBytes >= budget;
        // The pass's last page is out: only the rate budget ends the section here, as QEMU's
        // loop checks it before looking for another page. A busy transport or the clock
        // would leave an empty section (18 bytes) to a timing the stream should not show.
        if (ram.dirtyPages === 0) return overBudget;
        if (f.pendingBytes >= FLUSH_BYTES || ram.multifd) {
          // The transport still busy with the last batch: end the chunk here and wait.
          if (f.busy || ram.multifd?.busy) return true;
          f.flush();
        }
        return overBudget || performance.now() - chunkStart >= MAX_WAIT_MS;
      },
      Number.isFinite(budget) ? 1 : 64,
    );
    if (allSent) this.#multifdSync(f, ram);
    ram.eos();
    writeFooter(f, SECTION_ID.ram);
    await f.drained();
    await ram.multifd?.drained();
    f.flush();
    // A pass is over when its bytes have left the process, not when they were queued: the
    // dirty log is read and convergence judged only then, so a peer that stops reading
    // holds the migration in `active`, with the guest running and the pass unfinished.
    if (allSent) await this.#settled(f, ram);
    await slice.maybeYield();
    this.#check();
    this.#updateStats(f, ram);
    return allSent;
  }

  /**
   * Bandwidth and pages per second over at least BUFFER_DELAY (migration_update_counters):
   * over the few ms between a burst and a pass's end the rate would come out several times
   * max-bandwidth, and the switchover would take far more than downtime-limit allows.
   */
  #updateCounters(f: QemuFileWriter, ram: RamSaver, counters: Counters, t: number): void {
    if (t - counters.at < BUFFER_DELAY_MS) return;
    const dt = t - counters.at;
    const written = this.#written(f, ram);
    if (dt > 0) counters.bandwidth = (written - counters.bytes) / dt;
    const pagesSent = ram.counters.normal + ram.counters.duplicate;
    this.#m.stats['pages-per-second'] = dt > 0 ? Math.round(((pagesSent - counters.pages) * 1000) / dt) : 0;
    counters.pages = pagesSent;
    counters.at = t;
    counters.bytes = written;
  }

  /**
   * The convergence check: updates the expected downtime and, at the end of a pass, syncs the
   * dirty log and judges whether what is left fits `downtime-limit` at the measured bandwidth.
   * @param bandwidth bytes per ms, as last measured.
   * @returns true when it is time for the switchover.
   */
  #pendingFits(
    f: QemuFileWriter,
    ram: RamSaver,
    params: Migration['options']['params'],
    bandwidth: number,
    allSent: boolean,
  ): boolean {
    const m = this.#m;
    const avail = Number(params['avail-switchover-bandwidth']);
    const bw = avail > 0 ? avail / 1000 : bandwidth;
    const threshold = bw * Number(params['downtime-limit']);
    // What stop-and-copy would still have to move: the dirty pages and whatever sits in
    // the process's write queues. As in QEMU it stays at downtime-limit until both a rate
    // and a dirtying guest have been measured (an idle guest keeps it there).
    if (bw > 0 && m.stats['dirty-pages-rate'] > 0) {
      m.expectedDowntime = Math.round((ram.remainingBytes + this.#queued(f, ram)) / bw);
    }
    // QEMU syncs as soon as the estimate drops below the threshold and may then stop the
    // guest with a pass half done, sending its rest in downtime. Finishing the pass first
    // costs no total time (those pages go out either way) and shortens the downtime.
    if (!allSent) return false;
    const added = ram.sync();
    m.pass(ram.counters.syncCount);
    this.#updateDirtyRate(added, performance.now());
    if (bw > 0 && ram.remainingBytes <= threshold) return true;
    return bw === 0 && ram.dirtyPages === 0;
  }

  /**
   * dirty-pages-rate as QEMU's migration_bitmap_sync computes it (migration/ram.c): the pages
   * newly dirtied since the last update over the time since then, updated once more than a
   * second has passed, so a pass that ends quickly does not divide its pages by milliseconds.
   * @param added pages the sync found newly dirty.
   * @param now performance.now() at the sync.
   */
  #updateDirtyRate(added: number, now: number): void {
    const period = this.#dirtyPeriod;
    period.pages += added;
    if (now <= period.since + 1000) return;
    this.#m.stats['dirty-pages-rate'] = Math.round((period.pages * 1000) / (now - period.since));
    period.since = now;
    period.pages = 0;
  }

  /**
   * Stops the guest for stop-and-copy (migration_stop_vm) and, with pause-before-switchover,
   * waits in `pre-switchover` for migrate-continue; ends in `device`.
   * @returns the run state the guest had before the migration stopped it.
   */
  async #switchover(f: QemuFileWriter, ram: RamSaver, onStop: (t: number) => void): Promise<RunState> {
    const m = this.#m;
    // What the passes queued goes out while the guest still runs: downtime is only what
    // stop-and-copy adds.
    await this.#settled(f, ram);
    this.#check();
    onStop(Date.now());
    // Read as the guest is stopped, as QEMU does: `stop`/`cont` may have come meanwhile.
    const runstateBefore = this.#runstate.state;
    this.#vmOldState = runstateBefore;
    this.#runstate.stop('finish-migrate');
    if (this.#runstate.state !== 'finish-migrate') this.#runstate.set('finish-migrate');
    if (m.options.caps['pause-before-switchover']) {
      // The guest is stopped before pre-switchover is announced, as QEMU 10.0 does: whoever
      // waits for that state (libvirt) relies on a paused guest.
      m.setStatus('pre-switchover');
      await new Promise<void>((r) => {
        this.#continue = r;
      });
      this.#continue = undefined;
      this.#check();
    }
    m.setStatus('device');
    return runstateBefore;
  }

  /**
   * The last dirty pages and the device sections with the guest stopped
   * (qemu_savevm_state_complete_precopy), all handed to the kernel but QEMU_VM_EOF.
   * @param runstateBefore the guest's run state before the switchover, for the global state.
   */
  async #completePrecopy(
    f: QemuFileWriter,
    ram: RamSaver,
    slice: TimeSlice,
    runstateBefore: RunState,
  ): Promise<void> {
    const m = this.#m;
    ram.completing = true;
    ram.sync();
    m.pass(ram.counters.syncCount);
    writeCommand(f, MIG_CMD_SWITCHOVER_START);
    writeSectionPart(f, QEMU_VM_SECTION_END, SECTION_ID.ram);
    // The last pages, in slices too: the monitors answer during downtime as well.
    const full = () => {
      if (f.pendingBytes < FLUSH_BYTES) return false;
      if (f.busy) return true;
      f.flush();
      return false;
    };
    while (!(await this.#fill(f, ram, slice, full))) {
      await f.drained();
      await ram.multifd?.drained();
      this.#check();
    }
    this.#multifdSync(f, ram);
    ram.eos();
    writeFooter(f, SECTION_ID.ram);
    writeTimer(f);
    writeGlobalState(f, runstateBefore === 'finish-migrate' ? 'running' : runstateBefore);
    ram.cleanup();
    await ram.multifd?.finish();
    await f.settled();
  }

  /**
   * QEMU_VM_EOF, then the end as the peer confirms it: the return path's SHUT
   * (close_return_path_on_source), or the stream's end in the kernel and the transport's end.
   * From there on a cancel is too late (see cancel()).
   */
  async #complete(f: QemuFileWriter, ram: RamSaver, slice: TimeSlice): Promise<void> {
    // Once QEMU_VM_EOF is out the destination may start the guest. A cancel that reached the
    // monitor before that must win: two turns of the event loop guarantee one poll of the
    // monitors' sockets after everything queued before them.
    await slice.yield();
    await slice.yield();
    this.#check();
    writeTrailer(f);
    if (this.#shut) {
      await f.drain();
      const code = await Promise.race([
        this.#shut,
        new Promise<number>((_, rej) => {
          // Woken by a cancel, or by the return path failing (then its error is the outcome).
          this.#wake = () => rej(this.#cancelled ? new Cancelled() : (this.#rpError ?? new Cancelled()));
        }),
      ]);
      if (code !== 0) throw new QapiError(`RP: Sibling indicated error ${code}`);
      this.#doneAt = Date.now();
      await f.end();
    } else {
      await f.settled();
      // The end of the stream is in the kernel: the peer (a socket's, a file, an exec child)
      // gets it whatever we do now, so a cancel could only resume a guest that is about to run
      // there too. QEMU's monitor is blocked until an exec child exits and then completes; we
      // wait for the child's exit too, and its failure fails the migration. (The return
      // path's SHUT, above, stays cancellable, as in QEMU.)
      this.#committed = true;
      this.#doneAt = Date.now();
      await f.end();
      await this.#transport.finished;
    }
    await ram.multifd?.end();
    this.#check();
    this.#updateStats(f, ram);
  }

  /**
   * Puts dirty pages into the current section until `enough()` says so or none is left, and
   * lets the event loop run whenever the time slice is spent. A pause for the event loop does
   * not end the section, so the stream's bytes are QEMU's however the work was cut.
   * @returns true when no dirty page is left.
   */
  async #fill(f: QemuFileWriter, ram: RamSaver, slice: TimeSlice, enough: () => boolean, every = 64) {
    for (;;) {
      let paused = false;
      const allSent = ram.sendPages(() => {
        if (enough()) return true;
        paused = slice.due;
        return paused;
      }, every);
      if (allSent || !paused) return allSent;
      // Keep the transport busy while the loop runs: hand over what is built, unless it
      // still holds the last batch.
      if (!f.busy) f.flush();
      await slice.yield();
      this.#check();
    }
  }

  // ---- postcopy ---------------------------------------------------------------------------

  /**
   * The switch to postcopy (postcopy_start): the guest stopped as for stop-and-copy, a last
   * bitmap sync, the discard list of every page still dirty, PING 2, the package (LISTEN, the
   * device sections, PING 3, RUN), PING 4; then `postcopy-active` under max-postcopy-bandwidth.
   */
  async #postcopyStart(f: QemuFileWriter, ram: RamSaver, onStop: (t: number) => void): Promise<void> {
    const m = this.#m;
    const runstateBefore = await this.#switchover(f, ram, onStop);
    ram.completing = true;
    ram.sync();
    m.pass(ram.counters.syncCount);
    writeCommand(f, MIG_CMD_SWITCHOVER_START);
    for (const { idstr, ranges } of ram.discardRanges()) {
      for (const d of encodeRamDiscards(idstr, ranges)) writeCommand(f, MIG_CMD_POSTCOPY_RAM_DISCARD, d);
    }
    writeCommand(f, MIG_CMD_PING, be32(2));
    const pkg = await postcopyPackage(runstateBefore === 'finish-migrate' ? 'running' : runstateBefore);
    this.#check();
    // The last point where a failure gives the guest back to the source (QEMU's too).
    this.#switched = true;
    writeCommand(f, MIG_CMD_PACKAGED, be32(pkg.length));
    f.bytes(pkg);
    this.#switchedAt = Date.now();
    writeCommand(f, MIG_CMD_PING, be32(4));
    f.flush();
    // The guest is stopped: nothing dirties its RAM any more.
    ram.cleanup();
    ram.completing = false;
    ram.postcopy = true;
    this.#updateStats(f, ram);
    m.setStatus('postcopy-active');
  }

  /**
   * The postcopy phase: the pages left, requested ones first, then the end of the stream; a
   * broken link pauses it until migrate with resume gives a new one (postcopy_pause).
   */
  async #postcopy(f: QemuFileWriter, ram: RamSaver, slice: TimeSlice): Promise<void> {
    let out = f;
    for (;;) {
      try {
        await this.#postcopyIterate(out, ram, slice);
        await this.#completePostcopy(out, ram);
        return;
      } catch (e) {
        if (this.#cancelled) throw e;
        // Past the switchover the source holds the only copy of the pages not yet sent: a
        // return path that broke or said something wrong pauses, as a broken link does, so a
        // resume can still finish (QEMU 10.0 records the error, stays postcopy-active and
        // pauses once the link goes). Only a failure of this side's own fails the run.
        const cause = this.#rpError ?? e;
        if (!this.#rpError && !this.#isIoFailure(e)) throw e;
        out = await this.#postcopyPause(ram, cause);
      }
    }
  }

  /** Whether `e` is a broken connection (what postcopy survives), not a protocol error. */
  #isIoFailure(e: unknown): boolean {
    if (e === this.#rpError) return this.#rpIo;
    return isConnectionError(e);
  }

  /**
   * Iterations in postcopy (migration_iteration_run in postcopy): one RAM section part per turn
   * under max-postcopy-bandwidth, requested pages first and without waiting for the rate limit
   * (QEMU's urgent requests), until no page is left.
   */
  async #postcopyIterate(f: QemuFileWriter, ram: RamSaver, slice: TimeSlice): Promise<void> {
    const window: RateWindow = { start: performance.now(), bytes: this.#handed(f, ram) };
    for (;;) {
      this.#check();
      if (ram.dirtyPages === 0) return;
      const maxBw = Number(this.#m.options.params['max-postcopy-bandwidth']);
      const budget = maxBw > 0 ? (maxBw * BUFFER_DELAY_MS) / 1000 : Number.POSITIVE_INFINITY;
      const wait = this.#rateLimitWait(f, ram, window, budget);
      if (wait > 0 && this.#requests.length === 0) {
        await this.#sleep(wait);
        continue;
      }
      const chunkStart = performance.now();
      writeSectionPart(f, QEMU_VM_SECTION_PART, SECTION_ID.ram);
      for (;;) {
        this.#serveRequests(ram);
        const allSent = await this.#fill(
          f,
          ram,
          slice,
          () => {
            if (this.#requests.length) return true;
            if (f.pendingBytes >= FLUSH_BYTES) {
              if (f.busy) return true;
              f.flush();
            }
            const over = this.#handed(f, ram) + f.pendingBytes - window.bytes >= budget;
            return over || performance.now() - chunkStart >= MAX_WAIT_MS;
          },
          Number.isFinite(budget) ? 1 : 64,
        );
        if (allSent || this.#requests.length === 0) break;
      }
      ram.eos();
      writeFooter(f, SECTION_ID.ram);
      await f.drained();
      f.flush();
      await slice.maybeYield();
      this.#check();
      this.#updateStats(f, ram);
    }
  }

  /** Sends every page the destination asked for and has not had yet (get_queued_page). */
  #serveRequests(ram: RamSaver): void {
    while (this.#requests.length) {
      const r = this.#requests.shift()!;
      for (let p = r.page; p < r.page + r.pages; p++) ram.sendRequested(r.b, p);
    }
  }

  /**
   * The end of a postcopy (migration_completion_postcopy): the RAM section's END with what is
   * left, QEMU_VM_EOF (no VM description after a postcopy), then the destination's SHUT.
   */
  async #completePostcopy(f: QemuFileWriter, ram: RamSaver): Promise<void> {
    writeSectionPart(f, QEMU_VM_SECTION_END, SECTION_ID.ram);
    this.#serveRequests(ram);
    ram.sendPages(() => false);
    ram.eos();
    writeFooter(f, SECTION_ID.ram);
    f.u8(QEMU_VM_EOF);
    await f.drain();
    const code = await Promise.race([
      this.#shut!,
      new Promise<number>((_, rej) => {
        this.#wake = () => rej(this.#rpError ?? systemErrorPaused());
      }),
    ]);
    if (code !== 0) throw new QapiError(`RP: Sibling indicated error ${code}`);
    this.#doneAt = Date.now();
    await f.end();
    this.#updateStats(f, ram);
  }

  /**
   * postcopy_pause: the link is gone; `postcopy-paused` with the guest stopped and every page
   * not known to be received kept, until migrate with resume brings a new connection and the
   * handshake over it succeeds (or fails: paused again).
   * @returns the writer of the new connection.
   */
  async #postcopyPause(ram: RamSaver, cause: unknown): Promise<QemuFileWriter> {
    const m = this.#m;
    for (let why = cause; ; ) {
      this.#transport.close();
      m.error = this.#describe(why);
      m.setStatus('postcopy-paused');
      const t = await new Promise<OutgoingTransport>((r, rej) => {
        this.#resume = r;
        this.#abortPause = () => rej(new Cancelled());
      });
      this.#resume = undefined;
      this.#abortPause = undefined;
      try {
        return await this.#postcopyRecover(t, ram);
      } catch (e) {
        if (this.#cancelled) throw new Cancelled();
        why = this.#rpError ?? e;
      }
    }
  }

  /**
   * The recovery handshake on a new connection (postcopy_do_resume): RECV_BITMAP for every
   * block, each answered by the destination's received bitmap, from which the pages to send
   * are rebuilt; then POSTCOPY_RESUME, answered by RESUME_ACK, back to `postcopy-active`.
   * Each answer is awaited at most RESUME_HANDSHAKE_MS.
   * @throws {QapiError} when the destination does not answer in time, or answers wrongly.
   */
  async #postcopyRecover(t: OutgoingTransport, ram: RamSaver): Promise<QemuFileWriter> {
    const m = this.#m;
    this.#transport = t;
    this.#rpError = undefined;
    this.#rpIo = false;
    const stream = await t.stream;
    m.setStatus('postcopy-recover');
    const f = new QemuFileWriter(stream);
    // transferred counts every connection, as QEMU's mig_stats do across a recovery.
    this.#writtenBefore += this.#file?.written ?? 0;
    this.#file = f;
    ram.setFile(f);
    this.#shut = this.#readReturnPath(stream as Duplex);
    this.#shut.catch(() => {});
    const blocks = this.#ram.blocks;
    this.#bitmapsPending = blocks.length;
    for (const b of blocks) writeCommand(f, MIG_CMD_RECV_BITMAP, encodeCountedName(b.idstr));
    f.flush();
    await this.#handshakeWait(() => this.#bitmapsPending === 0, 'its received bitmaps (RECV_BITMAP)');
    writeCommand(f, MIG_CMD_POSTCOPY_RESUME);
    f.flush();
    await this.#handshakeWait(() => m.status === 'postcopy-active', 'RESUME_ACK');
    m.error = undefined;
    ram.restart();
    return f;
  }

  /** Waits until `done()`, at most RESUME_HANDSHAKE_MS; the return path's failure ends it too. */
  async #handshakeWait(done: () => boolean, what: string): Promise<void> {
    const deadline = performance.now() + RESUME_HANDSHAKE_MS;
    while (!done()) {
      if (this.#rpError) throw this.#rpError;
      const left = deadline - performance.now();
      if (left <= 0) {
        throw new QapiError(
          `Postcopy recovery failed: the destination did not send ${what} within ${RESUME_HANDSHAKE_MS / 1000} s`,
        );
      }
      await Promise.race([
        sleep(left),
        new Promise<void>((r) => {
          this.#progress = r;
        }),
      ]);
      this.#progress = undefined;
    }
  }

  /** What the return path's postcopy messages do to this run. */
  #postcopyHandlers(): PostcopyHandlers {
    return {
      reqPages: (idstr, start, len) => {
        this.#m.stats['postcopy-requests'] = Number(this.#m.stats['postcopy-requests']) + 1;
        let b: RamBlock | undefined;
        if (idstr === undefined) {
          b = this.#lastReqBlock;
          if (!b) throw new QapiError('MIG_RP_MSG_REQ_PAGES has no previous block');
        } else {
          b = this.#ram.block(idstr);
          if (!b) throw new QapiError(`MIG_RP_MSG_REQ_PAGES has no block '${idstr}'`);
          this.#lastReqBlock = b;
        }
        const last = start + len - 1;
        if (last < 0 || last >= b.length) {
          const hex = (v: number) => v.toString(16);
          throw new QapiError(
            `MIG_RP_MSG_REQ_PAGES request overrun, start=${hex(start)} len=${hex(len)} blocklen=${hex(b.length)}`,
          );
        }
        this.#requests.push({ b, page: start / PAGE_SIZE, pages: len / PAGE_SIZE });
        this.#wake?.();
      },
      recvBitmap: async (idstr, r) => {
        const b = this.#ram.block(idstr);
        if (!b) throw new QapiError(`MIG_RP_MSG_RECV_BITMAP has invalid block name '${idstr}'`);
        if (this.#m.status !== 'postcopy-recover')
          throw new QapiError(`Reload bitmap in incorrect state ${this.#m.status}`);
        const received = await readRecvBitmap(r, idstr, b.pages);
        this.#ramSaver?.reloadFromReceived(idstr, received);
        this.#bitmapsPending--;
        this.#progress?.();
      },
      resumeAck: () => {
        if (this.#m.status === 'postcopy-recover') this.#m.setStatus('postcopy-active');
        this.#progress?.();
      },
    };
  }

  /** Waits until every channel has passed all it was given to the kernel. */
  async #settled(f: QemuFileWriter, ram: RamSaver): Promise<void> {
    await f.settled();
    await ram.multifd?.settled();
  }

  /** Bytes handed to the transports (what the rate limit counts). */
  #handed(f: QemuFileWriter, ram: RamSaver): number {
    return f.transferred + (ram.multifd?.bytes ?? 0);
  }

  /** Bytes the transports have passed on to the kernel, on every channel and connection. */
  #written(f: QemuFileWriter, ram: RamSaver): number {
    return this.#writtenBefore + (this.#file ?? f).written + (ram.multifd?.written ?? 0);
  }

  /** Bytes produced but still in the process: built, or in a write queue. */
  #queued(f: QemuFileWriter, ram: RamSaver): number {
    return f.pendingBytes + f.queuedBytes + (ram.multifd?.queuedBytes ?? 0);
  }

  /** A multifd sync point: SYNC on every channel, then MULTIFD_FLUSH on the main one. */
  #multifdSync(f: QemuFileWriter, ram: RamSaver): void {
    if (!ram.multifd) return;
    ram.multifd.sync();
    f.be64(RAM_SAVE_FLAG_MULTIFD_FLUSH);
  }

  #updateStats(f: QemuFileWriter, ram: RamSaver): void {
    const s = this.#m.stats;
    const mf = ram.multifd;
    s.transferred = this.#written(f, ram);
    s['multifd-bytes'] = mf?.bytes ?? 0;
    s.total = ram.total;
    s.remaining = ram.remainingBytes;
    s.normal = ram.counters.normal + (mf?.normal ?? 0);
    s.duplicate = ram.counters.duplicate + (mf?.zero ?? 0);
    s['normal-bytes'] = s.normal * 4096;
    s['dirty-sync-count'] = ram.counters.syncCount;
    s['precopy-bytes'] = ram.counters.precopyBytes;
    s['downtime-bytes'] = ram.counters.downtimeBytes;
    s['postcopy-bytes'] = ram.counters.postcopyBytes;
    const elapsed = Date.now() - this.#m.startTime - this.#m.setupTime;
    s.mbps = elapsed > 0 ? (Number(s.transferred) * 8) / elapsed / 1000 : 0;
  }

  async #sleep(ms: number): Promise<void> {
    await Promise.race([
      sleep(ms),
      new Promise<void>((r) => {
        this.#wake = r;
      }),
    ]);
    this.#wake = undefined;
  }

  /** Reads the destination's messages; resolves with SHUT's value. */
  async #readReturnPath(stream: Duplex): Promise<number> {
    const r = new QemuFileReader(stream, 1 << 16);
    try {
      return await readReturnPath(
        r,
        this.#m.options.caps['postcopy-ram'] ? this.#postcopyHandlers() : undefined,
      );
    } catch (e) {
      this.#rpIo = isConnectionError(e);
      const err =
        e instanceof QapiError
          ? e
          : new QapiError('return path closed before the destination confirmed the end of the migration');
      this.#rpError = err;
      this.#wake?.();
      this.#progress?.();
      // The stream's writes may be blocked on a peer that reads nothing any more: end them,
      // so the failure is this one now, not whenever the kernel gives up (QEMU 10.0 records
      // the error and stays `active` while its write blocks).
      if (!this.#committed && !this.#cancelled) {
        this.#transport.close();
        for (const c of this.#channels) c.destroy();
      }
      throw err;
    }
  }
}

/** A stream that ended or failed (EOF, reset, EPIPE), as opposed to a peer saying something wrong. */
function isConnectionError(e: unknown): boolean {
  if (e instanceof StreamError) return true;
  if (e instanceof QmigrateError) return false;
  return typeof (e as NodeJS.ErrnoException)?.code === 'string';
}

function be32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v);
  return b;
}

/** The error a postcopy wait ends with when migrate-pause shut the stream down. */
function systemErrorPaused(): NodeJS.ErrnoException {
  return systemError('ESHUTDOWN', 'write', { message: 'Channel was shut down (migrate-pause)' });
}

/**
 * The package of postcopy_start, as bytes: LISTEN, the device sections (`timer`,
 * `globalstate` with the run state the guest had), PING 3, RUN.
 */
async function postcopyPackage(runstate: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  const sink = new Writable({
    write(c: Buffer, _enc, cb) {
      chunks.push(Buffer.from(c));
      cb();
    },
  });
  const f = new QemuFileWriter(sink);
  writeCommand(f, MIG_CMD_POSTCOPY_LISTEN);
  writeTimer(f);
  writeGlobalState(f, runstate);
  writeCommand(f, MIG_CMD_PING, be32(3));
  writeCommand(f, MIG_CMD_POSTCOPY_RUN);
  await f.settled();
  return Buffer.concat(chunks);
}
