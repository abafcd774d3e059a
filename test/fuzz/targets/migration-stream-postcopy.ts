/**
 * Fuzz target: a postcopy stream into the destination's loader (src/migration/incoming.ts,
 * postcopy-ram.ts; QEMU's loadvm_postcopy_handle_*). A valid postcopy stream (ADVISE, a
 * precopy part, a discard, the package with LISTEN, the devices and RUN, the rest of RAM,
 * EOF) is mutated and loaded: the load ends with a StreamError or completes; the guest runs
 * only from RUN on; a failure before RUN fails the migration, one after it pauses it (and the
 * pause is the end here); a completed load has every page present.
 */
import assert from 'node:assert/strict';
import { Readable, Writable } from 'node:stream';
import fc from 'fast-check';
import { GuestRam } from '../../../src/machine/ram.js';
import { loadVmState, type PostcopyHooks } from '../../../src/migration/incoming.js';
import { QemuFileReader, QemuFileWriter, StreamError } from '../../../src/migration/stream/qemu-file.js';
import {
  MIG_CMD_OPEN_RETURN_PATH,
  MIG_CMD_PACKAGED,
  MIG_CMD_PING,
  MIG_CMD_POSTCOPY_ADVISE,
  MIG_CMD_POSTCOPY_LISTEN,
  MIG_CMD_POSTCOPY_RAM_DISCARD,
  MIG_CMD_POSTCOPY_RUN,
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
} from '../../../src/migration/stream/savevm.js';
import { type Edit, edits, type Field, largestAllocation, mutate, within } from '../mutate.js';
import type { FuzzTarget } from './target.js';

const PAGE = 4096;
const PAGES = 16;

/** Bytes written by `write` through a QemuFileWriter, with the fields it marked. */
function written(write: (f: QemuFileWriter, mark: (...w: Field['width'][]) => void) => void, base = 0) {
  const chunks: Buffer[] = [];
  const f = new QemuFileWriter(
    new Writable({
      write(c: Buffer, _e, cb) {
        chunks.push(c);
        cb();
      },
    }),
  );
  const fields: Field[] = [];
  const mark = (...widths: Field['width'][]) => {
    let at = base + f.transferred + f.pendingBytes;
    for (const width of widths) {
      fields.push({ at, width });
      at += width;
    }
  };
  write(f, mark);
  f.flush();
  return { bytes: Buffer.concat(chunks), fields };
}

const be64 = (v: number) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(v));
  return b;
};

/** A page record: PAGE with its data (or ZERO), the block named on the first. */
function pageRecord(f: QemuFileWriter, p: number, first: boolean): void {
  const zero = p % 3 === 0;
  f.be64(p * PAGE + (zero ? 0x02 : 0x08) + (first ? 0 : 0x20));
  if (first) f.cstr('m0');
  if (zero) f.u8(0);
  else f.bytes(Buffer.alloc(PAGE, p + 1));
}

function writeStream(): { bytes: Buffer; fields: Field[] } {
  const pkg = written((f) => {
    writeCommand(f, MIG_CMD_POSTCOPY_LISTEN);
    writeTimer(f);
    writeGlobalState(f, 'running');
    const ping = Buffer.alloc(4);
    ping.writeUInt32BE(3);
    writeCommand(f, MIG_CMD_PING, ping);
    writeCommand(f, MIG_CMD_POSTCOPY_RUN);
  });
  return written((f, mark) => {
    mark(4, 4, 1, 4);
    writeHeader(f);
    writeCommand(f, MIG_CMD_OPEN_RETURN_PATH);
    mark(1, 2, 2, 8, 8);
    writeCommand(f, MIG_CMD_POSTCOPY_ADVISE, Buffer.concat([be64(PAGE), be64(PAGE)]));
    mark(1, 4, 1);
    writeSectionStart(f, QEMU_VM_SECTION_START, SECTION_ID.ram, 'ram', RAM_VERSION);
    mark(8, 1);
    f.be64(PAGES * PAGE + 0x04);
    f.cstr('m0');
    f.be64(PAGES * PAGE);
    mark(8);
    pageRecord(f, 1, true);
    pageRecord(f, 2, false);
    f.be64(0x10);
    writeFooter(f, SECTION_ID.ram);
    mark(1, 2, 2, 1, 1);
    writeCommand(
      f,
      MIG_CMD_POSTCOPY_RAM_DISCARD,
      Buffer.concat([Buffer.from([0, 2]), Buffer.from('m0'), Buffer.from([0]), be64(2 * PAGE), be64(PAGE)]),
    );
    mark(1, 2, 2, 4);
    const len = Buffer.alloc(4);
    len.writeUInt32BE(pkg.bytes.length);
    writeCommand(f, MIG_CMD_PACKAGED, len);
    f.bytes(pkg.bytes);
    mark(1, 4);
    writeSectionPart(f, QEMU_VM_SECTION_PART, SECTION_ID.ram);
    for (let p = 0; p < PAGES; p++) {
      if (p === 1) continue;
      mark(8);
      pageRecord(f, p, p === 0);
    }
    f.be64(0x10);
    writeFooter(f, SECTION_ID.ram);
    writeSectionPart(f, QEMU_VM_SECTION_END, SECTION_ID.ram);
    f.be64(0x10);
    writeFooter(f, SECTION_ID.ram);
    f.u8(QEMU_VM_EOF);
  });
}

let base: { bytes: Buffer; fields: Field[] } | undefined;

/** Loads `data` with postcopy on; returns what happened. */
async function load(data: Buffer, piece: number) {
  const ram = new GuestRam();
  const block = ram.add('m0', Buffer.alloc(PAGES * PAGE), false);
  const out = { ran: false, paused: false, advised: false, listened: false, error: undefined as unknown };
  const hooks: PostcopyHooks = {
    postcopyRam: true,
    blocktime: true,
    status: () => 'postcopy-active',
    listen() {
      out.listened = true;
    },
    run() {
      out.ran = true;
    },
    async pause(e) {
      out.paused = true;
      throw e;
    },
    resumed() {},
    warn() {},
    advised() {
      out.advised = true;
    },
  };
  const chunks: Buffer[] = [];
  for (let i = 0; i < data.length; i += piece) chunks.push(data.subarray(i, i + piece));
  const sink = new Writable({
    write(_c, _e, cb) {
      cb();
    },
  });
  try {
    await within(
      loadVmState(new QemuFileReader(Readable.from(chunks)), ram, sink, undefined, hooks),
      10_000,
      'the load',
    );
  } catch (e) {
    out.error = e;
  }
  return { out, block };
}

const inputs = fc
  .tuple(edits, fc.constantFrom(1 << 20, 4096, 1000, 7))
  .map(([es, piece]) => ({ edits: es, piece }));

export async function checkPostcopyStream(data: Buffer, piece: number): Promise<void> {
  const [{ out, block }, largest] = await largestAllocation(() => load(data, piece));
  assert.ok(largest <= data.length + (1 << 20), `an allocation of ${largest} bytes for ${data.length}`);
  if (out.error === undefined) {
    // A stream whose postcopy never went past ADVISE (its LISTEN or PACKAGED edited away) ends
    // as a precopy and may load as one, as in QEMU; one that listened must have run.
    assert.ok(out.ran || !out.listened, 'a postcopy completed after LISTEN without RUN');
    assert.equal(block.receivedMap, undefined, 'completed with presence still tracked');
    return;
  }
  assert.ok(out.error instanceof StreamError, `not a StreamError: ${out.error}`);
  // Paused exactly when the guest had been started.
  assert.equal(out.paused, out.ran, `ran ${out.ran}, paused ${out.paused}: ${(out.error as Error).message}`);
}

export const targets: FuzzTarget[] = [
  {
    name: 'migration/stream-postcopy',
    ciRuns: 300,
    property: () =>
      fc.asyncProperty(inputs, async ({ edits: es, piece }) => {
        base ??= writeStream();
        await checkPostcopyStream(mutate(base.bytes, base.fields, es as Edit[]), piece);
      }),
  },
];
