/**
 * The destination side (migration/migration.c process_incoming_migration_co,
 * migration/savevm.c qemu_loadvm_state): read the stream as hostile input, apply it to guest
 * RAM, answer the return path, and only then start the guest as the source's run state says.
 * Any error ends the incoming migration `failed` with what and where; the guest never runs
 * from a partial stream (and by default, as QEMU, the process exits).
 */
import type { Readable, Writable } from 'node:stream';
import type { GuestRam } from '../machine/ram.js';
import type { RunState } from '../qapi/types.js';
import { strerror } from '../util/errno.js';
import type { GuestRunState, Migration } from './migration.js';
import { RamLoader } from './ram.js';
import { QemuFileReader, StreamError } from './stream/qemu-file.js';
import {
  GLOBALSTATE_VERSION,
  MIG_CMD_OPEN_RETURN_PATH,
  MIG_CMD_PING,
  MIG_CMD_POSTCOPY_ADVISE,
  MIG_CMD_SWITCHOVER_START,
  MIG_RP_MSG_PONG,
  MIG_RP_MSG_SHUT,
  QEMU_VM_COMMAND,
  QEMU_VM_EOF,
  QEMU_VM_SECTION_END,
  QEMU_VM_SECTION_FULL,
  QEMU_VM_SECTION_PART,
  QEMU_VM_SECTION_START,
  QEMU_VM_VMDESCRIPTION,
  RAM_VERSION,
  readFooter,
  readGlobalState,
  readHeader,
  readTimer,
  TIMER_VERSION,
} from './stream/savevm.js';

const LOCAL_VERSIONS: Record<string, number> = {
  ram: RAM_VERSION,
  timer: TIMER_VERSION,
  globalstate: GLOBALSTATE_VERSION,
};

/** savevm.c mig_cmd_args: each command's name and payload length (-1: any). */
const MIG_CMD_ARGS: readonly { name: string; len: number }[] = [
  { name: 'INVALID', len: -1 },
  { name: 'OPEN_RETURN_PATH', len: 0 },
  { name: 'PING', len: 4 },
  { name: 'POSTCOPY_ADVISE', len: -1 },
  { name: 'POSTCOPY_LISTEN', len: 0 },
  { name: 'POSTCOPY_RUN', len: 0 },
  { name: 'POSTCOPY_RAM_DISCARD', len: -1 },
  { name: 'PACKAGED', len: 4 },
  { name: 'ENABLE_COLO', len: -1 },
  { name: 'POSTCOPY_RESUME', len: 0 },
  { name: 'RECV_BITMAP', len: -1 },
  { name: 'SWITCHOVER_START', len: 0 },
];

/**
 * Run states an incoming migration can leave the guest in: QEMU 10.0's transitions from
 * `inmigrate` (system/runstate.c), `inmigrate` itself (kept as is), and the live states
 * `running`/`suspended`, which autostart turns into a start or `paused`. On any other
 * (debug, save-vm, restore-vm) QEMU aborts once the whole stream is loaded.
 */
const FINAL_STATES: readonly RunState[] = [
  'inmigrate',
  'running',
  'suspended',
  'internal-error',
  'io-error',
  'paused',
  'shutdown',
  'watchdog',
  'guest-panicked',
  'finish-migrate',
  'prelaunch',
  'postmigrate',
  'colo',
];

/**
 * Return-path bytes that may wait in the socket's queue. Past this the loader stops reading
 * the stream until the source takes its replies, as QEMU's blocking write stops it: a source
 * that pings and never reads then meets back-pressure, not a destination that grows.
 */
export const RP_QUEUE_MAX = 256 << 10;

export interface LoadResult {
  /** The run state the source sent in `globalstate`, if it did. */
  runstate?: RunState;
  /** The source's guest was suspended (globalstate's vm_was_suspended). */
  suspended?: boolean;
}

/** Resolves once `w` has room again (or can never have: closed, failed). */
function drained(w: Writable): Promise<void> {
  if (w.writableLength <= RP_QUEUE_MAX || w.destroyed || w.writableFinished) return Promise.resolve();
  return new Promise((res) => {
    const done = () => {
      w.off('drain', done);
      w.off('close', done);
      w.off('error', done);
      res();
    };
    w.on('drain', done);
    w.on('close', done);
    w.on('error', done);
  });
}

/** What one load keeps from section to section (part of QEMU's MigrationIncomingState). */
interface LoadState {
  r: QemuFileReader;
  loader: RamLoader;
  /** Where return-path messages go, if the transport has a way back. */
  rp: Writable | undefined;
  /** The iterative sections announced so far, by section id. */
  sections: Map<number, string>;
  result: LoadResult;
  /** OPEN_RETURN_PATH came (QEMU opens one on any transport; writes to none fail quietly). */
  rpOpen: boolean;
  /** The section being read, to name it in errors raised below it. */
  current: string | undefined;
}

/**
 * Reads a whole migration stream into `ram` (qemu_loadvm_state_main): one section, command
 * or the end at a time.
 * @param rp where return-path messages go (the socket's write side), if bidirectional.
 * @throws {StreamError} saying what is wrong and at which byte.
 */
export async function loadVmState(
  r: QemuFileReader,
  ram: GuestRam,
  rp: Writable | undefined,
  onFlush?: () => Promise<void>,
): Promise<LoadResult> {
  await readHeader(r, []);
  const loader = new RamLoader(ram);
  loader.onFlush = onFlush;
  const s: LoadState = { r, loader, rp, sections: new Map(), result: {}, rpOpen: false, current: undefined };
  try {
    for (;;) {
      s.current = undefined;
      await r.need(1, 'the next section');
      const at = r.offset;
      const type = r.u8();
      switch (type) {
        case QEMU_VM_SECTION_START:
        case QEMU_VM_SECTION_FULL:
          await loadSectionStartFull(s, type, at);
          break;
        case QEMU_VM_SECTION_PART:
        case QEMU_VM_SECTION_END:
          await loadSectionPartEnd(s, at);
          break;
        case QEMU_VM_COMMAND:
          await processCommand(s, at);
          break;
        case QEMU_VM_EOF:
          await skipVmDescription(r);
          if (s.rpOpen) sendRp(s, MIG_RP_MSG_SHUT, 0);
          return s.result;
        default:
          throw new StreamError(`Unknown savevm section type ${type}`, at);
      }
    }
  } catch (e) {
    if (e instanceof StreamError && e.section === undefined) e.section = s.current;
    if (s.rpOpen) sendRp(s, MIG_RP_MSG_SHUT, 1);
    throw e;
  }
}

/** Sends a return-path message with a 32-bit value, unless there is no way back (any more). */
function sendRp(s: LoadState, type: number, value: number): void {
  const rp = s.rp;
  if (!rp || rp.destroyed || rp.writableEnded) return;
  const b = Buffer.alloc(8);
  b.writeUInt16BE(type, 0);
  b.writeUInt16BE(4, 2);
  b.writeUInt32BE(value, 4);
  rp.write(b);
}

/**
 * QEMU_VM_SECTION_START or _FULL (qemu_loadvm_section_start_full): the section's header, then
 * RAM's first part or a device's whole state, then the footer.
 */
async function loadSectionStartFull(s: LoadState, type: number, at: number): Promise<void> {
  const r = s.r;
  await r.need(4, 'a section header');
  const id = r.be32();
  const idstr = await r.cstr('a section name');
  await r.need(8, 'a section header');
  const instance = r.be32();
  const version = r.be32();
  const local = LOCAL_VERSIONS[idstr];
  if (local === undefined || instance !== 0) {
    throw new StreamError(
      `Unknown savevm section or instance '${idstr}' ${instance}: this guest has only ram, timer and globalstate`,
      at,
    );
  }
  if (version > local)
    throw new StreamError(`savevm: unsupported version ${version} for '${idstr}' v${local}`, at, idstr);
  s.current = idstr;
  if (idstr === 'ram') {
    if (type !== QEMU_VM_SECTION_START) throw new StreamError('ram sent as a FULL section', at, 'ram');
    // ram_load takes version 4 only.
    if (version !== RAM_VERSION)
      throw new StreamError(`ram: unsupported version ${version} (only ${RAM_VERSION})`, at, 'ram');
    // One id per section, the last START's (QEMU's load_section_id): an older one is unknown.
    for (const [old, name] of s.sections) if (name === idstr) s.sections.delete(old);
    s.sections.set(id, idstr);
    await s.loader.loadChunk(r);
  } else if (type !== QEMU_VM_SECTION_FULL) {
    throw new StreamError(`${idstr} sent as an iterative section`, at, idstr);
  } else if (idstr === 'timer') await readTimer(r, version);
  else {
    const gs = await readGlobalState(r, version);
    if (!FINAL_STATES.includes(gs.runstate)) {
      throw new StreamError(
        `invalid runstate transition: 'inmigrate' -> '${gs.runstate}'`,
        r.offset - 100,
        'globalstate',
      );
    }
    s.result.runstate = gs.runstate;
    s.result.suspended = gs.suspended;
  }
  await readFooter(r, id, idstr);
}

/** QEMU_VM_SECTION_PART or _END (qemu_loadvm_section_part_end): more of an announced section. */
async function loadSectionPartEnd(s: LoadState, at: number): Promise<void> {
  const r = s.r;
  await r.need(4, 'a section header');
  const id = r.be32();
  const idstr = s.sections.get(id);
  if (idstr === undefined) throw new StreamError(`Unknown savevm section ${id}`, at);
  s.current = idstr;
  await s.loader.loadChunk(r);
  await readFooter(r, id, idstr);
}

/** QEMU_VM_COMMAND (loadvm_process_command): the few commands a precopy of RAM carries. */
async function processCommand(s: LoadState, at: number): Promise<void> {
  const { r, rp } = s;
  await r.need(4, 'a command');
  const cmd = r.be16();
  const len = r.be16();
  // Checked before the payload is waited for, as loadvm_process_command does.
  const args = MIG_CMD_ARGS[cmd];
  if (cmd === 0 || !args)
    throw new StreamError(`MIG_CMD 0x${cmd.toString(16)} unknown (len 0x${len.toString(16)})`, at);
  if (args.len !== -1 && args.len !== len) {
    throw new StreamError(`${args.name} received with bad length - expecting ${args.len}, got ${len}`, at);
  }
  if (cmd === MIG_CMD_OPEN_RETURN_PATH) s.rpOpen = true;
  else if (cmd === MIG_CMD_PING) {
    await r.need(4, 'a command');
    const value = r.be32();
    if (!s.rpOpen) {
      throw new StreamError(`CMD_PING (0x${value.toString(16)}) received with no return path`, at);
    }
    sendRp(s, MIG_RP_MSG_PONG, value);
    // The source must take its replies before we read on (see RP_QUEUE_MAX).
    if (rp && rp.writableLength > RP_QUEUE_MAX) await drained(rp);
  } else if (cmd === MIG_CMD_SWITCHOVER_START) {
    // Nothing to prepare for a guest without devices.
  } else if (cmd === MIG_CMD_POSTCOPY_ADVISE) {
    throw new StreamError('the source enabled postcopy, which qmigrate does not support', at);
  } else {
    throw new StreamError(`migration command ${args.name} (length ${len}) is not supported here`, at);
  }
}

/**
 * After QEMU_VM_EOF: a VM description may follow (QEMU reads any length and ignores it); a
 * source may also just end the stream here. The guest's state is complete at EOF: a
 * description cut short (the stream ended or failed inside it) does not fail the load, as
 * QEMU 10.0's short read there does not (qemu_loadvm_state reads it after the load's result).
 */
async function skipVmDescription(r: QemuFileReader): Promise<void> {
  if ((await r.atEnd()) || r.peekU8() !== QEMU_VM_VMDESCRIPTION) return;
  r.u8();
  try {
    await r.need(4, 'the VM description');
    let left = r.be32();
    while (left > 0) {
      // In pieces: the length is the peer's, and nothing is kept.
      const n = Math.min(left, 1 << 20);
      await r.need(n, 'the VM description');
      r.skip(n);
      left -= n;
    }
  } catch {
    // Cut short: nothing of the guest's state is missing.
  }
}

/**
 * What the destination becomes after a complete load (process_incoming_migration_bh): a live
 * run state starts the guest if autostart says so (suspended, if it was), else `paused`; any
 * other state is taken as it is.
 */
export function finishIncoming(runstate: GuestRunState, received: LoadResult): void {
  const state = received.runstate ?? 'running';
  if (state === 'running' || state === 'suspended') {
    if (!runstate.autostart) runstate.set('paused');
    else if (received.suspended) runstate.set('suspended');
    else runstate.start();
  } else {
    runstate.set(state);
  }
}

/**
 * One incoming migration's main channel: load, then start the guest or report failure.
 * `opts.onEnd` runs once the load has ended either way (the channel is no longer read).
 */
export async function runIncoming(
  m: Migration,
  ram: GuestRam,
  runstate: GuestRunState,
  input: Readable,
  rp: Writable | undefined,
  onDone: (error?: string) => void,
  opts: { reader?: QemuFileReader; onFlush?: () => Promise<void>; onEnd?: () => void } = {},
): Promise<void> {
  m.setIncomingStatus('active');
  const r = opts.reader ?? new QemuFileReader(input);
  try {
    const result = await loadVmState(r, ram, rp, opts.onFlush);
    rp?.end();
    m.incomingEnded();
    finishIncoming(runstate, result);
    m.setIncomingStatus('completed');
    onDone();
  } catch (e) {
    // A read error of the channel in glibc's words, as QEMU's `load of migration failed:
    // <strerror>` has them, never Node's ("EISDIR: illegal operation on a directory, read").
    const what =
      e instanceof StreamError
        ? `${e.message} (at byte ${e.offset}${e.section ? `, section '${e.section}'` : ''})`
        : strerror(e);
    m.error = `load of migration failed: ${what}`;
    m.incomingEnded();
    input.destroy();
    m.setIncomingStatus('failed');
    onDone(m.error);
  } finally {
    opts.onEnd?.();
  }
}
