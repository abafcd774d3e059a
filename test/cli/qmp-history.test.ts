// The history file of `qmigrate qmp` (src/cli/commands/qmp.ts appendHistory): shells sharing
// one file keep each other's lines, a line typed again moves to the end, the file keeps its
// last 1000 lines and is created owner-only.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { appendHistory, HISTORY_SIZE } from '../../src/cli/commands/qmp.js';

function tempDir(t: import('node:test').TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'qmigrate-qmp-history-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('two shells on one history file keep both their lines, in the order typed', (t) => {
  const path = join(tempDir(t), 'state', 'qmp_history');
  appendHistory(path, 'query-status a=1'); // shell A
  appendHistory(path, 'query-status b=1'); // shell B
  appendHistory(path, 'query-status a=2'); // shell A again
  appendHistory(path, 'query-status a=1'); // typed again: it moves to the end
  assert.equal(readFileSync(path, 'utf8'), 'query-status b=1\nquery-status a=2\nquery-status a=1\n');
  assert.equal(statSync(path).mode & 0o777, 0o600);
});

test('the file keeps its last lines; a directory in its place is an error for the caller', (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'h');
  writeFileSync(path, Array.from({ length: HISTORY_SIZE + 50 }, (_, i) => `l${i}`).join('\n'));
  appendHistory(path, 'new');
  const lines = readFileSync(path, 'utf8').trimEnd().split('\n');
  assert.equal(lines.length, HISTORY_SIZE);
  assert.equal(lines.at(-1), 'new');
  assert.equal(lines[0], `l${51}`);
  mkdirSync(join(dir, 'd'));
  assert.throws(() => appendHistory(join(dir, 'd'), 'x'), /EISDIR/);
});
