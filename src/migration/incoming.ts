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
import type { RunStateMachine } from '../vm/runstate.js';
import type { Migration } from './migration.js';
import { RamLoader } from './ram.js';
import { QemuFileReader, StreamError } from './stream/qemu-file.js';
import {
  GLOBALSTATE_VERSION,
  MIG_CMD_MAX,
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
const MAX_VMDESC = 16 << 20;

export interface LoadResult {
  /** The run state the source sent in `globalstate`, if it did. */
  runstate?: string;
}

/**
 * Reads a whole migration stream into `ram`.
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
  const sections = new Map<number, string>();
  const result: LoadResult = {};
  let rpOpen = false;
  /** The section being read, to name it in errors raised below it. */
  let current: string | undefined;
  const send = (type: number, value: number) => {
    const b = Buffer.alloc(8);
    b.writeUInt16BE(type, 0);
    b.writeUInt16BE(4, 2);
    b.writeUInt32BE(value, 4);
    rp?.write(b);
  };
  try {
    for (;;) {
      current = undefined;
      await r.need(1, 'the next section');
      const at = r.offset;
      const type = r.u8();
      switch (type) {
        case QEMU_VM_SECTION_START:
        case QEMU_VM_SECTION_FULL: {
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
            throw new StreamError(
              `savevm: unsupported version ${version} for '${idstr}' v${local}`,
              at,
              idstr,
            );
          if (idstr === 'ram') {
            if (type !== QEMU_VM_SECTION_START)
              throw new StreamError('ram sent as a FULL section', at, 'ram');
            sections.set(id, idstr);
            await loader.loadChunk(r);
          } else if (type !== QEMU_VM_SECTION_FULL) {
            throw new StreamError(`${idstr} sent as an iterative section`, at, idstr);
          } else if (idstr === 'timer') await readTimer(r, version);
          else result.runstate = await readGlobalState(r);
          await readFooter(r, id, idstr);
          break;
        }
        case QEMU_VM_SECTION_PART:
        case QEMU_VM_SECTION_END: {
          await r.need(4, 'a section header');
          const id = r.be32();
          const idstr = sections.get(id);
          if (idstr === undefined) throw new StreamError(`Unknown savevm section ${id}`, at);
          current = idstr;
          await loader.loadChunk(r);
          await readFooter(r, id, idstr);
          break;
        }
        case QEMU_VM_COMMAND: {
          await r.need(4, 'a command');
          const cmd = r.be16();
          const len = r.be16();
          await r.need(len, 'a command');
          const data = r.bytes(len);
          if (cmd === MIG_CMD_OPEN_RETURN_PATH && len === 0) rpOpen = rp !== undefined;
          else if (cmd === MIG_CMD_PING && len === 4) {
            if (rpOpen) send(MIG_RP_MSG_PONG, data.readUInt32BE(0));
          } else if (cmd === MIG_CMD_SWITCHOVER_START && len === 0) {
            // Nothing to prepare for a guest without devices.
          } else if (cmd === MIG_CMD_POSTCOPY_ADVISE) {
            throw new StreamError('the source enabled postcopy, which qmigrate does not support', at);
          } else if (cmd === 0 || cmd > MIG_CMD_MAX) {
            throw new StreamError(`MIG_CMD 0x${cmd.toString(16)} unknown`, at);
          } else {
            throw new StreamError(`migration command ${cmd} (length ${len}) is not supported here`, at);
          }
          break;
        }
        case QEMU_VM_EOF: {
          // A VM description may follow; a source may also just end the stream here.
          if (!(await r.atEnd()) && r.peekU8() === QEMU_VM_VMDESCRIPTION) {
            r.u8();
            await r.need(4, 'the VM description');
            const len = r.be32();
            if (len > MAX_VMDESC) throw new StreamError(`VM description of ${len} bytes`, r.offset - 4);
            await r.need(len, 'the VM description');
            r.skip(len);
          }
          if (rpOpen) send(MIG_RP_MSG_SHUT, 0);
          return result;
        }
        default:
          throw new StreamError(`Unknown savevm section type ${type}`, at);
      }
    }
  } catch (e) {
    if (e instanceof StreamError && e.section === undefined) e.section = current;
    if (rpOpen) send(MIG_RP_MSG_SHUT, 1);
    throw e;
  }
}

/** What the destination becomes after a complete load (process_incoming_migration_bh). */
export function finishIncoming(runstate: RunStateMachine, received: string | undefined): void {
  if (received === undefined || received === 'running') {
    if (runstate.autostart) runstate.start();
    else runstate.set('paused');
  } else {
    runstate.set(received as RunState);
  }
}

/** One incoming migration's main channel: load, then start the guest or report failure. */
export async function runIncoming(
  m: Migration,
  ram: GuestRam,
  runstate: RunStateMachine,
  input: Readable,
  rp: Writable | undefined,
  onDone: (error?: string) => void,
  opts: { reader?: QemuFileReader; onFlush?: () => Promise<void> } = {},
): Promise<void> {
  m.setIncomingStatus('active');
  const r = opts.reader ?? new QemuFileReader(input);
  try {
    const result = await loadVmState(r, ram, rp, opts.onFlush);
    rp?.end();
    m.incomingEnded();
    finishIncoming(runstate, result.runstate);
    m.setIncomingStatus('completed');
    onDone();
  } catch (e) {
    const what =
      e instanceof StreamError
        ? `${e.message} (at byte ${e.offset}${e.section ? `, section '${e.section}'` : ''})`
        : (e as Error).message;
    m.error = `load of migration failed: ${what}`;
    m.incomingEnded();
    input.destroy();
    m.setIncomingStatus('failed');
    onDone(m.error);
  }
}
