// No function in src/ runs over 80 lines unless the list below gives the reason: a long
// function is a sign that several steps share one scope, and each step deserves a name.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const SRC = resolve(dirname(fileURLToPath(import.meta.url)), '../../src');
const LIMIT = 80;

/** `file name` -> why it stays long. Generated files are left out by name. */
const LONG_FOR_A_REASON = new Map<string, string>([]);
const GENERATED = new Set(['qapi/types.ts', 'qmp/methods.ts']);

function files(dir = SRC): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const full = join(dir, e.name);
    if (e.isDirectory()) return files(full);
    return e.name.endsWith('.ts') ? [full] : [];
  });
}

function nameOf(n: ts.FunctionLikeDeclaration, sf: ts.SourceFile): string {
  if (ts.isConstructorDeclaration(n)) return 'constructor';
  const own = n.name?.getText(sf);
  if (own) return own;
  const p = n.parent;
  if (p && (ts.isVariableDeclaration(p) || ts.isPropertyAssignment(p))) return p.name.getText(sf);
  return '<anonymous>';
}

/** Every function-like node with a body longer than `limit` lines, as `file:line name (N lines)`. */
export function longFunctions(text: string, path: string, limit: number): { key: string; where: string }[] {
  const sf = ts.createSourceFile(path, text, ts.ScriptTarget.Latest, true);
  const out: { key: string; where: string }[] = [];
  const visit = (n: ts.Node) => {
    if (ts.isFunctionLike(n) && (n as ts.FunctionLikeDeclaration).body) {
      const f = n as ts.FunctionLikeDeclaration;
      const start = sf.getLineAndCharacterOfPosition(f.getStart(sf)).line;
      const lines = sf.getLineAndCharacterOfPosition(f.getEnd()).line - start + 1;
      if (lines > limit) {
        const name = nameOf(f, sf);
        out.push({ key: `${path} ${name}`, where: `src/${path}:${start + 1} ${name} (${lines} lines)` });
      }
    }
    ts.forEachChild(n, visit);
  };
  visit(sf);
  return out;
}

test(`no function in src/ is over ${LIMIT} lines without a stated reason`, () => {
  const found: string[] = [];
  const seen = new Set<string>();
  for (const full of files()) {
    const path = relative(SRC, full).split(sep).join('/');
    if (GENERATED.has(path)) continue;
    for (const f of longFunctions(readFileSync(full, 'utf8'), path, LIMIT)) {
      seen.add(f.key);
      if (!LONG_FOR_A_REASON.has(f.key)) found.push(f.where);
    }
  }
  assert.deepEqual(found, [], 'split these by what they do, or give the reason in LONG_FOR_A_REASON');
  const stale = [...LONG_FOR_A_REASON.keys()].filter((k) => !seen.has(k));
  assert.deepEqual(stale, [], 'these are no longer long: take them off the list');
});

test('the measure sees functions, methods, arrows and constructors', () => {
  const body = (n: number) => Array.from({ length: n }, (_, i) => `  x(${i});`).join('\n');
  const text = [
    `function a() {\n${body(81)}\n}`,
    `class C {\n  constructor() {\n${body(85)}\n  }\n  #m() {\n${body(10)}\n  }\n}`,
    `const arrow = () => {\n${body(90)}\n};`,
  ].join('\n');
  assert.deepEqual(
    longFunctions(text, 'x.ts', LIMIT).map((f) => f.key),
    ['x.ts a', 'x.ts constructor', 'x.ts arrow'],
  );
});
