/** Shared by the table tests: turns a case into wire text and compares an answer with it. */
import assert from 'node:assert/strict';
import { parseJson, stringifyJson } from '../../src/qapi/json.js';
import type { Case, Expect } from './cases.js';

/** The case's arguments as JSON text, with `$TMP` made a real directory. */
export function argsText(c: Case, tmp: string): string | undefined {
  const text = c.rawArgs ?? (c.args === undefined ? undefined : stringifyJson(c.args));
  return text?.replaceAll('$TMP', tmp);
}

export function withTmp(v: unknown, tmp: string): unknown {
  return parseJson(stringifyJson(v).replaceAll('$TMP', tmp));
}

/** Asserts that a parsed QMP reply is what the case expects. */
export function assertReply(reply: unknown, expect: Expect, name: string): void {
  const r = reply as { return?: unknown; error?: { class: string; desc: string } };
  if ('error' in expect) {
    assert.deepEqual(r.error, { class: expect.class ?? 'GenericError', desc: expect.error }, name);
  } else {
    assert.ok('return' in r, `${name}: expected success, got ${stringifyJson(r)}`);
    if ('return' in expect) {
      const got = r.return as Record<string, unknown>;
      for (const [k, v] of Object.entries(expect.return)) {
        assert.equal(stringifyJson(got[k]), stringifyJson(v), `${name}: return.${k}`);
      }
      if (Object.keys(expect.return).length === 0) assert.deepEqual(got, {}, name);
    }
  }
}
