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

/** fnmatch(pattern, s, 0) as a regular expression: `*`, `?`, `[...]` (with `!`), `\` escapes. */
export function globRegExp(pattern: string): RegExp {
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '*') re += '[\\s\\S]*';
    else if (c === '?') re += '[\\s\\S]';
    else if (c === '\\' && i + 1 < pattern.length) re += escapeChar(pattern[++i]!);
    else if (c === '[') {
      const end = bracketEnd(pattern, i);
      if (end < 0) re += '\\[';
      else {
        let body = pattern.slice(i + 1, end);
        const negate = body[0] === '!' || body[0] === '^';
        if (negate) body = body.slice(1);
        re += `[${negate ? '^' : ''}${body.replace(/[\\\]^]/g, (m) => `\\${m}`)}]`;
        i = end;
      }
    } else re += escapeChar(c);
  }
  return new RegExp(`^${re}$`);
}

function escapeChar(c: string): string {
  return c.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&');
}

/** The `]` closing the bracket expression at `open` (a leading `]` is a member), or -1. */
function bracketEnd(p: string, open: number): number {
  let i = open + 1;
  if (p[i] === '!' || p[i] === '^') i++;
  if (p[i] === ']') i++;
  const end = p.indexOf(']', i);
  return end;
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
