/**
 * Fuzz target: the stream analyser (src/migration/stream/analyze.ts, `qmigrate analyze`).
 * The real QEMU 10.0 and 7.2 samples, and a small stream whose VM description has every field
 * kind (integers of each width, bool, buffer, a struct array, a subsection), are mutated (cuts,
 * bit flips, inserted and deleted bytes, fields set to extremes) and analysed: the analysis
 * ends with a result or a StreamError carrying a byte offset inside the input, never another
 * throw or a hang, and allocates nothing much larger than the input.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { analyzeBuffer } from '../../../src/migration/stream/analyze.js';
import { StreamError } from '../../../src/migration/stream/qemu-file.js';
import { edits, type Field, largestAllocation, mutate, within } from '../mutate.js';
import type { FuzzTarget } from './target.js';

const sample = (name: string) => readFileSync(new URL(`../../fixtures/samples/${name}`, import.meta.url));

const DESCRIPTION = {
  page_size: 4096,
  devices: [
    {
      name: 'dev',
      instance_id: 0,
      vmsd_name: 'dev',
      version: 1,
      fields: [
        { name: 'a', type: 'int8', size: 1 },
        { name: 'b', type: 'uint16', size: 2 },
        { name: 'c', type: 'int32', size: 4 },
        { name: 'd', type: 'int64', size: 8 },
        { name: 'e', type: 'bool', size: 1 },
        { name: 'f', type: 'buffer', size: 6 },
        {
          name: 'g',
          array_len: 2,
          type: 'struct',
          size: 3,
          struct: {
            vmsd_name: 'g',
            version: 1,
            fields: [
              { name: 'x', type: 'uint8', size: 1 },
              { name: 'y', type: 'uint16', size: 2 },
            ],
          },
        },
      ],
      subsections: [{ vmsd_name: 'dev/sub', version: 1, fields: [{ name: 'z', type: 'uint32', size: 4 }] }],
    },
  ],
};

/** A small stream with a 4-page block (two pages sent) and the `dev` section, and its fields. */
function devStream(): { bytes: Buffer; fields: Field[] } {
  const parts: Buffer[] = [];
  const fields: Field[] = [];
  let at = 0;
  const put = (b: Buffer, ...widths: Field['width'][]) => {
    let p = at;
    for (const width of widths) {
      fields.push({ at: p, width });
      p += width;
    }
    parts.push(b);
    at += b.length;
  };
  const u = (n: number, w: 1 | 2 | 4 | 8) => {
    const b = Buffer.alloc(w);
    b.writeUIntBE(n, w - Math.min(w, 6), Math.min(w, 6));
    return b;
  };
  const cstr = (s: string) => Buffer.concat([u(s.length, 1), Buffer.from(s, 'latin1')]);
  put(Buffer.concat([u(0x5145564d, 4), u(3, 4), u(7, 1), u(4, 4), Buffer.from('none')]), 4, 4, 1, 4);
  put(Buffer.concat([u(1, 1), u(1, 4), cstr('ram'), u(0, 4), u(4, 4)]), 1, 4, 1);
  put(Buffer.concat([u(4 * 4096 + 4, 8), cstr('m0'), u(4 * 4096, 8), u(0x10, 8), u(0x7e, 1), u(1, 4)]), 8, 1);
  put(Buffer.concat([u(2, 1), u(1, 4)]), 1, 4);
  put(Buffer.concat([u(0x1008, 8), cstr('m0'), Buffer.alloc(4096, 0xab)]), 8, 1);
  put(Buffer.concat([u(0x3022, 8), u(0, 1), u(0x200, 8), u(0x10, 8), u(0x7e, 1), u(1, 4)]), 8, 1, 8, 8);
  put(Buffer.concat([u(8, 1), u(11, 2), u(0, 2)]), 1, 2, 2);
  put(Buffer.concat([u(4, 1), u(2, 4), cstr('dev'), u(0, 4), u(1, 4)]), 1, 4, 1);
  put(
    Buffer.concat([u(0xff, 1), u(0xfffe, 2), u(0x80000000, 4), Buffer.from('fffffffffffffffe', 'hex')]),
    1,
    2,
    4,
    8,
  );
  put(Buffer.concat([u(1, 1), Buffer.from('abcdef'), u(1, 1), u(2, 2), u(3, 1), u(4, 2)]), 1);
  put(Buffer.concat([u(5, 1), cstr('dev/sub'), u(1, 4), u(0xdeadbeef, 4), u(0x7e, 1), u(2, 4)]), 1, 1, 4, 4);
  const json = Buffer.from(JSON.stringify(DESCRIPTION));
  put(Buffer.concat([u(0, 1), u(6, 1), u(json.length, 4), json]), 1, 1, 4);
  return { bytes: Buffer.concat(parts), fields };
}

export interface Base {
  bytes: Buffer;
  fields: Field[];
}

let bases: Base[] | undefined;
export function analyzeBases(): Base[] {
  bases ??= [
    devStream(),
    { bytes: sample('qemu10-none-16M-pattern.mig'), fields: [] },
    { bytes: sample('qemu72-none-16M-zero.mig'), fields: [] },
  ];
  return bases;
}

const ANALYZE_TIMEOUT_MS = 10_000;
/** The analyser's own buffers besides copies of the input: a 64 Ki-page map piece is not a Buffer. */
const ALLOC_SLACK = 1 << 20;

/**
 * One input through the analyser; throws when a promise is broken.
 * @returns the StreamError's offset, or undefined when the input analysed.
 */
export async function checkAnalyze(data: Buffer): Promise<number | undefined> {
  const [outcome, largest] = await largestAllocation(() =>
    within(
      analyzeBuffer(data).then(
        () => undefined,
        (e: unknown) => e,
      ),
      ANALYZE_TIMEOUT_MS,
      'the analysis',
    ),
  );
  assert.ok(largest <= data.length + ALLOC_SLACK, `an allocation of ${largest} bytes for ${data.length}`);
  if (outcome === undefined) return undefined;
  assert.ok(outcome instanceof StreamError, `not a StreamError: ${(outcome as Error)?.stack ?? outcome}`);
  assert.ok(
    Number.isInteger(outcome.offset) && outcome.offset >= 0 && outcome.offset <= data.length,
    `offset ${outcome.offset}`,
  );
  return outcome.offset;
}

export const targets: FuzzTarget[] = [
  {
    name: 'migration/analyze',
    ciRuns: 300,
    property: () =>
      fc.asyncProperty(fc.nat(2), edits, async (k, es) => {
        const b = analyzeBases()[k]!;
        await checkAnalyze(mutate(b.bytes, b.fields, es));
      }),
  },
];
