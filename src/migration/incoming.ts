/**
 * The destination side (migration/migration.c process_incoming_migration_co,
 * migration/savevm.c qemu_loadvm_state): read the stream as hostile input, apply it to guest
 * RAM, answer the return path, and only then start the guest as the source's run state says.
 * Any error ends the incoming migration `failed` with what and where; the guest never runs
 * from a partial stream (and by default, as QEMU, the process exits). Postcopy
 * (savevm.c loadvm_postcopy_handle_*, postcopy_ram_listen_thread): the guest runs from
 * POSTCOPY_RUN on while the rest of RAM streams in; an error after that pauses the migration
 * (`postcopy-paused`) until a resumed source comes, as QEMU's postcopy_pause_incoming.
 */
import type { Readable, Writable } from 'node:stream';
import type { GuestRam } from '../machine/ram.js';
import { TARGET_PAGE_SIZE } from '../machine/ram.js';
import { genericError } from '../qapi/errors.js';
import type { MigrationStatus, RunState } from '../qapi/types.js';
import { strerror } from '../util/errno.js';
import type { GuestRunState, Migration } from './migration.js';
import { encodeRecvBitmap, PostcopyIncoming, PostcopyState } from './postcopy-ram.js';
import { RamLoader } from './ram.js';
import { QemuFileReader, StreamError } from './stream/qemu-file.js';
import {
  GLOBALSTATE_VERSION,
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
  MIG_RP_MSG_PONG,
  MIG_RP_MSG_RESUME_ACK,
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

/**
 * The largest PACKAGED payload taken. QEMU 10.0's destination takes any 32-bit length and
 * allocates it; a `-machine none` guest's device state is a few hundred bytes, so a peer's
 * length past this is refused before anything is allocated.
 */
export const PACKAGED_MAX = 16 << 20;

/** A new channel of a resumed postcopy (after migrate-recover). */
export interface ResumedChannel {
  reader: QemuFileReader;
  rp: Writable | undefined;
}

/** What a postcopy destination asks of the migration around the load. */
export interface PostcopyHooks {
  /** Capability postcopy-ram is on here. */
  postcopyRam: boolean;
  /** Capability postcopy-blocktime is on here. */
  blocktime: boolean;
  /** The incoming status (RESUME and RECV_BITMAP are for `postcopy-recover` only). */
  status(): MigrationStatus;
  /** LISTEN: the rest of the stream loads while the guest runs (`postcopy-active`). */
  listen(): void;
  /** RUN: the guest starts as autostart and the source's run state say. */
  run(result: LoadResult): void;
  /**
   * The stream failed after RUN: `postcopy-paused` until a resumed source's channel comes.
   * @throws when the migration is given up (the VM goes away).
   */
  pause(e: unknown): Promise<ResumedChannel>;
  /** RESUME came: `postcopy-active` again. */
  resumed(): void;
  /** A line for stderr (QEMU's error_report of what does not fail the load). */
  warn(line: string): void;
  /** ADVISE came: the postcopy state of this load (for blocktime, and to be resumed). */
  advised(pc: PostcopyIncoming): void;
}

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
  ram: GuestRam;
  hooks: PostcopyHooks | undefined;
  /** The destination's postcopy state, from ADVISE on. */
  pc: PostcopyIncoming | undefined;
  /** Reading a PACKAGED payload. */
  nested: boolean;
}

/** How a run of sections ended: EOF, or RUN (QEMU's LOADVM_QUIT). */
type LoadEnd = 'eof' | 'quit';

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
  hooks?: PostcopyHooks,
): Promise<LoadResult> {
  await readHeader(r, []);
  const loader = new RamLoader(ram);
  loader.onFlush = onFlush;
  const s: LoadState = {
    r,
    loader,
    rp,
    sections: new Map(),
    result: {},
    rpOpen: false,
    current: undefined,
    ram,
    hooks,
    pc: undefined,
    nested: false,
  };
  for (;;) {
    try {
      // RUN ends QEMU's main load; its listen thread reads on. Here one loop does both.
      if ((await loadSections(s)) === 'quit') continue;
      // A postcopy source sends no VM description and keeps the link open until SHUT: QEMU's
      // listen thread reads nothing after EOF.
      if (s.pc && s.pc.state !== PostcopyState.ADVISE) endPostcopy(s);
      else {
        // postcopy-ram on, but the precopy completed before any switch (only ADVISE came):
        // an ordinary end, as QEMU's process_incoming_migration_co takes it.
        s.pc?.untrack();
        await skipVmDescription(s.r);
      }
      if (s.rpOpen) sendRp(s, MIG_RP_MSG_SHUT, 0);
      return s.result;
    } catch (e) {
      if (e instanceof StreamError && e.section === undefined) e.section = s.current;
      if (s.pc?.state === PostcopyState.RUNNING && s.hooks) {
        // The guest runs with what it has: wait for a resumed source instead of failing.
        s.pc.setReturnPath(undefined);
        const ch = await s.hooks.pause(e);
        s.r = ch.reader;
        s.rp = ch.rp;
        s.rpOpen = true;
        s.pc.setReturnPath(ch.rp);
        continue;
      }
      if (s.rpOpen) sendRp(s, MIG_RP_MSG_SHUT, 1);
      throw e;
    }
  }
}

/**
 * EOF in postcopy: the guest must have every page by now. QEMU unregisters userfaultfd and
 * a page never sent reads as zeros; here that is an error (the load pauses, the guest keeps
 * waiting for the page), so a guest never runs on a page the stream did not bring.
 */
function endPostcopy(s: LoadState): void {
  const pc = s.pc!;
  if (pc.state !== PostcopyState.RUNNING) {
    throw new StreamError(
      `the stream ended in postcopy state ${pc.state} (before POSTCOPY_RUN): the guest never ran`,
      s.r.offset,
    );
  }
  const missing = s.ram.blocks.reduce((n, b) => n + b.missingPages, 0);
  if (missing > 0)
    throw new StreamError(`the postcopy stream ended with ${missing} pages never sent`, s.r.offset);
  pc.state = PostcopyState.END;
  pc.untrack();
}

/** Sections and commands until EOF or RUN (qemu_loadvm_state_main). */
async function loadSections(s: LoadState): Promise<LoadEnd> {
  for (;;) {
    const r = s.r;
    s.current = undefined;
    // A package ends where its bytes do (QEMU's buffer reads as EOF there).
    if (s.nested && (await r.atEnd())) return 'eof';
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
        if ((await processCommand(s, at)) === 'quit') return 'quit';
        break;
      case QEMU_VM_EOF:
        return 'eof';
      default:
        throw new StreamError(`Unknown savevm section type ${type}`, at);
    }
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

/** QEMU_VM_COMMAND (loadvm_process_command): precopy's few commands and postcopy's. */
async function processCommand(s: LoadState, at: number): Promise<LoadEnd | undefined> {
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
  } else if (cmd === MIG_CMD_POSTCOPY_ADVISE) await postcopyAdvise(s, len, at);
  else if (cmd === MIG_CMD_POSTCOPY_RAM_DISCARD) await postcopyDiscard(s, len, at);
  else if (cmd === MIG_CMD_POSTCOPY_LISTEN) {
    const ps = s.pc?.state ?? PostcopyState.NONE;
    if (ps !== PostcopyState.ADVISE && ps !== PostcopyState.DISCARD)
      throw new StreamError(`CMD_POSTCOPY_LISTEN in wrong postcopy state (${ps})`, at);
    s.pc!.state = PostcopyState.LISTENING;
    s.hooks?.listen();
  } else if (cmd === MIG_CMD_POSTCOPY_RUN) {
    const ps = s.pc?.state ?? PostcopyState.NONE;
    if (ps !== PostcopyState.LISTENING)
      throw new StreamError(`CMD_POSTCOPY_RUN in wrong postcopy state (${ps})`, at);
    s.pc!.state = PostcopyState.RUNNING;
    s.hooks?.run(s.result);
    return 'quit';
  } else if (cmd === MIG_CMD_PACKAGED) return await loadPackaged(s, at);
  else if (cmd === MIG_CMD_POSTCOPY_RESUME) postcopyResume(s);
  else if (cmd === MIG_CMD_RECV_BITMAP) await recvBitmap(s, len);
  else {
    throw new StreamError(`migration command ${args.name} (length ${len}) is not supported here`, at);
  }
  return undefined;
}

const hex = (v: number) => v.toString(16);

/** POSTCOPY_ADVISE (loadvm_postcopy_handle_advise): page sizes, then presence tracking on. */
async function postcopyAdvise(s: LoadState, len: number, at: number): Promise<void> {
  const r = s.r;
  const ps = s.pc?.state ?? PostcopyState.NONE;
  if (ps !== PostcopyState.NONE)
    throw new StreamError(`CMD_POSTCOPY_ADVISE in wrong postcopy state (${ps})`, at);
  const postcopyRam = s.hooks?.postcopyRam ?? false;
  if (len === 0) {
    // Only dirty-bitmap postcopy, which needs nothing of RAM.
    if (postcopyRam) throw new StreamError('RAM postcopy is enabled but have 0 byte advise', at);
    return;
  }
  if (len !== 16) throw new StreamError(`CMD_POSTCOPY_ADVISE invalid length (${len})`, at);
  if (!postcopyRam) throw new StreamError('RAM postcopy is disabled but have 16 byte advise', at);
  await r.need(16, 'POSTCOPY_ADVISE');
  const hostPages = r.be64();
  const targetPage = r.be64();
  if (hostPages !== TARGET_PAGE_SIZE) {
    throw new StreamError(
      `Postcopy needs matching RAM page sizes (s=${hex(hostPages)} d=${hex(TARGET_PAGE_SIZE)})`,
      at,
    );
  }
  if (targetPage !== TARGET_PAGE_SIZE) {
    throw new StreamError(
      `Postcopy needs matching target page sizes (s=${targetPage} d=${TARGET_PAGE_SIZE})`,
      at,
    );
  }
  const pc = new PostcopyIncoming(s.ram, s.rp, s.hooks?.blocktime ?? false);
  pc.track();
  pc.state = PostcopyState.ADVISE;
  s.pc = pc;
  s.loader.postcopy = pc;
  s.hooks?.advised(pc);
}

/**
 * POSTCOPY_RAM_DISCARD (loadvm_postcopy_ram_handle_discard, ram_discard_range): version 0,
 * a counted block name and a NUL, then (be64 start, be64 length) byte ranges; each range
 * becomes missing.
 */
async function postcopyDiscard(s: LoadState, len: number, at: number): Promise<void> {
  const r = s.r;
  const pc = s.pc;
  const ps = pc?.state ?? PostcopyState.NONE;
  if (ps === PostcopyState.ADVISE) pc!.state = PostcopyState.DISCARD;
  else if (ps !== PostcopyState.DISCARD)
    throw new StreamError(`CMD_POSTCOPY_RAM_DISCARD in wrong postcopy state (${ps})`, at);
  if (len < 1 + 1 + 1 + 1 + 2 * 8)
    throw new StreamError(`CMD_POSTCOPY_RAM_DISCARD invalid length (${len})`, at);
  await r.need(len, 'POSTCOPY_RAM_DISCARD');
  const version = r.u8();
  if (version !== 0) throw new StreamError(`CMD_POSTCOPY_RAM_DISCARD invalid version (${version})`, at);
  const nameLen = r.u8();
  if (nameLen > len - 3) {
    r.skip(len - 2);
    throw new StreamError('CMD_POSTCOPY_RAM_DISCARD Failed to read RAMBlock ID', at);
  }
  const name = r.bytes(nameLen).toString('latin1');
  const nil = r.u8();
  if (nil !== 0) throw new StreamError(`CMD_POSTCOPY_RAM_DISCARD missing nil (${nil})`, at);
  let left = len - 3 - nameLen;
  if (left % 16) throw new StreamError(`CMD_POSTCOPY_RAM_DISCARD invalid length (${left})`, at);
  const block = s.ram.block(name);
  if (!block) throw new StreamError(`CMD_POSTCOPY_RAM_DISCARD: no RAM block '${name}' here`, at);
  for (; left > 0; left -= 16) {
    const start = r.be64();
    const length = r.be64();
    if (start % TARGET_PAGE_SIZE || length % TARGET_PAGE_SIZE || start + length > block.length) {
      throw new StreamError(
        `CMD_POSTCOPY_RAM_DISCARD: range 0x${hex(start)}+0x${hex(length)} is not whole pages of block '${name}' (0x${hex(block.length)} bytes)`,
        at,
      );
    }
    pc!.discard(block, start / TARGET_PAGE_SIZE, length / TARGET_PAGE_SIZE);
  }
}

/**
 * PACKAGED (loadvm_handle_cmd_packaged): a be32 length, then that many bytes read as a
 * stream of their own (LISTEN, the device sections, RUN), with no header.
 */
async function loadPackaged(s: LoadState, at: number): Promise<LoadEnd | undefined> {
  const r = s.r;
  await r.need(4, 'a command');
  const length = r.be32();
  if (s.nested) throw new StreamError('CMD_PACKAGED inside a package', at);
  if (length > PACKAGED_MAX) {
    throw new StreamError(`CMD_PACKAGED: ${length} bytes packaged, more than the ${PACKAGED_MAX} taken`, at);
  }
  try {
    await r.need(length, 'a packaged stream');
  } catch (e) {
    if (!(e instanceof StreamError)) throw e;
    throw new StreamError(`CMD_PACKAGED: Buffer receive fail ret=${r.available} length=${length}`, at);
  }
  const inner = new QemuFileReader({ resume() {} });
  inner.push(Buffer.from(r.bytes(length)));
  inner.end();
  const nested: LoadState = { ...s, r: inner, nested: true };
  try {
    const end = await loadSections(nested);
    return end === 'quit' ? 'quit' : undefined;
  } catch (e) {
    if (e instanceof StreamError) {
      throw new StreamError(
        `${e.message} (at byte ${e.offset} of the package)`,
        at,
        e.section ?? nested.current,
      );
    }
    throw e;
  } finally {
    s.pc = nested.pc;
    s.rpOpen = nested.rpOpen;
  }
}

/** POSTCOPY_RESUME (loadvm_postcopy_handle_resume): `postcopy-active` again, RESUME_ACK. */
function postcopyResume(s: LoadState): void {
  if (!s.hooks || !s.pc || s.hooks.status() !== 'postcopy-recover') {
    // QEMU does not fail the load for this.
    s.hooks?.warn('loadvm_postcopy_handle_resume: illegal resume received');
    return;
  }
  s.pc.setReturnPath(s.rp);
  s.hooks.resumed();
  sendRp(s, MIG_RP_MSG_RESUME_ACK, 1);
  s.pc.rerequest();
}

/**
 * RECV_BITMAP (loadvm_handle_recv_bitmap): a counted block name; the answer is that block's
 * received bitmap on the return path.
 */
async function recvBitmap(s: LoadState, len: number): Promise<void> {
  const r = s.r;
  await r.need(len, 'RECV_BITMAP');
  const nameLen = len > 0 ? r.u8() : 0;
  if (nameLen === 0 || nameLen > len - 1) {
    if (len > 1) r.skip(len - 1);
    throw new StreamError('loadvm_handle_recv_bitmap: failed to read block name', r.offset);
  }
  const name = r.bytes(nameLen).toString('latin1');
  if (len !== nameLen + 1)
    throw new StreamError(`loadvm_handle_recv_bitmap: invalid payload length (${len})`, r.offset);
  const block = s.ram.block(name);
  if (!block) throw new StreamError(`loadvm_handle_recv_bitmap: block '${name}' not found`, r.offset);
  if (s.hooks?.status() !== 'postcopy-recover') {
    s.hooks?.warn('migrate_send_rp_recv_bitmap: MSG_RP_RECV_BITMAP only used for recovery');
    return;
  }
  const rp = s.rp;
  if (rp && !rp.destroyed && !rp.writableEnded) rp.write(encodeRecvBitmap(block));
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
 * POSTCOPY_RUN (loadvm_postcopy_handle_run_bh): with autostart the guest starts, whatever
 * run state the source sent (QEMU 10.0 starts it even from a source that was stopped, unlike
 * a precopy); without autostart (-S) it is left `paused` for management to start.
 */
export function finishPostcopyRun(runstate: GuestRunState): void {
  if (!runstate.autostart) runstate.set('paused');
  else runstate.start();
}

/** A load's error in words: what and where for the stream's, glibc's words for the channel's. */
function describeLoadError(e: unknown): string {
  return e instanceof StreamError
    ? `${e.message} (at byte ${e.offset}${e.section ? `, section '${e.section}'` : ''})`
    : strerror(e);
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
  opts: {
    reader?: QemuFileReader;
    onFlush?: () => Promise<void>;
    onEnd?: () => void;
    warn?: (line: string) => void;
  } = {},
): Promise<void> {
  m.setIncomingStatus('active');
  const r = opts.reader ?? new QemuFileReader(input);
  let pc: PostcopyIncoming | undefined;
  let channel: Readable = input;
  let currentRp = rp;
  // migrate-pause on this side: an error on the channel, which pauses a postcopy.
  m.incomingShutdown = () => channel.destroy(genericError('Postcopy migration is paused by the user'));
  const warn = opts.warn ?? (() => {});
  const hooks: PostcopyHooks = {
    postcopyRam: m.options.caps['postcopy-ram'],
    blocktime: m.options.caps['postcopy-blocktime'],
    status: () => m.incomingStatus,
    listen: () => m.setIncomingStatus('postcopy-active'),
    run: () => finishPostcopyRun(runstate),
    advised: (p) => {
      pc = p;
      m.postcopyIncoming = p;
    },
    resumed: () => m.setIncomingStatus('postcopy-active'),
    warn,
    pause: async (e) => {
      channel.destroy();
      // What failed first, as QEMU's error_report of it, then its pause line.
      warn(`load of migration failed in postcopy: ${describeLoadError(e)}`);
      warn('Detected IO failure for postcopy. Migration paused.');
      m.setIncomingStatus('postcopy-paused');
      const ch = await m.waitRecoveredChannel();
      channel = ch.input;
      currentRp = ch.rp;
      m.setIncomingStatus('postcopy-recover');
      return { reader: ch.reader ?? new QemuFileReader(ch.input), rp: ch.rp };
    },
  };
  try {
    const result = await loadVmState(r, ram, rp, opts.onFlush, hooks);
    currentRp?.end();
    m.incomingEnded();
    // A postcopy that ran started the guest at RUN; an ADVISE alone is a precopy's end.
    if (!pc || pc.state === PostcopyState.ADVISE) finishIncoming(runstate, result);
    m.setIncomingStatus('completed');
    onDone();
  } catch (e) {
    // A read error of the channel in glibc's words, as QEMU's `load of migration failed:
    // <strerror>` has them, never Node's ("EISDIR: illegal operation on a directory, read").
    m.error = `load of migration failed: ${describeLoadError(e)}`;
    m.incomingEnded();
    channel.destroy();
    m.setIncomingStatus('failed');
    onDone(m.error);
  } finally {
    m.incomingShutdown = undefined;
    opts.onEnd?.();
  }
}
