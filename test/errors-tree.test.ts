// One error tree that matches its drawing: every error class a module of src/ exports (and so
// every one the package entry exports) is a QmigrateError with a stable code; the tree drawn in
// src/errors.ts (and each layer's subtree) is the real prototype chain, with the codes the
// sources throw; and no module builds a bare Error except the few allowed below, with reasons.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import ts from 'typescript';
import { QmigrateError } from '../src/errors.js';

const SRC = resolve(dirname(fileURLToPath(import.meta.url)), '../src');

/** The executable entry runs the CLI when loaded: it defines no class. */
const NOT_LOADED = new Set(['cli/bin.ts']);

/** The layers src/index.ts exposes: each error class defined there must be exported by it. */
const ENTRY_LAYERS = ['errors.ts', 'util/', 'qapi/', 'qmp/'];

/** QmigrateError's convention: UPPER_SNAKE, layer first (QapiError appends QEMU's class name). */
const CODE = /^[A-Z][A-Z0-9]*(_[A-Za-z0-9]+)*$/;

/** Constructors of the built-in errors: building one directly bypasses the tree. */
const BUILTIN_ERRORS = new Set([
  'Error',
  'TypeError',
  'RangeError',
  'SyntaxError',
  'ReferenceError',
  'EvalError',
  'URIError',
  'AggregateError',
]);

/**
 * The bare errors src/ may build, each with why it is not a QmigrateError. A finding is
 * `FILE: WHAT`; the count must match exactly, so an entry cannot outlive its reason.
 */
const ALLOWED: readonly { finding: string; count: number; why: string }[] = [
  {
    finding: 'errors.ts: class QmigrateError extends Error',
    count: 1,
    why: 'the root of the tree',
  },
  {
    finding: 'util/errno.ts: new Error',
    count: 1,
    why: "systemError(): stands in for Node's own system errors (EPIPE, ENOENT), which code checks and strerror() read",
  },
];

type ErrorClass = (abstract new (...args: never[]) => Error) & { name: string };

function posix(path: string): string {
  return path.split(sep).join('/');
}

function sources(dir = SRC): { path: string; text: string }[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const full = join(dir, e.name);
    if (e.isDirectory()) return sources(full);
    return e.name.endsWith('.ts')
      ? [{ path: posix(relative(SRC, full)), text: readFileSync(full, 'utf8') }]
      : [];
  });
}

function isErrorClass(v: unknown): v is ErrorClass {
  return typeof v === 'function' && (v === Error || v.prototype instanceof Error);
}

/** Every error class the modules export, once each (re-exports and aliases are one class). */
async function exportedErrorClasses(paths: readonly string[]): Promise<Set<ErrorClass>> {
  const found = new Set<ErrorClass>();
  for (const path of paths) {
    if (NOT_LOADED.has(path)) continue;
    const ns = (await import(pathToFileURL(join(SRC, path)).href)) as Record<string, unknown>;
    for (const v of Object.values(ns)) if (isErrorClass(v)) found.add(v);
  }
  return found;
}

/** An instance built with two strings, which every constructor in the tree accepts. */
function sample(C: ErrorClass): QmigrateError {
  return Reflect.construct(C, ['X_SAMPLE', 'sample']) as QmigrateError;
}

/** One class of a drawing: its parent in the drawing and the codes drawn beside it. */
interface Drawn {
  name: string;
  parent: string | undefined;
  codes: string[];
}

/**
 * Parses the tree drawn in a module's header comment: a line that starts with `QmigrateError`,
 * then lines of `+-- Name ...` nested by column; a line without `+--` continues the codes of
 * the class above. Codes are the UPPER_SNAKE words outside parentheses (`<x>`: a wildcard).
 * @returns undefined when the text has no drawing.
 */
function parseDrawing(text: string): Drawn[] | undefined {
  const lines = text.split('\n');
  const start = lines.findIndex((l) => /^\s*\*\s+QmigrateError\b/.test(l));
  if (start < 0) return undefined;
  const codesIn = (s: string) =>
    s
      .replace(/\([^)]*\)/g, '')
      .split(/[\s,]+/)
      .filter((w) => w.length > 1 && /^[A-Z][A-Z0-9]*(_([A-Z0-9]+|<[a-z]+>))*$/.test(w));
  const rootCol = lines[start]!.indexOf('QmigrateError');
  const root: Drawn = {
    name: 'QmigrateError',
    parent: undefined,
    codes: codesIn(lines[start]!.slice(rootCol + 13)),
  };
  const out = [root];
  const stack: { col: number; name: string }[] = [{ col: rootCol, name: root.name }];
  for (const line of lines.slice(start + 1)) {
    const body = /^\s*\*(.*)$/.exec(line)?.[1];
    if (body === undefined || body.trim() === '' || body.trim() === '/') break;
    const node = /^(.*?)\+-- (\w+)(.*)$/.exec(line);
    if (!node) {
      out[out.length - 1]!.codes.push(...codesIn(body));
      continue;
    }
    const col = node[1]!.length;
    while (stack.length > 1 && stack[stack.length - 1]!.col >= col) stack.pop();
    out.push({ name: node[2]!, parent: stack[stack.length - 1]!.name, codes: codesIn(node[3]!) });
    stack.push({ col, name: node[2]! });
  }
  return out;
}

/** A drawn code as a pattern: `QAPI_<class>` matches any QAPI_ code. */
function codeMatches(drawn: string, code: string): boolean {
  const re = new RegExp(`^${drawn.replace(/<[a-z]+>/g, '[A-Za-z0-9]+')}$`);
  return re.test(code);
}

interface Scan {
  /** `FILE: WHAT` for each bare error built, class extending a built-in, literal thrown. */
  findings: string[];
  /** `FILE:LINE` of each finding, for the message. */
  where: string[];
  /** First arguments of `new NAME(...)`: the string literal, or undefined when not one. */
  newArgs: Map<string, (string | undefined)[]>;
}

/** Walks each module's syntax tree (not its text: comments and strings do not count). */
function scan(files: readonly { path: string; text: string }[]): Scan {
  const out: Scan = { findings: [], where: [], newArgs: new Map() };
  for (const { path, text } of files) {
    const sf = ts.createSourceFile(path, text, ts.ScriptTarget.Latest, true);
    const add = (node: ts.Node, what: string) => {
      out.findings.push(`${path}: ${what}`);
      out.where.push(`src/${path}:${sf.getLineAndCharacterOfPosition(node.getStart()).line + 1}: ${what}`);
    };
    const visit = (node: ts.Node): void => {
      if ((ts.isNewExpression(node) || ts.isCallExpression(node)) && ts.isIdentifier(node.expression)) {
        const name = node.expression.text;
        if (BUILTIN_ERRORS.has(name)) add(node, `${ts.isNewExpression(node) ? 'new ' : ''}${name}`);
        if (ts.isNewExpression(node)) {
          const first = node.arguments?.[0];
          const literal = first && ts.isStringLiteralLike(first) ? first.text : undefined;
          out.newArgs.set(name, [...(out.newArgs.get(name) ?? []), literal]);
        }
      }
      if (ts.isClassLike(node)) {
        for (const clause of node.heritageClauses ?? []) {
          for (const t of clause.types) {
            if (ts.isIdentifier(t.expression) && BUILTIN_ERRORS.has(t.expression.text)) {
              add(node, `class ${node.name?.text ?? '(anonymous)'} extends ${t.expression.text}`);
            }
          }
        }
      }
      if (ts.isThrowStatement(node) && node.expression) {
        const e = node.expression;
        if (
          ts.isStringLiteralLike(e) ||
          ts.isTemplateExpression(e) ||
          ts.isNumericLiteral(e) ||
          ts.isObjectLiteralExpression(e)
        ) {
          add(node, 'throw of a value that is not an error');
        }
      }
      ts.forEachChild(node, visit);
    };
    visit(sf);
  }
  return out;
}

const files = sources();
const classes = await exportedErrorClasses(files.map((f) => f.path));
const entry = await exportedErrorClasses(['index.ts']);

/** Where each class is declared (`class Name` in a module), for messages and ENTRY_LAYERS. */
const declaredIn = new Map<string, string>();
for (const { path, text } of files) {
  for (const m of text.matchAll(/^export (?:abstract )?class (\w+)/gm)) declaredIn.set(m[1]!, path);
}

test('every exported error class is a QmigrateError with a name and a stable code', () => {
  assert.ok(files.length > 40, `found only ${files.length} modules under ${SRC}`);
  assert.ok(classes.size >= 20, `found only ${classes.size} error classes`);
  assert.ok(entry.size >= 10, `the package entry exports only ${entry.size} error classes`);
  const wrong: string[] = [];
  for (const C of new Set([...entry, ...classes])) {
    const where = `${C.name} (src/${declaredIn.get(C.name) ?? '?'})`;
    if (C !== QmigrateError && !(C.prototype instanceof QmigrateError)) {
      wrong.push(`${where} does not extend QmigrateError`);
      continue;
    }
    const e = sample(C);
    if (typeof e.code !== 'string' || !CODE.test(e.code)) wrong.push(`${where} has code ${String(e.code)}`);
    if (e.name !== C.name) wrong.push(`${where} is named ${e.name}`);
  }
  assert.deepEqual(wrong, []);
});

test('the package entry exports the error classes of the layers it exposes', () => {
  const missing = [...classes]
    .filter((C) => ENTRY_LAYERS.some((l) => declaredIn.get(C.name)?.startsWith(l)) && !entry.has(C))
    .map((C) => `${C.name} (src/${declaredIn.get(C.name)})`);
  assert.deepEqual(missing, []);
});

test('src/errors.ts draws the whole tree: every class, its parent, its codes', () => {
  const drawn = parseDrawing(readFileSync(join(SRC, 'errors.ts'), 'utf8'));
  assert.ok(drawn, 'src/errors.ts has no drawing of the tree');
  const byName = new Map([...classes].map((C) => [C.name, C]));
  assert.deepEqual(
    drawn.map((d) => d.name).sort(),
    [...byName.keys()].sort(),
    'the classes drawn are not the classes exported',
  );
  const { newArgs } = scan(files);
  const wrong: string[] = [];
  for (const d of drawn) {
    const C = byName.get(d.name);
    if (!C) continue;
    const parent = Object.getPrototypeOf(C) as ErrorClass;
    if (d.parent === undefined ? C !== QmigrateError : parent.name !== d.parent) {
      wrong.push(`${d.name} is drawn under ${d.parent ?? 'nothing'} but extends ${parent.name}`);
    }
    const code = sample(C).code;
    if (code === 'X_SAMPLE') {
      // The code is the caller's: the drawing lists the ones `new NAME('CODE', ...)` passes.
      const args = newArgs.get(d.name) ?? [];
      if (args.includes(undefined))
        wrong.push(`${d.name}: a \`new ${d.name}\` passes its code as no literal`);
      const used = [...new Set(args.filter((a) => a !== undefined))].sort();
      if (JSON.stringify(used) !== JSON.stringify([...d.codes].sort())) {
        wrong.push(`${d.name} is drawn with [${d.codes}] but thrown with [${used}]`);
      }
    } else if (d.codes.length !== 1 || !codeMatches(d.codes[0]!, code)) {
      wrong.push(`${d.name} is drawn with [${d.codes}] but its code is ${code}`);
    }
  }
  assert.deepEqual(wrong, []);
});

test("each layer's own drawing of its subtree matches the prototype chain", () => {
  const byName = new Map([...classes].map((C) => [C.name, C]));
  const wrong: string[] = [];
  let drawings = 0;
  for (const { path, text } of files) {
    if (path === 'errors.ts') continue;
    const drawn = parseDrawing(text);
    if (!drawn) continue;
    drawings++;
    for (const d of drawn.slice(1)) {
      const C = byName.get(d.name);
      const parent = C && (Object.getPrototypeOf(C) as ErrorClass).name;
      if (parent !== d.parent) {
        wrong.push(
          `src/${path}: ${d.name} is drawn under ${d.parent} but ${C ? `extends ${parent}` : 'is no exported class'}`,
        );
      }
    }
  }
  assert.ok(drawings >= 3, `found only ${drawings} layer drawings`);
  assert.deepEqual(wrong, []);
});

test('no module builds a bare Error, extends a built-in error or throws a non-error', () => {
  const { findings, where } = scan(files);
  const unexplained = where.filter((_, i) => !ALLOWED.some((a) => a.finding === findings[i]));
  assert.deepEqual(
    unexplained,
    [],
    'use a class of the tree (src/errors.ts draws it), or allow it below with a reason',
  );
  for (const a of ALLOWED) {
    const n = findings.filter((f) => f === a.finding).length;
    assert.equal(n, a.count, `ALLOWED says ${a.count} of '${a.finding}' (${a.why}); src/ has ${n}`);
  }
});

test('the scan sees each form, and not comments or strings', () => {
  const text = [
    "throw new Error('a');",
    "reject(new TypeError('b'));",
    "const e = RangeError('c');",
    'class Mine extends SyntaxError {}',
    "throw 'a string';",
    // biome-ignore lint/suspicious/noTemplateCurlyInString: this is source text with a template in it
    'throw `a ${template}`;',
    '// throw new Error("in a comment")',
    'const s = \'new Error("in a string")\';',
    "throw new SocketError('SOCKET_BIND', 'm');",
    'throw new SocketError(code, m);',
  ].join('\n');
  const s = scan([{ path: 'x.ts', text }]);
  assert.deepEqual(s.where, [
    'src/x.ts:1: new Error',
    'src/x.ts:2: new TypeError',
    'src/x.ts:3: RangeError',
    'src/x.ts:4: class Mine extends SyntaxError',
    'src/x.ts:5: throw of a value that is not an error',
    'src/x.ts:6: throw of a value that is not an error',
  ]);
  assert.deepEqual(s.newArgs.get('SocketError'), ['SOCKET_BIND', undefined]);
});

test('the drawing parser reads nesting, continuation lines and codes', () => {
  const text = [
    '/**',
    ' *   QmigrateError        errors.ts   ROOT_CODE (not_A_CODE)',
    ' *    +-- A               a.ts        A_ONE, A_TWO,',
    ' *    |                               A_THREE',
    ' *    |    +-- B                      B_<class>',
    ' *    |         +-- C',
    ' *    +-- D                           D_CODE (alias E_CODE)',
    ' *',
    ' *    +-- NotInTheDrawing',
    ' */',
  ].join('\n');
  assert.deepEqual(parseDrawing(text), [
    { name: 'QmigrateError', parent: undefined, codes: ['ROOT_CODE'] },
    { name: 'A', parent: 'QmigrateError', codes: ['A_ONE', 'A_TWO', 'A_THREE'] },
    { name: 'B', parent: 'A', codes: ['B_<class>'] },
    { name: 'C', parent: 'B', codes: [] },
    { name: 'D', parent: 'QmigrateError', codes: ['D_CODE'] },
  ]);
  assert.ok(codeMatches('QAPI_<class>', 'QAPI_GenericError'));
  assert.ok(!codeMatches('QAPI_<class>', 'QMP_STATE'));
});

test("the README's drawing is src/errors.ts's: the same classes, parents and codes", () => {
  const readme = readFileSync(join(SRC, '..', 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('\n## Errors\n'));
  assert.ok(section.length > 1, 'README.md has no Errors section');
  // The README indents its drawing as a code block; as a comment it parses the same way.
  const block = section
    .split('\n')
    .filter((l) => l.startsWith('    '))
    .map((l) => ` * ${l}`)
    .join('\n');
  const shape = (d: Drawn[] | undefined) =>
    d?.map((x) => `${x.name} < ${x.parent}: ${[...x.codes].sort()}`).sort();
  assert.deepEqual(
    shape(parseDrawing(`${block}\n */`)),
    shape(parseDrawing(readFileSync(join(SRC, 'errors.ts'), 'utf8'))),
  );
});
