/**
 * Fuzz targets: the QMP JSON input (src/qapi/json-stream.ts, QEMU's qobject/json-lexer.c,
 * json-streamer.c and json-parser.c) and the whole-text parsers of src/qapi/json.ts. Values of
 * QEMU's JSON (single-quoted strings too) are written out, cut into chunks and mutated.
 */
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { QmigrateError } from '../../../src/errors.js';
import { intValue, parseJson, stringifyJson } from '../../../src/qapi/json.js';
import { JsonStreamer, qobjectFromJson, type StreamItem } from '../../../src/qapi/json-stream.js';
import type { FuzzTarget } from './target.js';

/** A code point QEMU's parser takes in a string (util/unicode.c: no surrogates, no noncharacters). */
const goodChar = fc
  .oneof(
    fc.constantFrom('a', ' ', '"', "'", '\\', '/', '\n', '\t', '\b', '\u0001', 'é', '€', '😀', '\u007f'),
    fc.string({ unit: 'grapheme', minLength: 1, maxLength: 1 }),
  )
  .filter((c) =>
    [...c].every((ch) => {
      const cp = ch.codePointAt(0)!;
      return cp !== 0 && !(cp >= 0xfdd0 && cp <= 0xfdef) && (cp & 0xfffe) !== 0xfffe;
    }),
  );
const str = fc.array(goodChar, { maxLength: 12 }).map((a) => a.join(''));

/** A JSON value as the streamer hands it over: safe integers as numbers, others as bigint. */
const { value } = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', maxDepth: 6 },
    fc.constant(null),
    fc.boolean(),
    fc.integer(),
    fc.bigInt({ min: -(1n << 63n), max: (1n << 64n) - 1n }).map(intValue),
    // Integral doubles come back as integers (QEMU writes 1.0 as 1): only fractional ones here.
    fc.double({ noNaN: true, noDefaultInfinity: true }).filter((d) => !Number.isInteger(d)),
    str,
    fc.array(tie('value'), { maxLength: 5 }),
    fc
      .uniqueArray(fc.tuple(fc.oneof(str, fc.constantFrom('__proto__', 'execute', 'id')), tie('value')), {
        maxLength: 5,
        selector: ([k]) => k,
      })
      .map((pairs) => {
        const o: Record<string, unknown> = {};
        for (const [k, v] of pairs)
          Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
        return o;
      }),
  ),
}));

/** A string in QEMU's other spellings: single quotes, raw UTF-8, \u escapes of everything. */
function quoteAs(s: string, style: number): string {
  const q = style === 1 ? "'" : '"';
  let out = q;
  for (const ch of s) {
    const cp = ch.codePointAt(0)!;
    if (ch === q || ch === '\\') out += `\\${ch}`;
    else if (cp < 0x20) out += `\\u${cp.toString(16).padStart(4, '0')}`;
    else if (style === 2) {
      for (let i = 0; i < ch.length; i++) out += `\\u${ch.charCodeAt(i).toString(16).padStart(4, '0')}`;
    } else out += ch;
  }
  return out + q;
}

/** Writes a value with QEMU's writer (style 0) or in another spelling QEMU's parser accepts. */
function write(v: unknown, style: number, ws: string): string {
  if (style === 0) return stringifyJson(v);
  if (typeof v === 'string') return quoteAs(v, style);
  if (Array.isArray(v)) return `[${ws}${v.map((x) => write(x, style, ws)).join(`,${ws}`)}${ws}]`;
  if (v !== null && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    const members = Object.keys(o).map((k) => `${quoteAs(k, style)}${ws}:${ws}${write(o[k], style, ws)}`);
    return `{${ws}${members.join(`,${ws}`)}${ws}}`;
  }
  return stringifyJson(v);
}

const text = fc
  .tuple(value, fc.nat(2), fc.constantFrom('', ' ', '\t', '\r\n', '  \n'))
  .map(([v, style, ws]) => ({ v, text: write(v, style, ws) }));

/** Bytes that matter to the lexer, for insertions. */
const special = fc.constantFrom(
  ...'{}[],:"\'\\ \n\t0-.eE+tfnu%x'.split('').map((c) => c.charCodeAt(0)),
  0x00,
  0x01,
  0x7f,
  0x80,
  0xc0,
  0xe2,
  0xed,
  0xf4,
  0xfe,
  0xff,
);
const edits = fc.array(
  fc.tuple(fc.nat(), fc.nat(3), fc.array(fc.oneof(special, fc.nat(255)), { maxLength: 4 })),
  { maxLength: 5 },
);

function mutate(bytes: Buffer, list: [number, number, number[]][]): Buffer {
  let b = bytes;
  for (const [at, del, ins] of list) {
    const i = at % (b.length + 1);
    b = Buffer.concat([b.subarray(0, i), Buffer.from(ins), b.subarray(Math.min(b.length, i + del))]);
  }
  return b;
}

/** Feeds `bytes` cut at `cuts`; `stop` makes onItem ask feed() to stop after every item. */
function stream(bytes: Buffer, cuts: number[], stop = false): StreamItem[] {
  const items: StreamItem[] = [];
  const s = new JsonStreamer((item) => {
    items.push(item);
    return !stop;
  });
  const at = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  let prev = 0;
  for (const c of [...at, bytes.length]) {
    let rest = bytes.subarray(prev, c);
    let idle = 0;
    while (rest.length) {
      const taken = s.feed(rest);
      idle = taken === 0 ? idle + 1 : 0;
      assert.ok(idle < 2, 'feed() made no progress');
      rest = rest.subarray(taken);
    }
    prev = c;
  }
  return items;
}

/** Whatever a whole-text parser throws must be the project's own error. */
function ownErrorsOnly(what: string, input: string, fn: () => unknown): void {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof QmigrateError, `${what}(${JSON.stringify(input)}) threw ${String(e)}`);
  }
}

const cuts = fc.array(fc.nat(), { maxLength: 6 });

export const targets: FuzzTarget[] = [
  {
    name: 'qmp/json-roundtrip',
    ciRuns: 1500,
    property: () =>
      fc.property(text, cuts, ({ v, text }, at) => {
        const bytes = Buffer.from(`${text}\n`, 'utf8');
        assert.deepEqual(stream(bytes, at), [{ value: v }], text);
        assert.deepEqual(parseJson(text), v, text);
        assert.deepEqual(qobjectFromJson(text), v, text);
        // QEMU's writer and reader agree. (Not text -> value -> text: members that share a QDict
        // bucket come out newest first, so each pass through QEMU reverses them.)
        assert.deepEqual(parseJson(stringifyJson(v)), v);
      }),
  },
  {
    name: 'qmp/json-mutated',
    ciRuns: 2500,
    property: () =>
      fc.property(text, edits, cuts, fc.boolean(), ({ text }, list, at, stop) => {
        const bytes = mutate(Buffer.from(`${text}\n`, 'utf8'), list);
        // The same items however the bytes arrive, and with feed() stopping after each item.
        const whole = stream(bytes, []);
        assert.deepEqual(stream(bytes, at, stop), whole);
        for (const item of whole) {
          if ('error' in item) assert.equal(typeof item.error, 'string');
        }
        // Recovery: a 0xFF byte is a lexer error that resets the parser, as QEMU documents for
        // resynchronising (guest-sync-delimited); the next request then parses on its own.
        const next = { execute: 'query-status', id: 7 };
        const after = stream(
          Buffer.concat([bytes, Buffer.from('\xff\n{"execute":"query-status","id":7}', 'latin1')]),
          at,
        );
        assert.deepEqual(after.at(-1), { value: next });
        const asText = bytes.toString('utf8');
        ownErrorsOnly('parseJson', asText, () => parseJson(asText));
        ownErrorsOnly('qobjectFromJson', asText, () => qobjectFromJson(asText));
      }),
  },
];
