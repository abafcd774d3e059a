/**
 * QMP input framing: splits a raw QMP byte stream into JSON values and parse errors exactly as
 * QEMU 10.0 does, so our server answers malformed input with QEMU's replies. Mirrors the lexer
 * (qobject/json-lexer.c), the message splitter and its limits (qobject/json-streamer.c), the
 * parser (qobject/json-parser.c) and, for error texts, util/unicode.c and qobject/json-writer.c.
 */
import { genericError } from './errors.js';
import { intValue, JsonDouble } from './json.js';

export type StreamItem = { value: unknown } | { error: string };

// Lexer states. ERR is 0 so that every byte a state does not list is an error.
const ERR = 0;
const RECOVERY = 1;
const DQ_ESC = 2;
const DQ = 3;
const SQ_ESC = 4;
const SQ = 5;
const ZERO = 6;
const EXP_DIGITS = 7;
const EXP_SIGN = 8;
const EXP_E = 9;
const MANTISSA = 10;
const MANTISSA_DIGITS = 11;
const DIGITS = 12;
const SIGN = 13;
const KEYWORD = 14;
const START = 15;
// Token types share the byte space with the states and sort above them.
const T_LCURLY = 16;
const T_RCURLY = 17;
const T_LSQUARE = 18;
const T_RSQUARE = 19;
const T_COLON = 20;
const T_COMMA = 21;
const T_INTEGER = 22;
const T_FLOAT = 23;
const T_KEYWORD = 24;
const T_STRING = 25;
/** A token cut off for outgrowing the size limit; no grammar token, the splitter always rejects it. */
const T_OVERSIZE = 26;
/** Transition flag: the byte ends the current token but is not part of it. */
const LOOKAHEAD = 0x80;

/** (state << 8 | byte) -> next state or token type, possibly with LOOKAHEAD. */
const TABLE = buildTable();

function buildTable(): Uint8Array {
  const t = new Uint8Array(16 * 256); // all ERR
  const range = (s: number, lo: number, hi: number, v: number) =>
    t.fill(v, (s << 8) | lo, ((s << 8) | hi) + 1);
  const chars = (s: number, cs: string, v: number) => {
    for (const c of cs) t[(s << 8) | c.charCodeAt(0)] = v;
  };
  const digits = (s: number, v: number) => chars(s, '0123456789', v);

  // After an error QEMU skips input up to something that can plausibly start a fresh message:
  // a structural character, a control character other than tab, or the bytes 0xFE/0xFF that
  // never occur in UTF-8. That byte is then lexed normally.
  range(RECOVERY, 0x00, 0x1f, START | LOOKAHEAD);
  range(RECOVERY, 0x20, 0xfd, RECOVERY);
  range(RECOVERY, 0xfe, 0xff, START | LOOKAHEAD);
  chars(RECOVERY, '\t', RECOVERY);
  chars(RECOVERY, '[]{}:,', START | LOOKAHEAD);

  // Strings take any byte but controls and 0xFE/0xFF, and any such byte after a backslash;
  // escapes and UTF-8 are judged later by the parser.
  for (const [body, esc, quote] of [
    [DQ, DQ_ESC, '"'],
    [SQ, SQ_ESC, "'"],
  ] as const) {
    range(esc, 0x20, 0xfd, body);
    range(body, 0x20, 0xfd, body);
    chars(body, '\\', esc);
    chars(body, quote, T_STRING);
  }

  // Numbers: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?, but a digit right after a leading
  // zero is an error rather than the end of the token.
  range(ZERO, 0x00, 0xff, T_INTEGER | LOOKAHEAD);
  digits(ZERO, ERR);
  chars(ZERO, '.', MANTISSA);
  range(DIGITS, 0x00, 0xff, T_INTEGER | LOOKAHEAD);
  digits(DIGITS, DIGITS);
  chars(DIGITS, 'eE', EXP_E);
  chars(DIGITS, '.', MANTISSA);
  chars(SIGN, '0', ZERO);
  chars(SIGN, '123456789', DIGITS);
  digits(MANTISSA, MANTISSA_DIGITS);
  range(MANTISSA_DIGITS, 0x00, 0xff, T_FLOAT | LOOKAHEAD);
  digits(MANTISSA_DIGITS, MANTISSA_DIGITS);
  chars(MANTISSA_DIGITS, 'eE', EXP_E);
  chars(EXP_E, '+-', EXP_SIGN);
  digits(EXP_E, EXP_DIGITS);
  digits(EXP_SIGN, EXP_DIGITS);
  range(EXP_DIGITS, 0x00, 0xff, T_FLOAT | LOOKAHEAD);
  digits(EXP_DIGITS, EXP_DIGITS);

  // Any run of lowercase letters is a keyword token; the parser rejects unknown ones.
  range(KEYWORD, 0x00, 0xff, T_KEYWORD | LOOKAHEAD);
  range(KEYWORD, 0x61, 0x7a, KEYWORD);

  // No '%' here: QMP input runs without QEMU's interpolation extension.
  chars(START, '"', DQ);
  chars(START, "'", SQ);
  chars(START, '0', ZERO);
  chars(START, '123456789', DIGITS);
  chars(START, '-', SIGN);
  chars(START, '{', T_LCURLY);
  chars(START, '}', T_RCURLY);
  chars(START, '[', T_LSQUARE);
  chars(START, ']', T_RSQUARE);
  chars(START, ':', T_COLON);
  chars(START, ',', T_COMMA);
  range(START, 0x61, 0x7a, KEYWORD);
  chars(START, ' \t\r\n', START);
  return t;
}

/** A string token the parser will reject, with the error it reports once it gets there. */
class BadString {
  constructor(readonly desc: string) {}
}

/**
 * Streams QMP input: feed() it socket bytes in any split; it calls onItem once per reply QEMU
 * would send for them, in order. onItem must not throw; when it returns `false`, feed() stops
 * right after that item and returns how many bytes it took, so a reader can stop at a message
 * boundary as QEMU's suspended monitor does. Limits default to QEMU's (qobject/json-streamer.c):
 * 64 MiB per token and per message, 2 Mi tokens per message, and 1024 open brackets and braces.
 * Every byte costs the same whatever came before it: tokens are kept in flat arrays and a message
 * is parsed once, so an over-long message costs O(its length) up to the limit that drops it.
 */
export class JsonStreamer {
  readonly #onItem: (item: StreamItem) => boolean | unknown;
  readonly #maxTokenSize: number;
  readonly #maxTokenCount: number;
  readonly #maxNesting: number;

  // Lexer: state, and the bytes of the current token held over from earlier chunks.
  #state = START;
  #carry: Uint8Array[] = [];
  #carryLen = 0;

  // Splitter: the tokens of the message being collected and its bracket balance.
  #types: number[] = [];
  #vals: unknown[] = [];
  #size = 0;
  #braces = 0;
  #brackets = 0;
  /** Set when onItem asked feed() to stop. */
  #stop = false;

  constructor(
    onItem: (item: StreamItem) => boolean | unknown,
    limits?: { maxTokenSize?: number; maxTokenCount?: number; maxNesting?: number },
  ) {
    this.#onItem = onItem;
    this.#maxTokenSize = limits?.maxTokenSize ?? 64 * 1024 * 1024;
    this.#maxTokenCount = limits?.maxTokenCount ?? 2 * 1024 * 1024;
    this.#maxNesting = limits?.maxNesting ?? 1024;
  }

  /**
   * Feeds raw bytes as they arrive from the socket (any split, even inside a UTF-8 sequence or
   * a token).
   * @returns the number of bytes taken: all of them, unless onItem returned false; the caller
   *   feeds the rest later.
   */
  feed(chunk: Uint8Array): number {
    const n = chunk.length;
    const max = this.#maxTokenSize;
    let state = this.#state;
    let start = 0; // where the current token begins in this chunk (after any carry)
    this.#stop = false;
    for (let i = 0; i < n; i++) {
      if (state === DQ || state === SQ) {
        // Fast path through string bodies, stopping short of the size limit so that the
        // byte crossing it goes through the checks below.
        const quote = state === DQ ? 0x22 : 0x27;
        const stop = Math.min(n, start + max - this.#carryLen);
        while (i < stop) {
          const c = chunk[i]!;
          if (c < 0x20 || c > 0xfd || c === quote || c === 0x5c) break;
          i++;
        }
        if (i === n) break;
      }
      const b = chunk[i]!;
      let next = TABLE[(state << 8) | b]!;
      if (next & LOOKAHEAD) {
        // The byte ends the token before it (or ends error recovery); lex it again from START.
        next &= 0x7f;
        if (next !== START) this.#lexed(next, chunk, start, i);
        start = i;
        if (this.#stop) {
          // The byte is not taken: the next feed() lexes it from START, as here.
          this.#state = START;
          return i;
        }
        next = TABLE[(START << 8) | b]!;
      }
      if (next >= T_LCURLY) {
        this.#lexed(next, chunk, start, i + 1);
        state = START;
        start = i + 1;
      } else if (next === ERR) {
        // The offending byte is part of the reported token; skip what follows it.
        this.#lexed(ERR, chunk, start, i + 1);
        state = RECOVERY;
        start = i + 1;
      } else if (next === START || next === RECOVERY) {
        state = next;
        start = i + 1;
      } else {
        state = next;
        if (this.#carryLen + i + 1 - start > max) {
          // QEMU hands the oversized token on and lexes the rest from scratch.
          this.#lexed(T_OVERSIZE, chunk, start, i + 1);
          state = START;
          start = i + 1;
        }
      }
      if (this.#stop) {
        // Only a finished token emits an item, so nothing is held over.
        this.#state = state;
        return i + 1;
      }
    }
    this.#state = state;
    if (start < n && state !== START && state !== RECOVERY) {
      // A copy: the caller may reuse its buffer (and Buffer#slice would not copy).
      this.#carry.push(Uint8Array.prototype.slice.call(chunk, start, n));
      this.#carryLen += n - start;
    }
    return n;
  }

  /**
   * End of input. QEMU's QMP monitor does not flush its parser when a client disconnects; it
   * discards it, so a partial message at EOF gets no reply. This does the same: it emits
   * nothing and leaves the streamer fresh, as for a new connection.
   */
  end(): void {
    this.#state = START;
    this.#dropCarry();
    this.#reset();
  }

  /**
   * End of a whole text, as json_message_parser_flush (qobject_from_json's): the token being
   * lexed ends as at a NUL, without that NUL being lexed again, and a partial message is parsed
   * (`JSON parse error, premature EOI`). The streamer is fresh afterwards.
   */
  flush(): void {
    if (this.#state !== START && this.#state !== RECOVERY) {
      const next = TABLE[(this.#state << 8) | 0]!;
      const type = next & LOOKAHEAD ? next & 0x7f : ERR;
      if (type !== START) this.#lexed(type, new Uint8Array(0), 0, 0);
    }
    if (this.#types.length) this.#emit(parseTokens(this.#types, this.#vals));
    this.end();
  }

  #dropCarry(): void {
    if (this.#carryLen) {
      this.#carry = [];
      this.#carryLen = 0;
    }
  }

  /** The full bytes of the token ending at chunk[end). */
  #bytes(chunk: Uint8Array, start: number, end: number): Buffer {
    const tail = chunk.subarray(start, end);
    if (!this.#carryLen) return Buffer.from(tail.buffer, tail.byteOffset, tail.length);
    return Buffer.concat([...this.#carry, tail]);
  }

  /** One token from the lexer: json-streamer.c's bookkeeping, limits and message boundaries. */
  #lexed(type: number, chunk: Uint8Array, start: number, end: number): void {
    const len = this.#carryLen + end - start;
    switch (type) {
      case T_LCURLY:
        this.#braces++;
        break;
      case T_RCURLY:
        this.#braces--;
        break;
      case T_LSQUARE:
        this.#brackets++;
        break;
      case T_RSQUARE:
        this.#brackets--;
        break;
      case ERR: {
        const desc = strayDesc(this.#bytes(chunk, start, end));
        this.#dropCarry();
        this.#emit({ error: desc });
        return;
      }
    }
    // Limits are checked before the token joins the message; exceeding one drops the message.
    let limit: string | undefined;
    if (this.#size + len + 1 > this.#maxTokenSize) limit = 'JSON token size limit exceeded';
    else if (this.#types.length + 1 > this.#maxTokenCount) limit = 'JSON token count limit exceeded';
    else if (this.#brackets + this.#braces > this.#maxNesting) limit = 'JSON nesting depth limit exceeded';
    if (limit) {
      this.#dropCarry();
      this.#emit({ error: limit });
      return;
    }

    let val: unknown;
    if (type === T_STRING) val = decodeString(this.#bytes(chunk, start, end));
    else if (type === T_INTEGER || type === T_FLOAT || type === T_KEYWORD) {
      const text = this.#bytes(chunk, start, end).toString('latin1');
      val = type === T_KEYWORD ? text : type === T_INTEGER ? integer(text) : double(text);
    }
    this.#dropCarry();
    this.#types.push(type);
    this.#vals.push(val);
    this.#size += len;

    // A message ends when the brackets balance, or as soon as either count goes negative.
    if ((this.#braces > 0 || this.#brackets > 0) && this.#braces >= 0 && this.#brackets >= 0) return;
    this.#emit(parseTokens(this.#types, this.#vals));
  }

  /** Forgets the message collected so far, then reports an item (QEMU resets before emitting). */
  #emit(item: StreamItem): void {
    this.#reset();
    if (this.#onItem(item) === false) this.#stop = true;
  }

  #reset(): void {
    if (this.#types.length) {
      this.#types = [];
      this.#vals = [];
    }
    this.#size = 0;
    this.#braces = 0;
    this.#brackets = 0;
  }
}

function parseError(message: string): { error: string } {
  return { error: `JSON parse error, ${message}` };
}

/**
 * Parses one message's tokens as json-parser.c does: recursive descent in effect (made
 * iterative here, so a raised nesting limit cannot overflow the JS stack), stopping at the
 * first error.
 */
function parseTokens(types: number[], vals: unknown[]): StreamItem {
  return new TokenParser(types, vals).parse();
}

/** An open container: an array, or an object with the key whose value comes next. */
type Frame = { arr: unknown[]; obj?: undefined } | { obj: Record<string, unknown>; key: string | undefined };

/** What #value() returns for a container with members: they come next. */
const OPENED = Symbol('opened');

/** What #value() returns for an error: the item to emit. */
class Failed {
  constructor(readonly item: StreamItem) {}
}

const premature = () => parseError('premature EOI');

/** The parser's position in the tokens and its stack of open containers. */
class TokenParser {
  readonly #types: number[];
  readonly #vals: unknown[];
  readonly #stack: Frame[] = [];
  #pos = 0;

  constructor(types: number[], vals: unknown[]) {
    this.#types = types;
    this.#vals = vals;
  }

  parse(): StreamItem {
    for (;;) {
      const value = this.#value();
      if (value === OPENED) continue;
      if (value instanceof Failed) return value.item;
      const item = this.#settle(value);
      if (item) return item;
    }
  }

  /** The value that starts at `#pos`: a scalar or an empty container, else OPENED or Failed. */
  #value(): unknown {
    const types = this.#types;
    const count = types.length;
    if (this.#pos >= count) return new Failed(premature());
    switch (types[this.#pos++]) {
      case T_LCURLY:
        if (this.#pos >= count) return new Failed(premature());
        if (types[this.#pos] === T_RCURLY) {
          this.#pos++;
          return {};
        }
        this.#stack.push({ obj: {}, key: undefined });
        return OPENED;
      case T_LSQUARE:
        if (this.#pos >= count) return new Failed(premature());
        if (types[this.#pos] === T_RSQUARE) {
          this.#pos++;
          return [];
        }
        this.#stack.push({ arr: [] });
        return OPENED;
      case T_INTEGER:
      case T_FLOAT:
        return this.#vals[this.#pos - 1];
      case T_STRING: {
        const value = this.#vals[this.#pos - 1];
        if (value instanceof BadString) return new Failed({ error: value.desc });
        return value;
      }
      case T_KEYWORD: {
        const word = this.#vals[this.#pos - 1] as string;
        if (word === 'true') return true;
        if (word === 'false') return false;
        if (word === 'null') return null;
        // QEMU formats parser messages into a 1024-byte buffer, cutting long keywords short.
        return new Failed(parseError(`invalid keyword '${word}'`.slice(0, 1023)));
      }
      default:
        return new Failed(parseError('expecting value'));
    }
  }

  /**
   * A value is complete: gives it to the enclosing containers, closing those that end here.
   * @returns the message (or its error) once it is done; undefined when a value comes next.
   */
  #settle(value: unknown): StreamItem | undefined {
    const types = this.#types;
    const count = types.length;
    for (;;) {
      const f = this.#stack[this.#stack.length - 1];
      if (!f) return { value };
      if (f.obj === undefined) {
        f.arr.push(value);
        if (this.#pos >= count) return premature();
        const sep = types[this.#pos++];
        if (sep === T_COMMA) return undefined;
        if (sep !== T_RSQUARE) return parseError('expected separator in list');
        value = f.arr;
        this.#stack.pop();
        continue;
      }
      if (f.key === undefined) {
        if (typeof value !== 'string') return parseError('key is not a string in object');
        if (this.#pos >= count) return premature();
        if (types[this.#pos++] !== T_COLON) return parseError('missing : in object pair');
        f.key = value;
        return undefined;
      }
      if (Object.hasOwn(f.obj, f.key)) return parseError('duplicate key');
      Object.defineProperty(f.obj, f.key, { value, enumerable: true, writable: true, configurable: true });
      f.key = undefined;
      if (this.#pos >= count) return premature();
      const sep = types[this.#pos++];
      if (sep === T_COMMA) return undefined;
      if (sep !== T_RCURLY) return parseError('expected separator in dict');
      value = f.obj;
      this.#stack.pop();
    }
  }
}

const INT64_MIN = -(1n << 63n);
const INT64_MAX = (1n << 63n) - 1n;
const UINT64_MAX = (1n << 64n) - 1n;

/** An integer token: int64, else (unless negative) uint64, else a double. */
function integer(text: string): unknown {
  // Up to 15 characters cannot leave the safe range; `|| 0` turns "-0" into QEMU's int 0.
  if (text.length <= 15) return Number(text) || 0;
  const big = BigInt(text);
  if ((big >= INT64_MIN && big <= INT64_MAX) || (big > 0n && big <= UINT64_MAX)) return intValue(big);
  return double(text);
}

/** A double (strtod and JS agree: both round correctly, and overflow to infinity). */
function double(text: string): number | JsonDouble {
  const d = Number(text);
  return Number.isInteger(d) ? new JsonDouble(d) : d;
}

function validCodepoint(cp: number): boolean {
  return (
    cp >= 0 &&
    cp <= 0x10ffff &&
    !(cp >= 0xfdd0 && cp <= 0xfdef) &&
    (cp & 0xfffe) !== 0xfffe &&
    !(cp >= 0xd800 && cp <= 0xdfff)
  );
}

/** End of the sequence last decoded by modUtf8. */
let seqEnd = 0;

/**
 * QEMU's modified-UTF-8 decoder (util/unicode.c): the codepoint at s[i], or -1 when invalid.
 * "\xC0\x80" is U+0000; overlong forms, surrogates, noncharacters and values past U+10FFFF
 * are invalid. Sets seqEnd past the bytes it took, which for a truncated sequence is only the
 * lead byte and the continuation bytes present.
 */
function modUtf8(s: Uint8Array, i: number): number {
  const lead = s[i]!;
  seqEnd = i + 1;
  if (lead < 0x80) return lead;
  if (lead >= 0xfe || (lead & 0x40) === 0) return -1;
  let len = 2;
  while (lead & (0x80 >> len)) len++;
  let cp = lead & ((0x80 >> len) - 1);
  for (let k = 1; k < len; k++) {
    const b = s[i + k] ?? 0;
    if ((b & 0xc0) !== 0x80) return -1;
    seqEnd = i + k + 1;
    cp = cp * 64 + (b & 0x3f); // multiply: six-byte forms pass 2^31
  }
  if (!validCodepoint(cp)) return -1;
  const min = len === 2 ? 0x80 : len === 3 ? 0x800 : len === 4 ? 0x10000 : len === 5 ? 0x200000 : 0x4000000;
  if (cp < min && !(cp === 0 && len === 2)) return -1;
  return cp;
}

/**
 * The text a JSON client reads from QEMU's reply for these desc bytes: QEMU's JSON writer
 * decodes them like modUtf8 and writes U+FFFD for each invalid sequence. A C string, so it
 * ends at the first NUL.
 */
function writerText(bytes: Uint8Array): string {
  let out = '';
  let ascii = 0;
  let i = 0;
  for (; i < bytes.length; ) {
    const b = bytes[i]!;
    if (b === 0) break;
    if (b < 0x80) {
      i++;
      continue;
    }
    out += Buffer.from(bytes.buffer, bytes.byteOffset + ascii, i - ascii).toString('latin1');
    const cp = modUtf8(bytes, i);
    out += cp < 0 ? '\ufffd' : String.fromCodePoint(cp);
    i = ascii = seqEnd;
  }
  return out + Buffer.from(bytes.buffer, bytes.byteOffset + ascii, i - ascii).toString('latin1');
}

const STRAY_HEAD = Buffer.from("JSON parse error, stray '", 'latin1');
const QUOTE = Buffer.from("'", 'latin1');

/** QEMU prints the rejected token with %s, so a NUL in it (always its last byte) is dropped. */
function strayDesc(token: Uint8Array): string {
  const nul = token.indexOf(0);
  return writerText(Buffer.concat([STRAY_HEAD, nul >= 0 ? token.subarray(0, nul) : token, QUOTE]));
}

function hex4(s: Uint8Array, i: number): number {
  let cp = 0;
  for (let k = i; k < i + 4; k++) {
    const c = s[k] ?? 0;
    const d =
      c >= 0x30 && c <= 0x39
        ? c - 0x30
        : c >= 0x61 && c <= 0x66
          ? c - 0x57
          : c >= 0x41 && c <= 0x46
            ? c - 0x37
            : -1;
    if (d < 0) return -1;
    cp = (cp << 4) | d;
  }
  return cp;
}

const SIMPLE_ESCAPES: Record<number, string> = {
  34: '"',
  39: "'",
  92: '\\',
  47: '/',
  98: '\b',
  102: '\f',
  110: '\n',
  114: '\r',
  116: '\t',
};

/** A whole string token (quotes included) as json-parser.c decodes it, or the error it reports. */
function decodeString(tok: Buffer): string | BadString {
  const end = tok.length - 1; // the closing quote
  let out = '';
  let run = 1; // start of the pending run of plain ASCII
  let i = 1;
  while (i < end) {
    const b = tok[i]!;
    if (b < 0x80 && b !== 0x5c) {
      i++;
      continue;
    }
    if (i > run) out += tok.toString('latin1', run, i);
    if (b === 0x5c) {
      const beg = i;
      const e = tok[i + 1]!;
      i += 2;
      const simple = SIMPLE_ESCAPES[e];
      if (simple !== undefined) out += simple;
      else if (e === 0x75) {
        let cp = hex4(tok, i);
        i += 4;
        if (cp >= 0xd800 && cp <= 0xdbff && tok[i] === 0x5c && tok[i + 1] === 0x75) {
          const low = hex4(tok, i + 2);
          if (low >= 0xdc00 && low <= 0xdfff) {
            cp = 0x10000 + ((cp & 0x3ff) << 10) + (low & 0x3ff);
            i += 6;
          } else cp = -1;
        }
        if (!validCodepoint(cp)) {
          // The message quotes the escape text with %.*s, which stops at the token's end.
          const text = writerText(tok.subarray(beg, Math.min(i, tok.length)));
          return new BadString(`JSON parse error, ${text} is not a valid Unicode character`);
        }
        out += String.fromCodePoint(cp);
      } else return new BadString('JSON parse error, invalid escape sequence in string');
    } else {
      const cp = modUtf8(tok, i);
      if (cp < 0) return new BadString('JSON parse error, invalid UTF-8 sequence in string');
      out += String.fromCodePoint(cp);
      i = seqEnd;
    }
    run = i;
  }
  return i > run ? out + tok.toString('latin1', run, i) : out;
}

/**
 * One JSON value from a whole text, as qobject/qjson.c's qobject_from_json takes `-object`'s
 * and `object_add`'s JSON form: the first error, or a second value, fails it.
 * @returns the value (undefined for a text without one).
 * @throws {QapiError} with QEMU 10.0's text (`JSON parse error, premature EOI`,
 * `Expecting at most one JSON value`, ...).
 */
export function qobjectFromJson(text: string): unknown {
  let result: { value: unknown } | undefined;
  let error: string | undefined;
  const streamer = new JsonStreamer((item) => {
    if (error !== undefined) return;
    if (result) {
      result = undefined;
      error = 'Expecting at most one JSON value';
    } else if ('error' in item) error = item.error;
    else result = item;
  });
  streamer.feed(Buffer.from(text, 'utf8'));
  streamer.flush();
  if (error !== undefined) throw genericError(error);
  return result?.value;
}
