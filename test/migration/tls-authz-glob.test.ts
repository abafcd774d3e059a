// authz-list's glob rules are fnmatch(3) with no flags (authz/list.c). Each row's answer was
// taken from glibc's fnmatch (through ctypes, C.UTF-8): ranges out of order, POSIX classes,
// escapes in brackets, a leading `]`, unclosed brackets, regex characters that are literal.
// Before, `[z-a]` made object-add fail with an internal error (a RegExp syntax error), and
// `[[:alpha:]]` matched `:]` instead of a letter.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { authzList, globRegExp } from '../../src/migration/tls/authz.js';

const GLIBC: [pattern: string, name: string, matches: boolean][] = [
  ['[z-a]', 'm', false],
  ['[z-a]', 'z', false],
  ['[!z-a]', 'm', true],
  ['[\\w]', 'w', true],
  ['[\\w]', '\\', false],
  ['[[:alpha:]]', 'q', true],
  ['[[:alpha:]]', '1', false],
  ['[[:alpha:]]', ':', false],
  ['[[:alpha:]]', ':]', false],
  ['[[:bogus:]]', 'b', false],
  ['CN=[[:digit:]]*', 'CN=1abc', true],
  ['CN=[!a-c]x', 'CN=dx', true],
  ['CN=[!a-c]x', 'CN=bx', false],
  ['[]a]', ']', true],
  ['[]a]', 'a', true],
  ['[!]a]', 'b', true],
  ['[!]a]', ']', false],
  ['[a-]', '-', true],
  ['[a-]', 'b', false],
  ['a[', 'a[', true],
  ['[abc', '[abc', true],
  ['\\*', '*', true],
  ['\\*', 'x', false],
  ['*', 'CN=x,O=y', true],
  ['CN=?', 'CN=é', true],
  ['[a\\]]', ']', true],
  ['[a\\-z]', '-', true],
  ['[a\\-z]', 'm', false],
  ['O=a.b', 'O=aXb', false],
  ['(a|b)', 'a', false],
  ['a+', 'aa', false],
  ['[^a]', 'b', true],
  ['[^a]', 'a', false],
  ['[[:upper:][:digit:]]', '5', true],
  ['[[:space:]]', ' ', true],
  ['[[.a.]]', 'a', true],
  ['[[=a=]]', 'a', true],
];

test('authz-list glob rules match as glibc fnmatch(pattern, name, 0)', () => {
  for (const [pattern, name, matches] of GLIBC) {
    assert.equal(globRegExp(pattern).test(name), matches, `fnmatch("${pattern}", "${name}")`);
    const list = authzList('l', 'deny', [{ match: pattern, policy: 'allow', format: 'glob' }]);
    assert.equal(list.isAllowed(name), matches, `authz-list rule "${pattern}" for "${name}"`);
  }
});
