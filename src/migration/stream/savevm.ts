/**
 * The stream's framing (migration/savevm.c, savevm.h): magic and version, the configuration
 * record, section headers and footers, commands, EOF and the VM description, and the device
 * sections a `-machine none` guest has besides RAM (`timer`, `globalstate`), in QEMU 10.0's
 * layout. Wire constants keep QEMU's names.
 */
import { schema } from '../../qapi/schema.js';
import type { RunState } from '../../qapi/types.js';
import type { QemuFileReader, QemuFileWriter } from './qemu-file.js';
import { StreamError } from './qemu-file.js';

export const QEMU_VM_FILE_MAGIC = 0x5145564d;
export const QEMU_VM_FILE_VERSION = 3;
export const QEMU_VM_EOF = 0x00;
export const QEMU_VM_SECTION_START = 0x01;
export const QEMU_VM_SECTION_PART = 0x02;
export const QEMU_VM_SECTION_END = 0x03;
export const QEMU_VM_SECTION_FULL = 0x04;
export const QEMU_VM_SUBSECTION = 0x05;
export const QEMU_VM_VMDESCRIPTION = 0x06;
export const QEMU_VM_CONFIGURATION = 0x07;
export const QEMU_VM_COMMAND = 0x08;
export const QEMU_VM_SECTION_FOOTER = 0x7e;

export const MIG_CMD_OPEN_RETURN_PATH = 1;
export const MIG_CMD_PING = 2;
export const MIG_CMD_POSTCOPY_ADVISE = 3;
export const MIG_CMD_PACKAGED = 7;
export const MIG_CMD_SWITCHOVER_START = 11;
/** Highest command number QEMU 10.0 knows. */
export const MIG_CMD_MAX = 11;
export const MIG_CMD_POSTCOPY_LISTEN = 4;
export const MIG_CMD_POSTCOPY_RUN = 5;
export const MIG_CMD_POSTCOPY_RAM_DISCARD = 6;
export const MIG_CMD_POSTCOPY_RESUME = 9;
export const MIG_CMD_RECV_BITMAP = 10;

export const MIG_RP_MSG_SHUT = 1;
export const MIG_RP_MSG_PONG = 2;
export const MIG_RP_MSG_REQ_PAGES_ID = 3;
export const MIG_RP_MSG_REQ_PAGES = 4;
export const MIG_RP_MSG_RECV_BITMAP = 5;
export const MIG_RP_MSG_RESUME_ACK = 6;

/** Section ids QEMU 10.0 gives a -machine none guest (registration order). */
export const SECTION_ID = { timer: 0, ram: 1, globalstate: 3 } as const;
export const RAM_VERSION = 4;
export const TIMER_VERSION = 2;
export const GLOBALSTATE_VERSION = 1;

export const MACHINE_TYPE = 'none';
/** Longest machine-type name the configuration record may carry (QEMU sets no bound). */
export const MACHINE_NAME_MAX = 256;

// ---- writing ----------------------------------------------------------------------------

export function writeHeader(f: QemuFileWriter): void {
  f.be32(QEMU_VM_FILE_MAGIC);
  f.be32(QEMU_VM_FILE_VERSION);
  f.u8(QEMU_VM_CONFIGURATION);
  f.be32(MACHINE_TYPE.length);
  f.bytes(Buffer.from(MACHINE_TYPE, 'latin1'));
}

export function writeCommand(f: QemuFileWriter, cmd: number, data: Buffer = Buffer.alloc(0)): void {
  f.u8(QEMU_VM_COMMAND);
  f.be16(cmd);
  f.be16(data.length);
  if (data.length) f.bytes(data);
}

export function writeSectionStart(
  f: QemuFileWriter,
  type: number,
  id: number,
  idstr: string,
  version: number,
): void {
  f.u8(type);
  f.be32(id);
  f.cstr(idstr);
  f.be32(0);
  f.be32(version);
}

export function writeSectionPart(f: QemuFileWriter, type: number, id: number): void {
  f.u8(type);
  f.be32(id);
}

export function writeFooter(f: QemuFileWriter, id: number): void {
  f.u8(QEMU_VM_SECTION_FOOTER);
  f.be32(id);
}

/** `timer` (system/cpu-timers.c): two clock offsets around 8 unused bytes. */
export function writeTimer(f: QemuFileWriter): void {
  writeSectionStart(f, QEMU_VM_SECTION_FULL, SECTION_ID.timer, 'timer', TIMER_VERSION);
  f.be64(0);
  f.be64(0);
  f.be64(0);
  writeFooter(f, SECTION_ID.timer);
}

/** `globalstate` (migration/global_state.c, 10.0 layout): the run state the guest had. */
export function writeGlobalState(f: QemuFileWriter, runstate: string): void {
  writeSectionStart(f, QEMU_VM_SECTION_FULL, SECTION_ID.globalstate, 'globalstate', GLOBALSTATE_VERSION);
  const name = Buffer.alloc(32);
  name.write(runstate, 'latin1');
  f.be32(runstate.length + 1);
  f.bytes(name);
  f.u8(1); // has_vm_was_suspended
  f.u8(0); // vm_was_suspended
  f.bytes(Buffer.alloc(66));
  writeFooter(f, SECTION_ID.globalstate);
}

/** The VMDESCRIPTION JSON QEMU 10.0 writes for this guest (read by analyze-migration.py). */
export const VMDESCRIPTION = JSON.stringify({
  configuration: {
    vmsd_name: 'configuration',
    version: 1,
    fields: [
      { name: 'len', type: 'uint32', size: 4 },
      { name: 'name', type: 'buffer', size: 4 },
    ],
  },
  page_size: 4096,
  devices: [
    {
      name: 'timer',
      instance_id: 0,
      vmsd_name: 'timer',
      version: 2,
      fields: [
        { name: 'cpu_ticks_offset', type: 'int64', size: 8 },
        { name: 'unused', type: 'unused_buffer', size: 8 },
        { name: 'cpu_clock_offset', type: 'int64', size: 8 },
      ],
    },
    {
      name: 'globalstate',
      instance_id: 0,
      vmsd_name: 'globalstate',
      version: 1,
      fields: [
        { name: 'size', type: 'uint32', size: 4 },
        { name: 'runstate', type: 'buffer', size: 32 },
        { name: 'has_vm_was_suspended', type: 'uint8', size: 1 },
        { name: 'vm_was_suspended', type: 'uint8', size: 1 },
        { name: 'unused', type: 'buffer', size: 66 },
      ],
    },
  ],
})
  .replaceAll('":', '": ')
  .replaceAll(',"', ', "')
  .replaceAll(',{', ', {');

export function writeTrailer(f: QemuFileWriter): void {
  f.u8(QEMU_VM_EOF);
  const json = Buffer.from(VMDESCRIPTION, 'latin1');
  f.u8(QEMU_VM_VMDESCRIPTION);
  f.be32(json.length);
  f.bytes(json);
}

// ---- reading ------------------------------------------------------------------------------

export function fail(r: QemuFileReader, what: string, section?: string): never {
  throw new StreamError(what, r.offset, section);
}

/**
 * Capabilities a source lists in the configuration record that must be equal on both sides
 * (savevm.c should_validate_capability); a source lists no others.
 */
const VALIDATED_CAPS = ['x-ignore-shared', 'mapped-ram'];
const CAPABILITIES = schema.enumValues('MigrationCapability');

/**
 * A subsection's version against its description's (vmstate.c vmstate_load_state). The
 * stream has 32 bits; QEMU keeps the low 8.
 */
function checkVersion(r: QemuFileReader, name: string, version: number, min: number, max: number): void {
  if (version > max)
    fail(r, `${name}: incoming version_id ${version} is too new for local version_id ${max}`, name);
  // QEMU's text has the two spaces.
  if (version < min)
    fail(r, `${name}: incoming version_id ${version} is too old for local minimum version_id  ${min}`, name);
}

/**
 * Reads and checks magic, version and the configuration record.
 * @param validatedCaps the capabilities of VALIDATED_CAPS this side has on.
 * @throws {StreamError} with QEMU's text where it has one.
 */
export async function readHeader(r: QemuFileReader, validatedCaps: readonly string[]): Promise<void> {
  await r.need(8, 'the stream header');
  const at = r.offset;
  const magic = r.be32();
  if (magic !== QEMU_VM_FILE_MAGIC) {
    throw new StreamError(
      `not a migration stream: magic 0x${magic.toString(16).padStart(8, '0')} (want 0x5145564d, "QEVM")`,
      at,
    );
  }
  const version = r.be32();
  if (version === 2) throw new StreamError('SaveVM v2 format is obsolete and does not work anymore', at + 4);
  if (version !== QEMU_VM_FILE_VERSION)
    throw new StreamError(`unsupported migration stream version ${version}`, at + 4);
  await r.need(1, 'the configuration record');
  if (r.peekU8() !== QEMU_VM_CONFIGURATION) {
    fail(r, `configuration record missing: found byte 0x${r.peekU8().toString(16)}`);
  }
  r.u8();
  await r.need(4, 'the machine type');
  const len = r.be32();
  // Checked before anything is allocated: QEMU 10.0 allocates any length here (and aborts).
  if (len > MACHINE_NAME_MAX)
    fail(r, `machine type name of ${len} bytes (at most ${MACHINE_NAME_MAX})`, 'configuration');
  await r.need(len, 'the machine type');
  const name = r.bytes(len).toString('latin1');
  if (name !== MACHINE_TYPE)
    fail(r, `Machine type received is '${name}' and local is '${MACHINE_TYPE}'`, 'configuration');
  const caps: string[] = [];
  for (;;) {
    await r.need(1, 'the stream');
    if (r.peekU8() !== QEMU_VM_SUBSECTION) break;
    r.u8();
    const sub = await r.cstr('a configuration subsection');
    await r.need(4, sub);
    const subVersion = r.be32() & 0xff;
    if (sub === 'configuration/capabilities') {
      checkVersion(r, sub, subVersion, 1, 1);
      await r.need(4, sub);
      const n = r.be32();
      if (n > CAPABILITIES.length)
        fail(r, `${n} capabilities listed, but there are only ${CAPABILITIES.length}`, 'configuration');
      for (let i = 0; i < n; i++) {
        const cap = await r.cstr(sub);
        if (!CAPABILITIES.includes(cap)) fail(r, `Received unknown capability ${cap}`, 'configuration');
        caps.push(cap);
      }
    } else if (sub === 'configuration/target-page-bits') {
      checkVersion(r, sub, subVersion, 1, 1);
      await r.need(4, sub);
      const bits = r.be32();
      if (bits !== 12) fail(r, `Received TARGET_PAGE_BITS is ${bits} but local is 12`, 'configuration');
    } else if (sub === 'configuration/uuid') {
      // Checked only against a -uuid this side was given, and qmigrate takes none.
      checkVersion(r, sub, subVersion, 1, 1);
      await r.need(16, sub);
      r.skip(16);
    } else fail(r, `unknown configuration subsection '${sub}'`, 'configuration');
  }
  // Only the validated capabilities count; QEMU ignores any other the source names.
  const differ = VALIDATED_CAPS.filter((c) => caps.includes(c) !== validatedCaps.includes(c));
  if (differ.length) {
    fail(
      r,
      differ
        .map((c) => {
          const here = validatedCaps.includes(c) ? 'on' : 'off';
          return `Capability ${c} is ${here}, but received capability is ${here === 'on' ? 'off' : 'on'}`;
        })
        .join('; '),
      'configuration',
    );
  }
}

/** Reads a section footer and checks it names `id` (savevm.c check_section_footer's texts). */
export async function readFooter(r: QemuFileReader, id: number, section: string): Promise<void> {
  await r.need(5, `the footer of section ${section}`);
  const at = r.offset;
  const tag = r.u8();
  if (tag !== QEMU_VM_SECTION_FOOTER)
    throw new StreamError(
      `Missing section footer for ${section}: found byte 0x${tag.toString(16)}`,
      at,
      section,
    );
  const got = r.be32();
  if (got !== id) {
    throw new StreamError(
      `Mismatched section id in footer for ${section} - read 0x${got.toString(16)} expected 0x${id.toString(16)}`,
      at,
      section,
    );
  }
}

/** `timer` payload (v1: 16 bytes, v2: 24), values of no use to a guest without CPUs. */
export async function readTimer(r: QemuFileReader, version: number): Promise<void> {
  checkVersion(r, 'timer', version, 1, TIMER_VERSION);
  const n = version >= 2 ? 24 : 16;
  await r.need(n, 'the timer section');
  r.skip(n);
  await r.need(1, 'the timer section');
  if (r.peekU8() === QEMU_VM_SUBSECTION)
    fail(r, 'timer/icount is not supported (the source used -icount)', 'timer');
}

export interface GlobalState {
  /** A RunState name (checked). */
  runstate: RunState;
  /** The source's guest was suspended (vm_was_suspended). */
  suspended: boolean;
}

const RUN_STATES = schema.enumValues('RunState');

/**
 * `globalstate` v1 payload (QEMU 7.2's or 10.0's layout: both put the run state name first,
 * NUL-padded), read as QEMU 10.0 does (migration/global_state.c global_state_post_load): the
 * name is the first 32 bytes, cut at the first NUL and at most 31 long, and must be a RunState;
 * the size field is not used.
 * @throws {StreamError} `invalid parameter value: NAME` for anything else, as QEMU says.
 */
export async function readGlobalState(
  r: QemuFileReader,
  version = GLOBALSTATE_VERSION,
): Promise<GlobalState> {
  checkVersion(r, 'globalstate', version, 1, GLOBALSTATE_VERSION);
  await r.need(104, 'the globalstate section');
  const at = r.offset;
  r.skip(4);
  const raw = r.bytes(100);
  const field = raw.subarray(0, 31);
  const end = field.indexOf(0);
  const name = field.subarray(0, end < 0 ? 31 : end).toString('latin1');
  if (!RUN_STATES.includes(name))
    throw new StreamError(`invalid parameter value: ${name}`, at + 4, 'globalstate');
  // QEMU 10.0 takes vm_was_suspended whatever has_vm_was_suspended says (7.2 sends zeros there).
  return { runstate: name as RunState, suspended: raw[33] !== 0 || name === 'suspended' };
}
