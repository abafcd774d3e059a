/**
 * Fuzz target: the main stream's loader (src/migration/incoming.ts, stream/savevm.ts, ram.ts;
 * QEMU's qemu_loadvm_state). Valid streams written by the project's own writer for a small
 * guest, and a real QEMU 10.0 stream, are mutated (cuts, bit flips, inserted and deleted bytes,
 * fields set to extremes) and loaded: the load ends (the input is finite) with a StreamError or
 * succeeds, allocates nothing larger than the input allows, and a failed load never starts the
 * guest nor leaves the incoming migration anything but `failed`.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Readable, Writable } from 'node:stream';
import fc from 'fast-check';
import { GuestRam } from '../../../src/machine/ram.js';
import { runIncoming } from '../../../src/migration/incoming.js';
import type { GuestRunState, Migration } from '../../../src/migration/migration.js';
import { RamSaver } from '../../../src/migration/ram.js';
import { QemuFileWriter } from '../../../src/migration/stream/qemu-file.js';
import {
  MIG_CMD_OPEN_RETURN_PATH,
  MIG_CMD_PING,
  MIG_CMD_SWITCHOVER_START,
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
} from '../../../src/migration/stream/savevm.js';
import type { RunState } from '../../../src/qapi/types.js';
import { type Edit, edits, type Field, largestAllocation, mutate, within } from '../mutate.js';
import type { FuzzTarget } from './target.js';

const PAGE = 4096;

/** The small guest: two blocks, a few pages with data, the rest zero. */
function smallRam(): GuestRam {
  const ram = new GuestRam();
  const a = Buffer.alloc(16 * PAGE);
  const b = Buffer.alloc(4 * PAGE);
  for (const p of [0, 5, 15]) a.fill(p * 7 + 1, p * PAGE, (p + 1) * PAGE);
  b.fill(0x5a, PAGE, 2 * PAGE);
  ram.add('m0', a);
  ram.add('pc.bios', b);
  return ram;
}

/** A stream as outgoing.ts writes it, and where its fields are (for the extreme values). */
function writeStream(returnPath: boolean): { bytes: Buffer; fields: Field[] } {
  const chunks: Buffer[] = [];
  const out = new Writable({
    write(c: Buffer, _e, cb) {
      chunks.push(c);
      cb();
    },
  });
  const f = new QemuFileWriter(out);
  const fields: Field[] = [];
  const here = () => f.transferred + f.pendingBytes;
  const mark = (...widths: Field['width'][]) => {
    let at = here();
    for (const width of widths) {
      fields.push({ at, width });
      at += width;
    }
  };
  mark(4, 4, 1, 4);
  writeHeader(f);
  if (returnPath) {
    writeCommand(f, MIG_CMD_OPEN_RETURN_PATH);
    mark(1, 2, 2, 4);
    const ping = Buffer.alloc(4);
    ping.writeUInt32BE(1);
    writeCommand(f, MIG_CMD_PING, ping);
  }
  const ram = new RamSaver(smallRam(), f, 'legacy');
  mark(1, 4, 1);
  writeSectionStart(f, QEMU_VM_SECTION_START, SECTION_ID.ram, 'ram', RAM_VERSION);
  fields.push({ at: here() - 8, width: 4 }, { at: here() - 4, width: 4 });
  mark(8, 1);
  ram.setup();
  // The block lengths sit 8 bytes before each name that follows, and at the end.
  ram.eos();
  mark(1, 4);
  writeFooter(f, SECTION_ID.ram);
  mark(1, 4);
  writeSectionPart(f, QEMU_VM_SECTION_PART, SECTION_ID.ram);
  // One page per call of stop(): every record's first word is a field.
  mark(8, 1);
  const each = () => {
    mark(8, 1);
    return true;
  };
  while (!ram.sendPages(each, 1)) {}
  ram.eos();
  writeFooter(f, SECTION_ID.ram);
  writeCommand(f, MIG_CMD_SWITCHOVER_START);
  mark(1, 4);
  writeSectionPart(f, QEMU_VM_SECTION_END, SECTION_ID.ram);
  mark(8);
  ram.eos();
  writeFooter(f, SECTION_ID.ram);
  mark(1, 4, 1);
  writeTimer(f);
  mark(1, 4, 1);
  fields.push({ at: here() + 15, width: 4 });
  writeGlobalState(f, 'running');
  mark(1, 1, 4);
  writeTrailer(f);
  f.flush();
  const bytes = Buffer.concat(chunks);
  return { bytes, fields: fields.filter((x) => x.at + x.width <= bytes.length) };
}

const sample = (name: string) => readFileSync(new URL(`../../fixtures/samples/${name}`, import.meta.url));

interface Base {
  bytes: Buffer;
  fields: Field[];
  ram: () => GuestRam;
  returnPath: boolean;
}

let bases: Base[] | undefined;
function getBases(): Base[] {
  if (bases) return bases;
  const withRp = writeStream(true);
  const without = writeStream(false);
  const qemu10 = sample('qemu10-none-16M-pattern.mig');
  const big = (name = 'm0') => {
    const ram = new GuestRam();
    ram.add(name, Buffer.alloc(16 << 20));
    return ram;
  };
  bases = [
    { ...withRp, ram: smallRam, returnPath: true },
    { ...without, ram: smallRam, returnPath: false },
    // The real stream's header and first fields; its pages are mostly mutated by position.
    { bytes: qemu10, fields: [], ram: big, returnPath: false },
    // QEMU 7.2's all-zero guest: its older globalstate and ZERO records for every page.
    { bytes: sample('qemu72-none-16M-zero.mig'), fields: [], ram: () => big('ram'), returnPath: false },
  ];
  return bases;
}

/** The base's bytes with the edits applied. */
function mutateBase(base: Base, es: readonly Edit[]): Buffer {
  return mutate(base.bytes, base.fields, es);
}

/** Which base, its edits, and the size of the pieces the transport delivers it in. */
const inputs = fc
  .tuple(fc.nat(3), edits, fc.constantFrom(1 << 20, 4096, 1000, 7))
  .map(([base, es, piece]) => ({ base, edits: es, piece }));

/** `data` in pieces of `piece` bytes, as a socket delivers a stream. */
function pieces(data: Buffer, piece: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < data.length; i += piece) out.push(data.subarray(i, i + piece));
  return out;
}

/** Largest allocation the loader may make: no more than it has been sent, and its 1 MiB chunks. */
const ALLOC_SLACK = 1 << 20;

/** What the destination did with its guest and its incoming status. */
interface Outcome {
  status: string;
  error: string | undefined;
  started: boolean;
  set: RunState[];
}

const LOAD_TIMEOUT_MS = 10_000;

/** Loads `data` the way the engine does (runIncoming), with a stand-in migration and guest. */
async function load(data: Buffer, base: Base, ram: GuestRam, piece: number): Promise<Outcome> {
  const out: Outcome = { status: 'none', error: undefined, started: false, set: [] };
  const m = {
    error: undefined as string | undefined,
    setIncomingStatus(s: string) {
      out.status = s;
    },
    incomingEnded() {},
    // Precopy streams: a POSTCOPY_ADVISE in them is refused (postcopy-ram off here).
    options: { caps: { 'postcopy-ram': false, 'postcopy-blocktime': false } },
  };
  const runstate: GuestRunState = {
    state: 'inmigrate',
    autostart: true,
    set: (s) => out.set.push(s),
    stop: () => {},
    start: () => {
      out.started = true;
    },
  };
  const rp = base.returnPath
    ? new Writable({
        write(_c, _e, cb) {
          cb();
        },
      })
    : undefined;
  const done = new Promise<void>((resolve) => {
    void runIncoming(
      m as unknown as Migration,
      ram,
      runstate,
      Readable.from(pieces(data, piece)),
      rp,
      (e) => {
        out.error = e;
        resolve();
      },
    );
  });
  await within(done, LOAD_TIMEOUT_MS, 'the load');
  return out;
}

/** Whether `s` has a C0, DEL or C1 control character. */
export const hasControl = (s: string): boolean => [...s].some((c) => c < ' ' || (c >= '\x7f' && c <= '\x9f'));

/**
 * One mutated stream through the loader; throws when a promise of the loader is broken.
 * @returns the load's error (undefined when it loaded).
 */
export async function checkStream(data: Buffer, base: Base, piece = 1 << 20): Promise<string | undefined> {
  const ram = base.ram();
  const [out, largest] = await largestAllocation(() => load(data, base, ram, piece));
  assert.ok(
    largest <= data.length + ALLOC_SLACK,
    `an allocation of ${largest} bytes for a stream of ${data.length}`,
  );
  if (out.error === undefined) {
    assert.equal(out.status, 'completed');
    return undefined;
  }
  assert.equal(out.status, 'failed', `status after ${out.error}`);
  assert.match(out.error, /^load of migration failed: .+ \(at byte \d+/s, `not a StreamError: ${out.error}`);
  assert.ok(!hasControl(out.error), `a raw control byte in: ${JSON.stringify(out.error)}`);
  assert.ok(!out.started && out.set.length === 0, `the guest was started from a failed load: ${out.error}`);
  return out.error;
}

export const targets: FuzzTarget[] = [
  {
    name: 'migration/stream',
    ciRuns: 300,
    property: () =>
      fc.asyncProperty(inputs, async ({ base, edits, piece }) => {
        const b = getBases()[base]!;
        // The real QEMU stream in 7-byte pieces would be 155,000 of them: 4 KiB at least there.
        await checkStream(mutateBase(b, edits), b, base >= 2 ? Math.max(piece, 4096) : piece);
      }),
  },
];

/** For regression tests: the bases (0: with a return path, 1: without, 2: QEMU 10.0's, 3: 7.2's). */
export function streamBase(k: number): Base {
  return getBases()[k]!;
}
export { mutateBase as mutateStream };
