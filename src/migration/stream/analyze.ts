/**
 * A saved migration stream (file: or exec: transport, one channel, precopy; QEMU 7.2's,
 * QEMU 10.0's or qmigrate's), walked record by record without loading it: what QEMU's
 * scripts/analyze-migration.py shows, and more (commands, page counts, offsets). The layout
 * is migration/savevm.c's (framing), migration/ram.c's (RAM, incl. mapped-ram) and the VM
 * description's (device fields, vmdesc.ts). Errors are StreamErrors with offset and section.
 */
import { closeSync, constants, openSync } from 'node:fs';
import { type FileHandle, open, stat } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { readBe64 } from '../../util/be64.js';
import { RAM_SAVE_FLAG_MEM_SIZE } from '../ram.js';
import { analyzeRam, type RamAnalysis, type RamSink } from './analyze-ram.js';
import { QemuFileReader, StreamError } from './qemu-file.js';
import {
  MACHINE_NAME_MAX,
  MIG_CMD_PACKAGED,
  MIG_CMD_PING,
  QEMU_VM_COMMAND,
  QEMU_VM_CONFIGURATION,
  QEMU_VM_EOF,
  QEMU_VM_FILE_MAGIC,
  QEMU_VM_FILE_VERSION,
  QEMU_VM_SECTION_END,
  QEMU_VM_SECTION_FOOTER,
  QEMU_VM_SECTION_FULL,
  QEMU_VM_SECTION_PART,
  QEMU_VM_SECTION_START,
  QEMU_VM_SUBSECTION,
  QEMU_VM_VMDESCRIPTION,
} from './savevm.js';
import { checkDescription, type FieldValue, findDevice, readStruct, type VmDescription } from './vmdesc.js';

export type { RamAnalysis, RamBlockInfo, RamSink } from './analyze-ram.js';
export type { FieldValue, VmDescription } from './vmdesc.js';

/** Command names by number (migration/savevm.c mig_cmd_args). */
export const MIG_CMD_NAMES = [
  'INVALID',
  'OPEN_RETURN_PATH',
  'PING',
  'POSTCOPY_ADVISE',
  'POSTCOPY_LISTEN',
  'POSTCOPY_RUN',
  'POSTCOPY_RAM_DISCARD',
  'PACKAGED',
  'ENABLE_COLO',
  'POSTCOPY_RESUME',
  'RECV_BITMAP',
  'SWITCHOVER_START',
] as const;

const KINDS: Record<number, SectionRecord['kind']> = {
  [QEMU_VM_SECTION_START]: 'start',
  [QEMU_VM_SECTION_PART]: 'part',
  [QEMU_VM_SECTION_END]: 'end',
  [QEMU_VM_SECTION_FULL]: 'full',
};

/** The configuration record (savevm.c vmstate_configuration) and its subsections. */
export interface Configuration {
  offset: number;
  'machine-type': string;
  /** Validated capabilities the source had on (configuration/capabilities). */
  capabilities: string[];
  /** Only when the source's target has pages larger than the minimum. */
  'target-page-bits'?: number;
  /** The source's -uuid with validate-uuid on. */
  uuid?: string;
}

/** One section chunk, in stream order. START/FULL carry the full header. */
export interface SectionRecord {
  /** Byte offset of its type byte. */
  offset: number;
  kind: 'start' | 'part' | 'end' | 'full';
  'section-id': number;
  idstr: string;
  'instance-id': number;
  'version-id': number;
  /** Bytes from the type byte to the end of the footer. */
  length: number;
}

/** A QEMU_VM_COMMAND record. */
export interface CommandRecord {
  offset: number;
  cmd: number;
  /** QEMU's name (MIG_CMD_ without the prefix), or `unknown`. */
  name: string;
  length: number;
  /** PING's value. */
  value?: number;
}

/** A non-RAM section's state. */
export interface DeviceState {
  offset: number;
  idstr: string;
  'section-id': number;
  'instance-id': number;
  'version-id': number;
  /** Field by field, from the VM description (or qmigrate's own layout of timer/globalstate). */
  fields: { [name: string]: FieldValue };
  /** What `timer` and `globalstate` mean. */
  meaning?: { [name: string]: FieldValue };
}

/** Everything `analyzeStream` found. JSON-safe: 64-bit fields are exact decimal strings. */
export interface StreamAnalysis {
  /** Bytes read (the whole stream). */
  size: number;
  header: { magic: string; version: number };
  configuration: Configuration | null;
  sections: SectionRecord[];
  commands: CommandRecord[];
  ram: RamAnalysis | null;
  devices: DeviceState[];
  /** Offset of the EOF byte (0x00). */
  eof: number;
  vmdescription: { offset: number; length: number; json: VmDescription } | null;
}

export interface AnalyzeOptions {
  /** Receives every page (for --dump-ram). */
  sink?: RamSink;
  /** The VM description, found before the walk (a file's tail): device sections need it. */
  vmdesc?: VmDescription;
}

/** Longest VM description accepted: QEMU writes a few hundred KiB for a full PC. */
const MAX_VMDESC = 64 << 20;

interface Walk {
  r: QemuFileReader;
  out: StreamAnalysis;
  opts: AnalyzeOptions;
  /** idstr of each section id a START or FULL introduced. */
  ids: Map<number, { idstr: string; instance: number; version: number }>;
  /** The rest of a stream was searched for its VM description (a pipe's, at its first device). */
  lookedAhead?: boolean;
}

/**
 * Most bytes a pipe's stream may have left at its first device section for the VM description
 * at its end to be read ahead: the device sections come after RAM's last part, and even a full
 * PC's are a few MiB.
 */
const MAX_LOOKAHEAD = 256 << 20;

/**
 * Walks a whole stream.
 * @param input the stream's bytes (a file's read stream, a pipe).
 * @throws {StreamError} with the byte offset and section of the first thing that is wrong.
 */
export async function analyzeStream(
  input: Readable | QemuFileReader,
  opts: AnalyzeOptions = {},
): Promise<StreamAnalysis> {
  const r = input instanceof QemuFileReader ? input : new QemuFileReader(input);
  const out: StreamAnalysis = {
    size: 0,
    header: { magic: '', version: 0 },
    configuration: null,
    sections: [],
    commands: [],
    ram: null,
    devices: [],
    eof: -1,
    vmdescription: null,
  };
  const w: Walk = { r, out, opts, ids: new Map() };
  await readHeader(w);
  for (;;) {
    await r.need(1, 'the next record');
    const at = r.offset;
    const type = r.u8();
    if (type === QEMU_VM_EOF) {
      out.eof = at;
      break;
    }
    if (type === QEMU_VM_COMMAND) await readCommand(w, at);
    else if (KINDS[type]) await readSection(w, at, type);
    else throw new StreamError(`Unknown savevm section type ${type}`, at);
  }
  await inSection('vmdescription', () => readTrailer(w));
  out.size = r.offset;
  return out;
}

async function readHeader(w: Walk): Promise<void> {
  const { r, out } = w;
  await r.need(8, 'the stream header');
  const magic = r.be32();
  if (magic !== QEMU_VM_FILE_MAGIC)
    throw new StreamError(
      `not a migration stream: magic 0x${magic.toString(16).padStart(8, '0')} (want 0x5145564d, "QEVM")`,
      0,
    );
  const version = r.be32();
  if (version !== QEMU_VM_FILE_VERSION)
    throw new StreamError(`unsupported migration stream version ${version} (want 3)`, 4);
  out.header = { magic: 'QEVM', version };
  await r.need(1, 'the first record');
  if (r.peekU8() === QEMU_VM_CONFIGURATION)
    out.configuration = await inSection('configuration', () => readConfiguration(w));
}

/** Runs `read`, naming `section` in a StreamError that names none (an early end, mostly). */
async function inSection<T>(section: string, read: () => Promise<T>): Promise<T> {
  try {
    return await read();
  } catch (e) {
    if (e instanceof StreamError && e.section === undefined) e.section = section;
    throw e;
  }
}

/** The configuration record: machine type, then subsections while the next byte is 0x05. */
async function readConfiguration(w: Walk): Promise<Configuration> {
  const { r } = w;
  const offset = r.offset;
  r.u8();
  await r.need(4, 'the machine type');
  const len = r.be32();
  if (len > MACHINE_NAME_MAX)
    throw new StreamError(
      `machine type name of ${len} bytes (at most ${MACHINE_NAME_MAX})`,
      r.offset - 4,
      'configuration',
    );
  await r.need(len, 'the machine type');
  const c: Configuration = { offset, 'machine-type': r.bytes(len).toString('latin1'), capabilities: [] };
  for (;;) {
    await r.need(1, 'the record after the configuration');
    if (r.peekU8() !== QEMU_VM_SUBSECTION) return c;
    const at = r.offset;
    r.u8();
    const sub = await r.cstr('a configuration subsection');
    await r.need(4, sub);
    r.skip(4);
    if (sub === 'configuration/capabilities') {
      await r.need(4, sub);
      const n = r.be32();
      if (n > 64)
        throw new StreamError(`${n} capabilities listed (QEMU has about 30)`, r.offset - 4, 'configuration');
      for (let i = 0; i < n; i++) c.capabilities.push(await r.cstr(sub));
    } else if (sub === 'configuration/target-page-bits') {
      await r.need(4, sub);
      c['target-page-bits'] = r.be32();
    } else if (sub === 'configuration/uuid') {
      await r.need(16, sub);
      const u = r.bytes(16).toString('hex');
      c.uuid = `${u.slice(0, 8)}-${u.slice(8, 12)}-${u.slice(12, 16)}-${u.slice(16, 20)}-${u.slice(20)}`;
    } else throw new StreamError(`unknown configuration subsection '${sub}'`, at, 'configuration');
  }
}

async function readCommand(w: Walk, at: number): Promise<void> {
  const { r, out } = w;
  await r.need(4, 'a command');
  const cmd = r.be16();
  const length = r.be16();
  await r.need(length, `command ${MIG_CMD_NAMES[cmd] ?? cmd}`);
  const data = r.bytes(length);
  const rec: CommandRecord = { offset: at, cmd, name: MIG_CMD_NAMES[cmd] ?? 'unknown', length };
  if (cmd === MIG_CMD_PING && length === 4) rec.value = data.readUInt32BE(0);
  out.commands.push(rec);
  // PACKAGED wraps a postcopy switchover's device state: only a live stream has one.
  if (cmd === MIG_CMD_PACKAGED)
    throw new StreamError('a PACKAGED command (postcopy): not a saved precopy stream', at, 'command');
  if (cmd === 0 || cmd >= MIG_CMD_NAMES.length)
    throw new StreamError(`MIG_CMD 0x${cmd.toString(16)} unknown`, at, 'command');
}

async function readSection(w: Walk, at: number, type: number): Promise<void> {
  const { r, out, ids } = w;
  await r.need(4, 'a section header');
  const id = r.be32();
  let info = ids.get(id);
  if (type === QEMU_VM_SECTION_START || type === QEMU_VM_SECTION_FULL) {
    const idstr = await r.cstr('a section name');
    await r.need(8, `the header of section ${idstr}`);
    info = { idstr, instance: r.be32(), version: r.be32() };
    ids.set(id, info);
  } else if (!info) throw new StreamError(`section id ${id} was never started`, at);
  const rec: SectionRecord = {
    offset: at,
    kind: KINDS[type]!,
    'section-id': id,
    idstr: info.idstr,
    'instance-id': info.instance,
    'version-id': info.version,
    length: 0,
  };
  out.sections.push(rec);
  await inSection(info.idstr, async () => {
    await readPayload(w, rec);
    await readFooter(r, id);
  });
  rec.length = r.offset - at;
}

async function readPayload(w: Walk, rec: SectionRecord): Promise<void> {
  const { r, out, opts } = w;
  if (rec.idstr === 'ram' && rec['instance-id'] === 0) {
    if (rec['version-id'] !== 4)
      throw new StreamError(
        `ram: version ${rec['version-id']} (want 4)`,
        // A START or FULL header ends with the version; a PART/END has none of its own.
        rec.kind === 'start' || rec.kind === 'full' ? r.offset - 4 : rec.offset,
      );
    if (rec.kind === 'start' || rec.kind === 'full') {
      if (out.ram) throw new StreamError('a second START of section ram', rec.offset);
      await r.need(8, 'the RAM block list');
      if ((readBe64(r.peekBytes(8), 0) & RAM_SAVE_FLAG_MEM_SIZE) === 0)
        throw new StreamError('the ram section does not start with its block list', r.offset);
    }
    out.ram = await analyzeRam(r, out.ram, out.configuration?.capabilities ?? [], opts.sink);
    return;
  }
  if (rec.kind === 'part' || rec.kind === 'end')
    throw new StreamError(`section ${rec.idstr} is iterative and not known here`, r.offset);
  out.devices.push(await readDevice(w, rec));
}

async function readFooter(r: QemuFileReader, id: number): Promise<void> {
  await r.need(5, 'the section footer');
  const at = r.offset;
  const tag = r.u8();
  if (tag !== QEMU_VM_SECTION_FOOTER)
    throw new StreamError(`Missing section footer: found byte 0x${tag.toString(16)}`, at);
  const got = r.be32();
  if (got !== id) throw new StreamError(`Mismatched section id in footer: read ${got}, expected ${id}`, at);
}

/** A device section by the VM description, else by what qmigrate knows of timer/globalstate. */
async function readDevice(w: Walk, rec: SectionRecord): Promise<DeviceState> {
  const { r } = w;
  if (!w.opts.vmdesc && !w.lookedAhead) {
    // A pipe: its VM description is still to come. Read ahead to it, so the devices decode
    // as a file's do; everything left is buffered, within MAX_LOOKAHEAD.
    w.lookedAhead = true;
    const rest = await r.peekToEnd(MAX_LOOKAHEAD);
    if (rest) w.opts = { ...w.opts, vmdesc: findDescriptionInTail(rest, r.offset) };
  }
  const opts = w.opts;
  const desc = findDevice(opts.vmdesc, rec.idstr, rec['instance-id']);
  const dev: DeviceState = {
    offset: rec.offset,
    idstr: rec.idstr,
    'section-id': rec['section-id'],
    'instance-id': rec['instance-id'],
    'version-id': rec['version-id'],
    fields: {},
  };
  if (desc) dev.fields = await readStruct(r, desc, rec.idstr);
  else if (rec.idstr === 'timer') dev.fields = await readTimerFields(r, rec['version-id']);
  else if (rec.idstr === 'globalstate') dev.fields = await readGlobalStateFields(r);
  else
    throw new StreamError(
      opts.vmdesc
        ? `the VM description does not list section ${rec.idstr} (instance ${rec['instance-id']})`
        : `no VM description to read section ${rec.idstr} by: none at the stream's end (a truncated file has none), or more than ${MAX_LOOKAHEAD >> 20} MiB of a pipe left to read ahead to it (analyze a file)`,
      r.offset,
    );
  dev.meaning = meaningOf(dev);
  return dev;
}

async function readTimerFields(r: QemuFileReader, version: number): Promise<{ [name: string]: FieldValue }> {
  await r.need(version >= 2 ? 24 : 16, 'the timer section');
  const b = r.bytes(version >= 2 ? 24 : 16);
  const fields: { [name: string]: FieldValue } = {
    cpu_ticks_offset: b.readBigInt64BE(0).toString(),
    unused: b.subarray(8, 16).toString('hex'),
  };
  if (version >= 2) fields.cpu_clock_offset = b.readBigInt64BE(16).toString();
  return fields;
}

/** QEMU 10.0's layout (7.2's runstate[100] starts the same way). */
async function readGlobalStateFields(r: QemuFileReader): Promise<{ [name: string]: FieldValue }> {
  await r.need(104, 'the globalstate section');
  const b = r.bytes(104);
  return {
    size: b.readUInt32BE(0),
    runstate: b.subarray(4, 36).toString('hex'),
    has_vm_was_suspended: b[36]!,
    vm_was_suspended: b[37]!,
    unused: b.subarray(38).toString('hex'),
  };
}

/** timer's offsets in ns; globalstate's run state name (up to its NUL) and suspension. */
function meaningOf(dev: DeviceState): { [name: string]: FieldValue } | undefined {
  const f = dev.fields;
  if (dev.idstr === 'timer')
    return {
      'cpu-ticks-offset': f.cpu_ticks_offset ?? null,
      'cpu-clock-offset-ns': f.cpu_clock_offset ?? null,
    };
  if (dev.idstr !== 'globalstate' || typeof f.runstate !== 'string') return undefined;
  const raw = Buffer.from(f.runstate, 'hex');
  const end = raw.indexOf(0);
  const meaning: { [name: string]: FieldValue } = {
    runstate: raw.subarray(0, end < 0 ? raw.length : end).toString('latin1'),
  };
  if (f.vm_was_suspended !== undefined)
    meaning['vm-was-suspended'] = f.vm_was_suspended !== 0 && f.vm_was_suspended !== false;
  return meaning;
}

async function readTrailer(w: Walk): Promise<void> {
  const { r, out } = w;
  if (await r.atEnd()) return;
  const at = r.offset;
  const type = r.u8();
  if (type !== QEMU_VM_VMDESCRIPTION)
    throw new StreamError(
      `after EOF: byte 0x${type.toString(16)}, not a VM description (0x06)`,
      at,
      'vmdescription',
    );
  await r.need(4, 'the VM description length');
  const length = r.be32();
  if (length > MAX_VMDESC)
    throw new StreamError(
      `a VM description of ${length} bytes (at most ${MAX_VMDESC})`,
      at + 1,
      'vmdescription',
    );
  await r.need(length, 'the VM description');
  let json: unknown;
  try {
    json = JSON.parse(r.bytes(length).toString('utf8'));
  } catch (e) {
    throw new StreamError(`the VM description is not JSON: ${(e as Error).message}`, at + 5, 'vmdescription');
  }
  out.vmdescription = { offset: at, length, json: checkDescription(json, at + 5) };
  if (!(await r.atEnd())) throw new StreamError('bytes after the VM description', r.offset, 'vmdescription');
}

/**
 * Finds the VM description in the last bytes of a file: the 0x06 record that follows the EOF
 * byte and runs exactly to the file's end (QEMU writes it last).
 * @returns undefined when there is none (a truncated file, a stream without one).
 */
export function findDescriptionInTail(tail: Buffer, tailOffset: number): VmDescription | undefined {
  let p = tail.length - 6;
  while (p >= 1) {
    p = tail.lastIndexOf(QEMU_VM_VMDESCRIPTION, p);
    if (p < 1) return undefined;
    if (
      tail[p - 1] === QEMU_VM_EOF &&
      tail.readUInt32BE(p + 1) === tail.length - p - 5 &&
      tail[p + 5] === 0x7b
    ) {
      try {
        return checkDescription(JSON.parse(tail.subarray(p + 5).toString('utf8')), tailOffset + p + 5);
      } catch {
        return undefined;
      }
    }
    p--;
  }
  return undefined;
}

/**
 * Analyses a stream held in memory (as analyzeFile does a file).
 * @throws {StreamError} where the stream is wrong.
 */
export async function analyzeBuffer(data: Buffer, sink?: RamSink): Promise<StreamAnalysis> {
  const tail = data.subarray(Math.max(0, data.length - TAIL));
  const vmdesc = findDescriptionInTail(tail, data.length - tail.length);
  const r = new QemuFileReader({ resume() {} });
  r.push(data);
  r.end();
  return analyzeStream(r, { sink, vmdesc });
}

/** How much of a file's end is searched for the VM description. */
const TAIL = 16 << 20;

/**
 * Opens `path` for reading. A FIFO's open waits for a writer in a worker thread that nothing
 * interrupts, so on `signal` a writer end is opened and closed at once (non-blocking), which
 * ends the wait; the open then fails with the signal's reason.
 */
async function openCancellable(path: string, signal?: AbortSignal): Promise<FileHandle> {
  const fifo = signal !== undefined && (await stat(path).catch(() => undefined))?.isFIFO();
  const wake = () => {
    try {
      closeSync(openSync(path, constants.O_WRONLY | constants.O_NONBLOCK));
    } catch {
      // No reader waits any more (the open has just returned).
    }
  };
  if (fifo) signal.addEventListener('abort', wake, { once: true });
  let fh: FileHandle;
  try {
    fh = await open(path, 'r');
  } finally {
    if (fifo) signal.removeEventListener('abort', wake);
  }
  if (signal?.aborted) {
    await fh.close();
    throw signal.reason;
  }
  return fh;
}

/**
 * Analyses a saved stream file: first its VM description from the file's end, then the walk
 * in 1 MiB reads.
 * @param sink receives the pages (--dump-ram).
 * @param signal stops the walk (its reason is thrown).
 * @throws {StreamError} where the stream is wrong; Node's error when the file cannot be read.
 */
export async function analyzeFile(
  path: string,
  sink?: RamSink,
  signal?: AbortSignal,
): Promise<StreamAnalysis> {
  const fh = await openCancellable(path, signal);
  let vmdesc: VmDescription | undefined;
  let input: Readable;
  try {
    const st = await fh.stat();
    // A FIFO or a device is read once, through this same open: opening a FIFO again would
    // wait for a writer that has already gone (and the writer dies when the first reader closes).
    if (st.isFile()) {
      const n = Math.min(st.size, TAIL);
      const tail = Buffer.alloc(n);
      await fh.read(tail, 0, n, st.size - n);
      vmdesc = findDescriptionInTail(tail, st.size - n);
    }
    input = fh.createReadStream({ highWaterMark: 1 << 20, ...(st.isFile() ? { start: 0 } : {}) });
  } catch (e) {
    await fh.close();
    throw e;
  }
  const reader = new QemuFileReader(input);
  // Ctrl-C on a multi-GiB file: the walk's next wait throws the reason.
  const stop = () => reader.fail(signal!.reason);
  signal?.addEventListener('abort', stop, { once: true });
  try {
    return await analyzeStream(reader, { sink, vmdesc });
  } finally {
    signal?.removeEventListener('abort', stop);
    input.destroy();
  }
}
