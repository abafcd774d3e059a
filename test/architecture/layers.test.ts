// The layers of src/ point one way: every import of every module (static, type-only,
// `export ... from`, dynamic `import()`) is resolved to the folder it reaches and checked
// against the table below, so an import that points up a layer fails here with the file, the
// line, the import and the rule it breaks. TypeScript's own scanner finds the imports.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const SRC = resolve(dirname(fileURLToPath(import.meta.url)), '../../src');

/**
 * What each part of src/ may import besides itself, lowest first. `errors` is src/errors.ts
 * and `index` src/index.ts (the package's entry); every other part is a folder. hmp asks the
 * VM to run its commands through the HmpBackend it declares, so it needs no qmp module.
 */
const LAYERS: Record<string, readonly string[]> = {
  errors: [],
  util: ['errors'],
  qapi: ['util', 'errors'],
  machine: ['util', 'errors'],
  migration: ['qapi', 'machine', 'util', 'errors'],
  qmp: ['qapi', 'util', 'errors'],
  hmp: ['qapi', 'util', 'errors'],
  vm: ['migration', 'hmp', 'qmp', 'machine', 'qapi', 'util', 'errors'],
  orchestrator: ['qmp', 'qapi', 'util', 'errors'],
  cli: ['orchestrator', 'vm', 'migration', 'hmp', 'qmp', 'machine', 'qapi', 'util', 'errors'],
  index: ['cli', 'orchestrator', 'vm', 'migration', 'hmp', 'qmp', 'machine', 'qapi', 'util', 'errors'],
};

/** The part of src/ a path below it belongs to: its first folder, or the file's base name. */
function partOf(pathInSrc: string): string {
  const [first, ...rest] = pathInSrc.split(sep);
  return rest.length ? first! : first!.replace(/\.(ts|js|json)$/, '');
}

/**
 * Every import that breaks LAYERS in the given modules (paths relative to src/).
 * @returns one line per broken import: `src/FILE:LINE imports 'SPEC' (PART): RULE`.
 */
function layerViolations(files: readonly { path: string; text: string }[]): string[] {
  const out: string[] = [];
  for (const { path, text } of files) {
    const from = partOf(path);
    const allowed = LAYERS[from];
    if (!allowed) {
      out.push(`src/${path}: '${from}' has no rule in LAYERS; add one`);
      continue;
    }
    for (const imp of ts.preProcessFile(text, true, true).importedFiles) {
      const spec = imp.fileName;
      if (!spec.startsWith('.')) continue; // node: builtins and packages
      const line = text.slice(0, imp.pos).split('\n').length;
      const where = `src/${path}:${line} imports '${spec}'`;
      const target = relative(SRC, resolve(SRC, dirname(path), spec));
      if (target.startsWith('..')) {
        out.push(`${where}: it lies outside src/, which the package must not reach into`);
        continue;
      }
      const to = partOf(target);
      if (to === from) continue;
      if (to === 'index') out.push(`${where}: src/index.ts is the package's entry; import the module itself`);
      else if (!allowed.includes(to)) {
        const may = allowed.length ? `only ${allowed.join(', ')}` : 'nothing';
        out.push(`${where} (${to}): ${from} may import ${may}`);
      }
    }
  }
  return out;
}

function sources(dir = SRC): { path: string; text: string }[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const full = join(dir, e.name);
    if (e.isDirectory()) return sources(full);
    return e.name.endsWith('.ts') ? [{ path: relative(SRC, full), text: readFileSync(full, 'utf8') }] : [];
  });
}

test('every import in src/ points down the layers', () => {
  const files = sources();
  assert.ok(files.length > 40, `found only ${files.length} modules under ${SRC}`);
  assert.deepEqual(layerViolations(files), []);
});

test('the layer table itself points one way (no part reaches one that reaches it back)', () => {
  const reaches = (from: string, seen = new Set<string>()): Set<string> => {
    for (const to of LAYERS[from] ?? []) if (!seen.has(to)) reaches(to, seen.add(to));
    return seen;
  };
  for (const part of Object.keys(LAYERS)) assert.ok(!reaches(part).has(part), `${part} reaches itself`);
});

test('each form of import is checked and named with its line', () => {
  const text = [
    "import type { RunStateMachine } from '../vm/runstate.js';",
    "export { Vm } from '../vm/vm.js';",
    '// import { comment } from "../cli/index.js";',
    "const lazy = () => import('../cli/commands/demo.js');",
    "import { fine } from '../qapi/types.js';",
    "import { inside } from './ram.js';",
    "import { entry } from '../index.js';",
    "import { outside } from '../../package.json';",
    "import { readFile } from 'node:fs';",
  ].join('\n');
  assert.deepEqual(layerViolations([{ path: join('migration', 'engine.ts'), text }]), [
    "src/migration/engine.ts:1 imports '../vm/runstate.js' (vm): migration may import only qapi, machine, util, errors",
    "src/migration/engine.ts:2 imports '../vm/vm.js' (vm): migration may import only qapi, machine, util, errors",
    "src/migration/engine.ts:4 imports '../cli/commands/demo.js' (cli): migration may import only qapi, machine, util, errors",
    "src/migration/engine.ts:7 imports '../index.js': src/index.ts is the package's entry; import the module itself",
    "src/migration/engine.ts:8 imports '../../package.json': it lies outside src/, which the package must not reach into",
  ]);
  assert.deepEqual(layerViolations([{ path: join('util', 'x.ts'), text: "import '../qapi/types.js';" }]), [
    "src/util/x.ts:1 imports '../qapi/types.js' (qapi): util may import only errors",
  ]);
  assert.deepEqual(layerViolations([{ path: 'errors.ts', text: "import { x } from './util/errno.js';" }]), [
    "src/errors.ts:1 imports './util/errno.js' (util): errors may import nothing",
  ]);
  assert.deepEqual(layerViolations([{ path: join('newpart', 'a.ts'), text: '' }]), [
    "src/newpart/a.ts: 'newpart' has no rule in LAYERS; add one",
  ]);
});

test("the README's layout names each part with the imports this table allows", () => {
  const readme = readFileSync(join(SRC, '..', 'README.md'), 'utf8');
  const drawn: Record<string, string[]> = {};
  for (const m of readme.matchAll(/^- `src\/([a-z-]+)(?:\/|\.ts)` \(imports: ([^);]+)[);]/gm)) {
    drawn[m[1]!] = m[2]! === 'nothing' ? [] : m[2]!.split(', ');
  }
  assert.deepEqual(drawn, LAYERS);
});
