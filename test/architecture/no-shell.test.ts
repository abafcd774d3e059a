// Nothing in src/ evaluates strings as code or runs a shell: no eval, no Function constructor,
// no `shell: true`, no child_process exec/execSync (execFile and spawn take an argv). The one
// shell is QEMU's own definition of the `exec:CMD` URI, `/bin/sh -c CMD` (src/qapi/uri.ts),
// where the user wrote a shell command.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const SRC = resolve(dirname(fileURLToPath(import.meta.url)), '../../src');
/** Where a shell's name may appear as a string, and why. */
const SHELL_ALLOWED = new Map([['qapi/uri.ts', "QEMU's exec:CMD is /bin/sh -c CMD"]]);
const SHELLS = new Set(['/bin/sh', 'sh', '/bin/bash', 'bash', '/usr/bin/env']);

function files(dir = SRC): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const full = join(dir, e.name);
    if (e.isDirectory()) return files(full);
    return e.name.endsWith('.ts') ? [full] : [];
  });
}

/** What in `text` evaluates code or runs a shell, as `file:line what`. */
export function findings(text: string, path: string): string[] {
  const sf = ts.createSourceFile(path, text, ts.ScriptTarget.Latest, true);
  const out: string[] = [];
  const at = (n: ts.Node, what: string) =>
    out.push(`${path}:${sf.getLineAndCharacterOfPosition(n.getStart(sf)).line + 1} ${what}`);
  /** Local names bound to child_process's module or to its exec/execSync. */
  const cpNamespaces = new Set<string>();
  const visit = (n: ts.Node) => {
    if (ts.isImportDeclaration(n) && ts.isStringLiteral(n.moduleSpecifier)) {
      const mod = n.moduleSpecifier.text;
      if (mod === 'child_process' || mod === 'node:child_process') {
        const b = n.importClause?.namedBindings;
        if (b && ts.isNamespaceImport(b)) cpNamespaces.add(b.name.text);
        if (n.importClause?.name) cpNamespaces.add(n.importClause.name.text);
        if (b && ts.isNamedImports(b)) {
          for (const e of b.elements) {
            const name = (e.propertyName ?? e.name).text;
            if (name === 'exec' || name === 'execSync') at(e, `child_process.${name} (runs a shell)`);
          }
        }
      }
    }
    if (ts.isCallExpression(n) || ts.isNewExpression(n)) {
      const callee = n.expression;
      if (ts.isIdentifier(callee) && callee.text === 'eval') at(n, 'eval');
      if (ts.isIdentifier(callee) && callee.text === 'Function') at(n, 'Function constructor');
      if (
        ts.isPropertyAccessExpression(callee) &&
        ts.isIdentifier(callee.expression) &&
        cpNamespaces.has(callee.expression.text) &&
        (callee.name.text === 'exec' || callee.name.text === 'execSync')
      )
        at(n, `child_process.${callee.name.text} (runs a shell)`);
    }
    if (
      ts.isPropertyAssignment(n) &&
      n.name.getText(sf) === 'shell' &&
      n.initializer.kind !== ts.SyntaxKind.FalseKeyword
    )
      at(n, 'shell option');
    if (ts.isShorthandPropertyAssignment(n) && n.name.text === 'shell') at(n, 'shell option');
    if ((ts.isStringLiteral(n) || ts.isNoSubstitutionTemplateLiteral(n)) && SHELLS.has(n.text))
      at(n, `a shell named: '${n.text}'`);
    ts.forEachChild(n, visit);
  };
  visit(sf);
  return out;
}

test('the scanner finds each way of running a shell or evaluating code', () => {
  const bad = `
    import { exec, execFile } from 'node:child_process';
    import * as cp from 'child_process';
    eval('1');
    new Function('return 1');
    Function('return 1');
    cp.execSync('ls');
    spawn('ls', [], { shell: true });
    spawn('/bin/sh', ['-c', cmd]);
  `;
  assert.equal(findings(bad, 'x.ts').length, 7, findings(bad, 'x.ts').join('\n'));
  const fine = `
    import { execFile, execFileSync, spawn } from 'node:child_process';
    // eval('1') in a comment, 'sh' -c too
    spawn(path, args, { shell: false });
    re.exec(text);
    const evaluate = 1;
  `;
  assert.deepEqual(findings(fine, 'y.ts'), []);
});

test('src/ evaluates no strings and runs no shell (but for exec:CMD, by QEMU definition)', () => {
  const found: string[] = [];
  for (const f of files()) {
    const rel = relative(SRC, f).split(sep).join('/');
    const hits = findings(readFileSync(f, 'utf8'), rel);
    found.push(...(SHELL_ALLOWED.has(rel) ? hits.filter((h) => !h.includes('a shell named')) : hits));
  }
  assert.deepEqual(found, []);
});
