/**
 * Fuzz target: a multifd channel's reader (src/migration/multifd.ts MultifdReceiver.parseInit
 * and MultifdChannel; QEMU's multifd_recv_initial_packet, multifd_recv_unfill_packet). A
 * channel as the project's encoder writes it (init packet, packets of normal and zero pages,
 * SYNC packets), and a real QEMU 10.0 channel, are mutated (magic, version, flags,
 * pages_alloc, page counts, offsets, block names, cuts...) and fed to the reader: it takes
 * the channel or stops it with a StreamError, never another exception, never writes outside
 * the named block, and allocates nothing from a length the peer sent.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { GuestRam } from '../../../src/machine/ram.js';
import { MultifdReceiver } from '../../../src/migration/multifd.js';
import {
  encodeMultifdHeader,
  encodeMultifdInit,
  MULTIFD_FLAG_SYNC,
  MULTIFD_HEADER,
  MULTIFD_INIT_SIZE,
  MULTIFD_PAGES,
} from '../../../src/migration/stream/multifd-packet.js';
import { StreamError } from '../../../src/migration/stream/qemu-file.js';
import { edits, type Field, largestAllocation, mutate, within } from '../mutate.js';
import type { FuzzTarget } from './target.js';

const PAGE = 4096;

interface Base {
  bytes: Buffer;
  fields: Field[];
  /** Channels the destination expects. */
  count: number;
  blocks: [string, number][];
}

/** A packet's fields (multifd-packet.ts's layout) at `at`, with `offsets` offsets. */
function packetFields(at: number, offsets: number): Field[] {
  const f: Field[] = [0, 4, 8, 12, 16, 20, 32].map((o) => ({ at: at + o, width: 4 }));
  f.push({ at: at + 24, width: 8 }, { at: at + 64, width: 1 }, { at: at + 65, width: 1 });
  for (let k = 0; k < Math.max(offsets, 1); k++) f.push({ at: at + 320 + 8 * k, width: 8 });
  return f;
}

/** One channel of a 64-page guest: pages with data, zero pages, a SYNC, more pages. */
function writeChannel(): Base {
  const parts: Buffer[] = [encodeMultifdInit({ id: 0 })];
  const fields: Field[] = [
    { at: 0, width: 4 },
    { at: 4, width: 4 },
    { at: 8, width: 1 },
    { at: 24, width: 1 },
  ];
  let at = MULTIFD_INIT_SIZE;
  let num = 0;
  const packet = (ramblock: string, normal: number[], zero: number[], flags = 0) => {
    const offsets = [...normal, ...zero].map((p) => p * PAGE);
    const n = normal.length + zero.length;
    const h = encodeMultifdHeader({
      flags,
      pagesAlloc: n ? MULTIFD_PAGES : 0,
      normalPages: normal.length,
      nextPacketSize: normal.length * PAGE,
      packetNum: num++,
      zeroPages: zero.length,
      ramblock: n ? ramblock : '',
      offsets,
    });
    fields.push(...packetFields(at, offsets.length));
    parts.push(h, ...normal.map((p) => Buffer.alloc(PAGE, p + 1)));
    at += MULTIFD_HEADER + normal.length * PAGE;
  };
  packet('m0', [0, 1, 2, 9], [3, 4, 63]);
  packet('pc.bios', [1], [0, 2]);
  packet('', [], [], MULTIFD_FLAG_SYNC);
  packet('m0', [62], [5]);
  packet('', [], [], MULTIFD_FLAG_SYNC);
  return {
    bytes: Buffer.concat(parts),
    fields,
    count: 2,
    blocks: [
      ['m0', 64 * PAGE],
      ['pc.bios', 4 * PAGE],
    ],
  };
}

let bases: Base[] | undefined;
function getBases(): Base[] {
  bases ??= [
    writeChannel(),
    {
      // QEMU 10.0's second connection (channel 0 of 2) of a 16 MiB guest.
      bytes: readFileSync(
        new URL('../../fixtures/samples/qemu10-none-16M-multifd2-rp/conn1.c2s', import.meta.url),
      ),
      fields: packetFields(MULTIFD_INIT_SIZE, MULTIFD_PAGES),
      count: 2,
      blocks: [['m0', 16 << 20]],
    },
  ];
  return bases;
}

const FEED_TIMEOUT_MS = 10_000;

/** How a channel's bytes ended on the reader. */
interface Outcome {
  error?: unknown;
  syncs: number;
}

/**
 * Feeds `data` to a destination's channel as a socket would (in pieces of `piece` bytes), as
 * channel.ts does: the init packet first, then the packets into the buffers the channel names.
 */
async function feed(data: Buffer, base: Base, ram: GuestRam, piece: number): Promise<Outcome> {
  if (data.length < MULTIFD_INIT_SIZE) return { syncs: 0 };
  let id: number;
  try {
    id = MultifdReceiver.parseInit(data.subarray(0, MULTIFD_INIT_SIZE), base.count);
  } catch (e) {
    return { error: e, syncs: 0 };
  }
  // One channel is enough for this one's syncs to be released.
  const receiver = new MultifdReceiver(ram, 1);
  let error: unknown;
  let reported = 0;
  const ch = receiver.channel(
    id,
    () => {},
    (e) => {
      error = e;
      reported++;
    },
  );
  let pos = MULTIFD_INIT_SIZE;
  let syncs = 0;
  while (pos < data.length) {
    const t = ch.target();
    assert.ok(t.length > 0, 'the channel named an empty buffer to read into');
    const n = Math.min(t.length, piece, data.length - pos);
    data.copy(t, 0, pos, pos + n);
    pos += n;
    if (ch.filled(n)) continue;
    if (error !== undefined) break;
    syncs++;
    await receiver.syncMain();
  }
  if (error === undefined) ch.end();
  assert.ok(reported <= 1, `${reported} errors reported for one channel`);
  return { error, syncs };
}

/**
 * Checks one mutated channel; throws when the reader broke a promise.
 * @returns the reader's error, and how many SYNC packets it reached.
 */
export async function checkChannel(data: Buffer, base: Base, piece: number): Promise<Outcome> {
  const ram = new GuestRam();
  // Sentinels around the blocks: a write outside a block would land in one of these.
  const backing = base.blocks.map(([, len]) => Buffer.alloc(len + 2 * PAGE, 0xee));
  for (const [k, [name, len]] of base.blocks.entries()) ram.add(name, backing[k]!.subarray(PAGE, PAGE + len));
  const [out, largest] = await largestAllocation(() =>
    within(feed(data, base, ram, piece), FEED_TIMEOUT_MS, 'the channel'),
  );
  if (out.error !== undefined) assert.ok(out.error instanceof StreamError, `not a StreamError: ${out.error}`);
  assert.ok(largest <= MULTIFD_HEADER, `an allocation of ${largest} bytes`);
  for (const b of backing) {
    const ok = (x: number) => x === 0xee;
    assert.ok(
      b.subarray(0, PAGE).every(ok) && b.subarray(b.length - PAGE).every(ok),
      'a page was written outside its block',
    );
  }
  return out;
}

export const targets: FuzzTarget[] = [
  {
    name: 'migration/multifd',
    ciRuns: 250,
    property: () =>
      fc.asyncProperty(fc.nat(1), edits, fc.constantFrom(1 << 20, 4096, 1000, 7), async (k, es, piece) => {
        const base = getBases()[k]!;
        // QEMU's 600 KB channel in 7-byte pieces would be 88,000 of them: 1000 at least there.
        await checkChannel(
          mutate(base.bytes, base.fields, es),
          base,
          k === 1 ? Math.max(piece, 1000) : piece,
        );
      }),
  },
];

/** For regression tests: 0, the encoder's channel; 1, QEMU 10.0's. */
export function channelBase(k: number): Base {
  return getBases()[k]!;
}
