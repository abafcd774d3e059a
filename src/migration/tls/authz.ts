/**
 * QEMU's authorization objects for `tls-authz` (authz/simple.c, authz/list.c): authz-simple
 * allows one identity, authz-list walks its rules (exact or glob match, fnmatch(3) without
 * flags), the first match deciding, else its default policy.
 */
import type { QAuthZListPolicy, QAuthZListRule } from '../../qapi/types.js';
import type { TlsAuthz } from './types.js';

/** authz-simple: allows exactly `identity`. */
export function authzSimple(id: string, identity: string): TlsAuthz {
  return { id, isAllowed: (who) => who === identity };
}

/** POSIX character classes in brackets (`[[:alpha:]]`), C locale, as RegExp class contents. */
const POSIX_CLASSES: Record<string, string> = {
  alpha: 'A-Za-z',
  digit: '0-9',
  alnum: '0-9A-Za-z',
  upper: 'A-Z',
  lower: 'a-z',
  space: '\\t\\n\\v\\f\\r ',
  blank: '\\t ',
  xdigit: '0-9A-Fa-f',
  cntrl: '\\x00-\\x1f\\x7f',
  punct: '!-\\/:-@\\[-`{-~',
  print: ' -~',
  graph: '!-~',
};

/** One character, literally, in a `u` RegExp (in or out of a class). */
function lit(c: string): string {
  return `\\u{${c.codePointAt(0)!.toString(16)}}`;
}

/**
 * The bracket expression opening at `p[open]` (`[`) as a RegExp class, and the index after it:
 * `!` or `^` negates, a leading `]` is a member, `\\` escapes, `a-z` ranges (out of order:
 * empty), `[:class:]`, `[.c.]` and `[=c=]`. Undefined when it never closes (the `[` is then a
 * literal); `invalid` for an unknown class name (fnmatch then fails, i.e. never matches).
 */
function bracket(p: string, open: number): { re: string; next: number } | 'invalid' | undefined {
  let i = open + 1;
  const negate = p[i] === '!' || p[i] === '^';
  if (negate) i++;
  const parts: string[] = [];
  for (let first = true; i < p.length; first = false) {
    if (p[i] === ']' && !first) return { re: `[${negate ? '^' : ''}${parts.join('')}]`, next: i + 1 };
    const kind = p[i] === '[' ? p[i + 1] : undefined;
    if (kind === ':' || kind === '.' || kind === '=') {
      const end = p.indexOf(`${kind}]`, i + 2);
      if (end >= 0) {
        const name = p.slice(i + 2, end);
        if (kind === ':') {
          if (!Object.hasOwn(POSIX_CLASSES, name)) return 'invalid';
          parts.push(POSIX_CLASSES[name]!);
        } else parts.push([...name].map(lit).join(''));
        i = end + 2;
        continue;
      }
    }
    let lo = p[i]!;
    if (lo === '\\' && i + 1 < p.length) lo = p[++i]!;
    i++;
    if (p[i] === '-' && i + 1 < p.length && p[i + 1] !== ']') {
      let hi = p[i + 1]!;
      i += 2;
      if (hi === '\\' && i < p.length) hi = p[i++]!;
      if (lo.codePointAt(0)! <= hi.codePointAt(0)!) parts.push(`${lit(lo)}-${lit(hi)}`);
      continue;
    }
    parts.push(lit(lo));
  }
  return undefined;
}

/**
 * fnmatch(pattern, s, 0) as glibc runs it, as a regular expression: `*`, `?`, bracket
 * expressions, `\\` escapes; every other character literal. A pattern fnmatch finds invalid
 * (an unknown `[:class:]`) never matches.
 */
export function globRegExp(pattern: string): RegExp {
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '*') re += '[\\s\\S]*';
    else if (c === '?') re += '[\\s\\S]';
    else if (c === '\\' && i + 1 < pattern.length) re += lit(pattern[++i]!);
    else if (c === '[') {
      const b = bracket(pattern, i);
      if (b === 'invalid') return /(?!)/;
      if (b === undefined) re += lit(c);
      else {
        re += b.re;
        i = b.next - 1;
      }
    } else re += lit(c);
  }
  return new RegExp(`^${re}$`, 'u');
}

/** authz-list: the first rule that matches decides; none, the default `policy` (deny). */
export function authzList(
  id: string,
  policy: QAuthZListPolicy = 'deny',
  rules: readonly QAuthZListRule[] = [],
): TlsAuthz {
  const compiled = rules.map((r) => {
    const rx = r.format === 'glob' ? globRegExp(r.match) : undefined;
    return { allow: r.policy === 'allow', test: (s: string) => (rx ? rx.test(s) : s === r.match) };
  });
  return {
    id,
    isAllowed(identity) {
      for (const r of compiled) if (r.test(identity)) return r.allow;
      return policy === 'allow';
    },
  };
}
