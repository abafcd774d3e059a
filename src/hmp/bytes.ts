/**
 * Byte strings and C-style text helpers for the HMP layer. QEMU's monitor works on C strings:
 * its tokeniser, its 1024-byte argument buffer and readline all count bytes, and printf
 * stops at a NUL. HMP code here therefore keeps user input as "byte strings" (one char per
 * byte, code points 0-255) and converts at the edges (qemu/qemu: monitor/monitor.c
 * monitor_puts, include/qemu/ctype.h).
 */

/** A JS string (UTF-16) as the byte string of its UTF-8 encoding. */
export function toBytes(text: string): string {
  return Buffer.from(text, 'utf8').toString('latin1');
}

/** A byte string back to a JS string, decoding UTF-8 (invalid sequences become U+FFFD). */
export function fromBytes(bytes: string): string {
  return Buffer.from(bytes, 'latin1').toString('utf8');
}

/** qemu_isspace() in the C locale. `undefined` stands for the terminating NUL. */
export function isSpace(c: string | undefined): boolean {
  return c === ' ' || c === '\t' || c === '\n' || c === '\v' || c === '\f' || c === '\r';
}

/** qemu_isgraph() in the C locale: printable and not a space. */
export function isGraph(c: string | undefined): boolean {
  if (c === undefined) return false;
  const code = c.charCodeAt(0);
  return code > 0x20 && code < 0x7f;
}

/**
 * Collects monitor output as QEMU's monitor_printf() produces it: each call is one C
 * string, so text after an embedded NUL is lost, and every `\n` goes out as `\r\n`.
 */
export class MonitorOutput {
  #buf = '';

  /** Prints a byte string (user input, literals). */
  printBytes(bytes: string): void {
    const nul = bytes.indexOf('\0');
    const s = nul >= 0 ? bytes.slice(0, nul) : bytes;
    this.#buf += s.replaceAll('\n', '\r\n');
  }

  /** Prints a JS string (text from the backend), encoded as UTF-8. */
  print(text: string): void {
    this.printBytes(toBytes(text));
  }

  /** Everything printed so far, as a byte string; clears the buffer. */
  take(): string {
    const s = this.#buf;
    this.#buf = '';
    return s;
  }
}

const UINT64 = (1n << 64n) - 1n;

/** A QAPI integer as the uint64 C would print with PRIu64 (negative values wrap). */
export function u64(v: unknown): bigint {
  const n = numeric(v);
  if (typeof n === 'bigint') return n & UINT64;
  return BigInt(Math.trunc(n)) & UINT64;
}

/** A number, bigint or JsonDouble-like `{ value: number }` as number | bigint (else 0). */
export function numeric(v: unknown): number | bigint {
  if (typeof v === 'number' || typeof v === 'bigint') return v;
  if (typeof v === 'object' && v !== null && 'value' in v) {
    const inner = (v as { value: unknown }).value;
    if (typeof inner === 'number') return inner;
  }
  return 0;
}

/** A double as a real number (for %f); bigint converted. */
function toDouble(v: unknown): number {
  const n = numeric(v);
  return typeof n === 'bigint' ? Number(n) : n;
}

/**
 * printf("%0.2f") as glibc does it: the exact binary value rounded to two decimals, ties to
 * even (JS toFixed rounds ties away from zero, e.g. 0.125).
 */
export function fixed2(v: unknown): string {
  const d = toDouble(v);
  const buf = new DataView(new ArrayBuffer(8));
  buf.setFloat64(0, d);
  const bits = buf.getBigUint64(0);
  const neg = bits >> 63n === 1n;
  if (Number.isNaN(d)) return neg ? '-nan' : 'nan';
  if (!Number.isFinite(d)) return neg ? '-inf' : 'inf';
  // d = ±mant * 2^exp exactly.
  const biased = Number((bits >> 52n) & 0x7ffn);
  const frac = bits & ((1n << 52n) - 1n);
  const mant = biased === 0 ? frac : frac | (1n << 52n);
  const exp = (biased === 0 ? 1 : biased) - 1075;
  let hundredths: bigint;
  if (exp >= 0) hundredths = mant * 100n * (1n << BigInt(exp));
  else {
    const num = mant * 100n;
    const den = 1n << BigInt(-exp);
    const q = num / den;
    const twice = (num % den) * 2n;
    hundredths = twice > den || (twice === den && q % 2n === 1n) ? q + 1n : q;
  }
  const s = hundredths.toString().padStart(3, '0');
  return `${neg ? '-' : ''}${s.slice(0, -2)}.${s.slice(-2)}`;
}
