/**
 * QEMU's size parser (qemu_strtosz in util/cutils.c), as used for `file:...,offset=` in
 * migration URIs and for HMP size arguments. Returns a value or the errno QEMU would report,
 * so callers can build QEMU's own "...: Invalid argument" texts.
 */

export const EINVAL = 'Invalid argument';
export const ERANGE = 'Numerical result out of range';
export type Errno = typeof EINVAL | typeof ERANGE;

const UINT64_MAX = (1n << 64n) - 1n;
const isSpace = (c: string | undefined) => c !== undefined && ' \t\n\v\f\r'.includes(c);
const isDigit = (c: string | undefined) => c !== undefined && c >= '0' && c <= '9';

function suffixMul(c: string | undefined, unit: bigint): bigint | undefined {
  const i = c === undefined ? -1 : 'BKMGTPE'.indexOf(c.toUpperCase());
  return i < 0 || c === '' ? undefined : unit ** BigInt(i);
}

/** strtoull() on `s` from `at`: whitespace, optional sign, digits of `base` (16 allows 0x). */
function strtoull(s: string, at: number, base: 10 | 16): { val: bigint; end: number; range: boolean } {
  let p = at;
  while (isSpace(s[p])) p++;
  let neg = false;
  if (s[p] === '+' || s[p] === '-') neg = s[p++] === '-';
  if (
    base === 16 &&
    s[p] === '0' &&
    (s[p + 1] === 'x' || s[p + 1] === 'X') &&
    /[0-9a-fA-F]/.test(s[p + 2] ?? '')
  ) {
    p += 2;
  }
  const re = base === 10 ? /[0-9]/ : /[0-9a-fA-F]/;
  const start = p;
  while (p < s.length && re.test(s[p]!)) p++;
  if (p === start) return { val: 0n, end: at, range: false };
  let val = BigInt(base === 10 ? s.slice(start, p) : `0x${s.slice(start, p)}`);
  const range = val > UINT64_MAX;
  if (range) val = UINT64_MAX;
  else if (neg) val = -val & UINT64_MAX;
  return { val, end: p, range };
}

/** qemu_strtod_finite() on a copy cut at the first 'e'/'E', as do_strtosz() calls it. */
function fractionOf(s: string): { value: number; len: number; range: boolean } | undefined {
  const m = /^[ \t\n\v\f\r]*[+-]?(?:\d+\.?\d*|\.\d+)/.exec(s);
  if (!m) return undefined;
  const value = Number(m[0].trim());
  const range = value === 0 && /[1-9]/.test(m[0]);
  return { value, len: m[0].length, range };
}

/**
 * Parses a size: decimal with an optional B/K/M/G/T/P/E suffix (powers of `unit`), a decimal
 * fraction only with a suffix, or hex without fraction or suffix; the whole string must parse.
 */
export function strtosz(
  text: string,
  defaultSuffix: 'B' | 'K' | 'M' = 'B',
  unit = 1024n,
): { ok: true; value: bigint } | { ok: false; errno: Errno } {
  // parse_uint(): strtoull, then "no digits" is EINVAL and a leading '-' is ERANGE.
  const first = strtoull(text, 0, 10);
  let errno: Errno | undefined;
  let val = first.val;
  let end = first.end;
  if (first.range) return { ok: false, errno: ERANGE };
  if (end === 0) errno = EINVAL;
  else {
    let s = 0;
    while (isSpace(text[s])) s++;
    if (text[s] === '-') return { ok: false, errno: ERANGE };
  }
  let valf = 0n;
  if (errno === undefined && val === 0n && (text[end] === 'x' || text[end] === 'X')) {
    const hex = strtoull(text, 0, 16);
    if (hex.range) return { ok: false, errno: ERANGE };
    val = hex.val;
    end = hex.end;
    if (text[end] === '.' || suffixMul(text[end], unit) !== undefined) return { ok: false, errno: EINVAL };
  } else if (text[end] === '.' || (end === 0 && text.includes('.'))) {
    let fraction = 0;
    if (errno === undefined && text[end] === '.' && !isDigit(text[end + 1])) {
      end++;
    } else {
      const cut = text.slice(end).split(/[eE]/, 1)[0]!;
      const f = fractionOf(cut);
      if (!f) return { ok: false, errno: EINVAL };
      errno = undefined;
      end += f.len;
      if (f.value < 0 || Object.is(f.value, -0)) return { ok: false, errno: ERANGE };
      if (f.range) valf = 1n;
      fraction = f.value;
    }
    if (fraction === 1) {
      if (val === UINT64_MAX) return { ok: false, errno: ERANGE };
      val++;
    } else if (valf === 0n) {
      valf = BigInt(Math.floor(fraction * 2 ** 64));
      if (valf === 0n && fraction > 0) valf = 1n;
    }
  }
  if (errno) return { ok: false, errno };
  let mul = suffixMul(text[end], unit);
  if (mul !== undefined) end++;
  else mul = suffixMul(defaultSuffix, unit)!;
  if (mul === 1n) {
    if (valf !== 0n) return { ok: false, errno: EINVAL };
  } else {
    // 64.64 fixed point times the multiplier, rounding half up, as QEMU does.
    const total = (((val << 64n) + valf) * mul + (1n << 63n)) >> 64n;
    if (total > UINT64_MAX) return { ok: false, errno: ERANGE };
    val = total;
  }
  if (end !== text.length) return { ok: false, errno: EINVAL };
  return { ok: true, value: val };
}
