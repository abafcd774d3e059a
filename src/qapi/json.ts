/**
 * JSON values as QEMU's QObject layer sees them (qobject/json-parser.c, qobject/qnum.c).
 *
 * JSON.parse loses two distinctions QEMU's input visitor depends on: `1` (an integer) versus
 * `1.0` (a double, which an integer member rejects), and integers past 2^53, which QEMU keeps
 * exact up to 2^64 - 1. This module keeps both: integers that are not safe JS numbers become
 * bigint, and doubles with an integral value are wrapped in {@link JsonDouble}.
 */
import { QmigrateError } from '../errors.js';

/** A JSON number written as a double (`1.0`, `1e3`) whose value happens to be integral. */
export class JsonDouble {
  constructor(readonly value: number) {}
  toJSON(): number {
    return this.value;
  }
}

const INT64_MIN = -(1n << 63n);
const INT64_MAX = (1n << 63n) - 1n;
const UINT64_MAX = (1n << 64n) - 1n;

/** QEMU's QNum kinds: QNUM_I64, QNUM_U64 (only above INT64_MAX) and QNUM_DOUBLE. */
export type QNum =
  | { readonly kind: 'i64'; readonly value: bigint }
  | { readonly kind: 'u64'; readonly value: bigint }
  | { readonly kind: 'double'; readonly value: number };

/**
 * Classifies a JS value as QEMU would have parsed it, or returns undefined when it is not a
 * number. Integral JS numbers outside the safe range count as doubles: they are inexact, and
 * exact 64-bit values travel as bigint.
 */
export function toQNum(v: unknown): QNum | undefined {
  if (v instanceof JsonDouble) return { kind: 'double', value: v.value };
  if (typeof v === 'number') {
    if (Number.isSafeInteger(v)) return { kind: 'i64', value: BigInt(v) };
    return { kind: 'double', value: v };
  }
  if (typeof v === 'bigint') {
    if (v >= INT64_MIN && v <= INT64_MAX) return { kind: 'i64', value: v };
    if (v > INT64_MAX && v <= UINT64_MAX) return { kind: 'u64', value: v };
    return { kind: 'double', value: Number(v) };
  }
  return undefined;
}

/** An exact integer as the friendliest JS type: a number when safe, else a bigint. */
export function intValue(v: bigint): number | bigint {
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

/** Parses an integer lexeme the way QEMU's parser does: int64, else uint64, else double. */
function numberFromLexeme(text: string): unknown {
  if (/^-?\d+$/.test(text)) {
    const big = BigInt(text);
    if (big >= INT64_MIN && big <= UINT64_MAX) return intValue(big);
  }
  const d = Number(text);
  return Number.isInteger(d) ? new JsonDouble(d) : d;
}

/** A text that is not one well-formed JSON value; `offset` is where parsing stopped. */
export class JsonSyntaxError extends QmigrateError {
  constructor(
    message: string,
    readonly offset: number,
  ) {
    super('JSON_SYNTAX', `${message} at offset ${offset}`);
  }
}

/**
 * Parses one JSON text into plain JS values (objects, arrays, strings, booleans, null) with
 * numbers as described above. Accepts QEMU's extension of single-quoted strings.
 * @throws {JsonSyntaxError} when the text is not one well-formed JSON value.
 */
export function parseJson(text: string): unknown {
  return new JsonParser(text).parse();
}

/** A recursive-descent parser over one text; `#pos` is where it reads next. */
class JsonParser {
  readonly #text: string;
  #pos = 0;

  constructor(text: string) {
    this.#text = text;
  }

  parse(): unknown {
    const v = this.#value(0);
    this.#ws();
    if (this.#pos !== this.#text.length) this.#fail('trailing characters');
    return v;
  }

  #ws(): void {
    const text = this.#text;
    while (this.#pos < text.length) {
      const c = text.charCodeAt(this.#pos);
      if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) this.#pos++;
      else break;
    }
  }

  #fail(what: string): never {
    throw new JsonSyntaxError(what, this.#pos);
  }

  /** Reads `c` if it comes next. */
  #eat(c: string): boolean {
    if (this.#text[this.#pos] !== c) return false;
    this.#pos++;
    return true;
  }

  #value(depth: number): unknown {
    if (depth > 1024) this.#fail('nesting too deep');
    this.#ws();
    const c = this.#text[this.#pos];
    if (c === '{') return this.#object(depth);
    if (c === '[') return this.#array(depth);
    if (c === '"' || c === "'") return this.#string();
    return this.#scalar();
  }

  #object(depth: number): Record<string, unknown> {
    this.#pos++;
    const obj: Record<string, unknown> = {};
    this.#ws();
    if (this.#eat('}')) return obj;
    for (;;) {
      this.#ws();
      const q = this.#text[this.#pos];
      if (q !== '"' && q !== "'") this.#fail('expected a string key');
      const key = this.#string();
      this.#ws();
      if (!this.#eat(':')) this.#fail("expected ':'");
      const v = this.#value(depth + 1);
      // Not `obj[key] = v`: a key `__proto__` must become a member, not the prototype.
      Object.defineProperty(obj, key, { value: v, enumerable: true, writable: true, configurable: true });
      this.#ws();
      if (this.#eat(',')) continue;
      if (this.#eat('}')) return obj;
      this.#fail("expected ',' or '}'");
    }
  }

  #array(depth: number): unknown[] {
    this.#pos++;
    const arr: unknown[] = [];
    this.#ws();
    if (this.#eat(']')) return arr;
    for (;;) {
      arr.push(this.#value(depth + 1));
      this.#ws();
      if (this.#eat(',')) continue;
      if (this.#eat(']')) return arr;
      this.#fail("expected ',' or ']'");
    }
  }

  /** A number or a literal word. */
  #scalar(): unknown {
    const text = this.#text;
    const m = /^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/.exec(text.slice(this.#pos, this.#pos + 400));
    if (m && m[0].length > 0) {
      this.#pos += m[0].length;
      return numberFromLexeme(m[0]);
    }
    for (const [word, v] of [
      ['true', true],
      ['false', false],
      ['null', null],
      // QEMU writes non-finite doubles this way; accepted so clients can read its output.
      ['-inf', Number.NEGATIVE_INFINITY],
      ['inf', Number.POSITIVE_INFINITY],
      ['nan', Number.NaN],
    ] as const) {
      if (text.startsWith(word, this.#pos)) {
        this.#pos += word.length;
        return v;
      }
    }
    return this.#fail('unexpected token');
  }

  /** A string in double or single quotes; the runs between escapes are copied in one slice. */
  #string(): string {
    const text = this.#text;
    const quote = text[this.#pos++];
    let out = '';
    let start = this.#pos;
    for (;;) {
      if (this.#pos >= text.length) this.#fail('unterminated string');
      const c = text[this.#pos];
      if (c === quote) {
        out += text.slice(start, this.#pos);
        this.#pos++;
        return out;
      }
      if (c !== undefined && c.charCodeAt(0) < 0x20) this.#fail('control character in string');
      if (c === '\\') {
        out += text.slice(start, this.#pos);
        out += this.#escape();
        start = this.#pos;
        continue;
      }
      this.#pos++;
    }
  }

  /** The escape at `#pos` (its backslash included), read and decoded. */
  #escape(): string {
    const text = this.#text;
    const e = text[this.#pos + 1];
    this.#pos += 2;
    switch (e) {
      case '"':
      case "'":
      case '\\':
      case '/':
        return e;
      case 'b':
        return '\b';
      case 'f':
        return '\f';
      case 'n':
        return '\n';
      case 'r':
        return '\r';
      case 't':
        return '\t';
      case 'u': {
        const hex = text.slice(this.#pos, this.#pos + 4);
        if (!/^[0-9a-fA-F]{4}$/.test(hex)) this.#fail('bad \\u escape');
        this.#pos += 4;
        return String.fromCharCode(Number.parseInt(hex, 16));
      }
      default:
        return this.#fail('bad escape');
    }
  }
}

/**
 * QDict's hash (qobject/qdict.c uses the tdb hash), which fixes the order in which QEMU
 * writes an object's members: by bucket, and newest first within a bucket.
 */
function tdbHash(key: string): number {
  const bytes = Buffer.from(key, 'utf8');
  let v = Math.imul(0x238f13af, bytes.length) >>> 0;
  for (let i = 0; i < bytes.length; i++) v = (v + ((bytes[i]! << ((i * 5) % 24)) >>> 0)) >>> 0;
  return (Math.imul(1103515243, v) + 12345) >>> 0;
}

const QDICT_BUCKETS = 512;

/** An object's keys in the order QEMU's JSON writer emits them. */
export function qdictOrder(keys: readonly string[]): string[] {
  return keys
    .map((k, i) => ({ k, i, b: tdbHash(k) % QDICT_BUCKETS }))
    .sort((x, y) => x.b - y.b || y.i - x.i)
    .map((e) => e.k);
}

/** printf's `%.17g`, which QEMU uses for doubles. */
export function formatDouble(d: number): string {
  if (Number.isNaN(d)) return 'nan';
  if (!Number.isFinite(d)) return d > 0 ? 'inf' : '-inf';
  if (d === 0) return Object.is(d, -0) ? '-0' : '0';
  const [mant, expText] = d.toExponential(16).split('e') as [string, string];
  const exp = Number(expText);
  if (exp < -4 || exp >= 17) {
    const m = mant.includes('.') ? mant.replace(/\.?0+$/, '') : mant;
    return `${m}e${exp < 0 ? '-' : '+'}${String(Math.abs(exp)).padStart(2, '0')}`;
  }
  const fixed = d.toFixed(Math.max(0, 16 - exp));
  return fixed.includes('.') ? fixed.replace(/\.?0+$/, '') : fixed;
}

/** Any UTF-16 unit that is escaped: all but printable ASCII less quote and backslash. */
const NEEDS_ESCAPE = /[^\x20\x21\x23-\x5b\x5d-\x7e]/;
const HEX = Buffer.from('0123456789ABCDEF', 'latin1');
/** The one-letter escapes QEMU's JSON writer uses, by code unit. */
const SHORT_ESCAPE: Record<number, number> = {
  34: 0x22,
  92: 0x5c,
  8: 0x62,
  12: 0x66,
  10: 0x6e,
  13: 0x72,
  9: 0x74,
};

/**
 * A string as QEMU writes it: ASCII printable as is, everything else escaped (\uXXXX upper
 * case, each UTF-16 unit). Written into one Buffer, so that an id or a quoted stray token of
 * many MiB costs a few times its size (appending one character at a time grew the process by
 * 1 GiB for a 30 MiB id).
 */
function quote(s: string): string {
  if (!NEEDS_ESCAPE.test(s)) return `"${s}"`;
  const out = Buffer.allocUnsafe(s.length * 6 + 2);
  let o = 0;
  out[o++] = 0x22;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x20 && c < 0x7f && c !== 0x22 && c !== 0x5c) {
      out[o++] = c;
      continue;
    }
    out[o++] = 0x5c;
    const short = SHORT_ESCAPE[c];
    if (short !== undefined) {
      out[o++] = short;
      continue;
    }
    out[o++] = 0x75;
    out[o++] = HEX[c >> 12]!;
    out[o++] = HEX[(c >> 8) & 15]!;
    out[o++] = HEX[(c >> 4) & 15]!;
    out[o++] = HEX[c & 15]!;
  }
  out[o++] = 0x22;
  return out.toString('latin1', 0, o);
}

/**
 * Serialises a value byte for byte as QEMU's JSON writer does (qobject/qjson.c): `": "` and
 * `", "` separators, members in QDict order, doubles as `%.17g`, non-ASCII escaped. bigint is
 * written exactly; integral JS numbers as integers.
 */
export function stringifyJson(value: unknown): string {
  if (value === null || value === undefined) return 'null';
  if (typeof value === 'bigint') return value.toString();
  if (typeof value === 'number') return Number.isSafeInteger(value) ? String(value) : formatDouble(value);
  if (value instanceof JsonDouble) return formatDouble(value.value);
  if (typeof value === 'string') return quote(value);
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  if (Array.isArray(value)) return value.length ? `[${value.map((v) => stringifyJson(v)).join(', ')}]` : '[]';
  if (typeof value === 'object') {
    const obj = value as Record<string, unknown>;
    const keys = qdictOrder(Object.keys(obj).filter((k) => obj[k] !== undefined));
    return keys.length ? `{${keys.map((k) => `${quote(k)}: ${stringifyJson(obj[k])}`).join(', ')}}` : '{}';
  }
  return 'null';
}
