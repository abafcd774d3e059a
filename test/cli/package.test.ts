// The published package: a LICENSE that matches package.json's "license", and source maps
// whose sources ship with them (the package carries src/ next to dist/). Reads the file list
// of `npm pack --dry-run`, so it needs the build (`npm test` builds first).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, normalize } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));

function packedFiles(): string[] {
  const r = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], {
    cwd: root,
    encoding: 'utf8',
    timeout: 60_000,
  });
  assert.equal(r.status, 0, r.stderr);
  return (JSON.parse(r.stdout) as { files: { path: string }[] }[])[0]!.files.map((f) => f.path);
}

test('LICENSE is the MIT license package.json names, and it ships', () => {
  assert.equal(pkg.license, 'MIT');
  const text = readFileSync(join(root, 'LICENSE'), 'utf8');
  assert.match(text, /^MIT License\n\nCopyright \(c\) 2026 the qmigrate authors\n/);
  assert.match(text, /THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND/);
  assert.ok(packedFiles().includes('LICENSE'));
});

test('every source map in the package points at sources that ship with it', () => {
  assert.ok(existsSync(join(root, 'dist/index.js')), 'dist/ is not built: run `npm run build` first');
  const files = packedFiles();
  const shipped = new Set(files);
  const maps = files.filter((f) => f.endsWith('.map'));
  assert.ok(maps.includes('dist/cli/bin.js.map'), 'the build emits source maps');
  for (const map of maps) {
    const { sources, sourceRoot } = JSON.parse(readFileSync(join(root, map), 'utf8'));
    for (const s of sources as string[]) {
      const at = normalize(join(dirname(map), sourceRoot ?? '', s));
      assert.ok(shipped.has(at), `${map} points at ${at}, which the package does not contain`);
    }
  }
  for (const js of files.filter((f) => f.startsWith('dist/') && f.endsWith('.js'))) {
    assert.ok(shipped.has(`${js}.map`), `${js} names ${js}.map, which does not ship`);
  }
});
