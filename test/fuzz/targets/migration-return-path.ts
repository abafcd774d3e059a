/**
 * Fuzz target: the source's return-path reader (src/migration/stream/return-path.ts, QEMU's
 * source_return_path_thread). What a destination sends back (PONGs, then SHUT), as the
 * project's loader writes it and as QEMU 10.0 sent it, mutated (types, lengths, REQ_PAGES and
 * other postcopy messages, cuts...): the reader ends with SHUT's value, a QapiError naming
 * the message, or a StreamError when the path ends; nothing larger than a message's cap is
 * allocated.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import fc from 'fast-check';
import { QemuFileReader, StreamError } from '../../../src/migration/stream/qemu-file.js';
import { RP_MESSAGE_MAX, readReturnPath } from '../../../src/migration/stream/return-path.js';
import { QapiError } from '../../../src/qapi/errors.js';
import { edits, type Field, largestAllocation, mutate, within } from '../mutate.js';
import type { FuzzTarget } from './target.js';

const msg = (type: number, payload: Buffer) => {
  const b = Buffer.alloc(4);
  b.writeUInt16BE(type, 0);
  b.writeUInt16BE(payload.length, 2);
  return Buffer.concat([b, payload]);
};
const be32 = (v: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v);
  return b;
};
/** REQ_PAGES_ID (3): be64 start, be32 length, a counted block name; REQ_PAGES (4): no name. */
const reqPagesId = msg(
  3,
  Buffer.concat([Buffer.alloc(8), be32(0x1000), Buffer.from([2]), Buffer.from('m0')]),
);
const reqPages = msg(4, Buffer.concat([Buffer.alloc(8), be32(0x1000)]));
/** RECV_BITMAP (5), RESUME_ACK (6), SWITCHOVER_ACK (7): postcopy recovery and the ack. */
const others = [msg(5, Buffer.from('\x02m0', 'latin1')), msg(6, be32(1)), msg(7, Buffer.alloc(0))];

interface Base {
  bytes: Buffer;
  fields: Field[];
}

/** Fields of a run of messages: each one's type and length, and its first payload word. */
function fieldsOf(b: Buffer): Field[] {
  const fields: Field[] = [];
  for (let at = 0; at + 4 <= b.length; at += 4 + b.readUInt16BE(at + 2)) {
    fields.push({ at, width: 2 }, { at: at + 2, width: 2 });
    if (b.readUInt16BE(at + 2) >= 4) fields.push({ at: at + 4, width: 4 });
  }
  return fields;
}

const bases: Base[] = [
  Buffer.concat([msg(2, be32(1)), msg(2, be32(2)), msg(1, be32(0))]),
  Buffer.concat([msg(2, be32(1)), reqPagesId, reqPages, msg(1, be32(1))]),
  Buffer.concat([msg(7, Buffer.alloc(0)), ...others, msg(1, be32(0))]),
  readFileSync(new URL('../../fixtures/samples/qemu10-none-16M-multifd2-rp/conn0.s2c', import.meta.url)),
].map((bytes) => ({ bytes, fields: fieldsOf(bytes) }));

/** One mutated return path through the reader; throws when it broke a promise. */
export async function checkReturnPath(data: Buffer, piece: number): Promise<void> {
  const chunks: Buffer[] = [];
  for (let i = 0; i < data.length; i += piece) chunks.push(data.subarray(i, i + piece));
  const [outcome, largest] = await largestAllocation(() =>
    within(
      readReturnPath(new QemuFileReader(Readable.from(chunks), 1 << 16)).then(
        (v) => ({ v }),
        (e: unknown) => ({ e }),
      ),
      5000,
      'the return-path reader',
    ),
  );
  assert.ok(largest <= RP_MESSAGE_MAX, `an allocation of ${largest} bytes`);
  if ('e' in outcome)
    assert.ok(outcome.e instanceof QapiError || outcome.e instanceof StreamError, `${outcome.e}`);
  else assert.ok(Number.isInteger(outcome.v) && outcome.v >= 0 && outcome.v <= 0xffffffff);
}

export const targets: FuzzTarget[] = [
  {
    name: 'migration/return-path',
    ciRuns: 1000,
    property: () =>
      fc.asyncProperty(fc.nat(bases.length - 1), edits, fc.constantFrom(1, 3, 4096), async (k, es, piece) => {
        const base = bases[k]!;
        await checkReturnPath(mutate(base.bytes, base.fields, es), piece);
      }),
  },
];
