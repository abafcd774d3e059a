// `npm run faults` end to end on one row that needs no QEMU: the destination killed at half
// the stream between two `qmigrate vm`s over unix, two reps. The run exits 0 (no promise
// broken), and writes the report and its JSON with the row's outcomes, worst time, fd and RSS
// drift and the header (command, commit, machine). `--list` names every row of the matrix.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const matrix = fileURLToPath(new URL('../../faults/matrix.ts', import.meta.url));

function faults(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', matrix, ...args],
      { timeout: 120_000 },
      (e, stdout, stderr) =>
        resolve({ code: e ? ((e as { code?: number }).code ?? null) : 0, stdout, stderr }),
    );
  });
}

test('--list names every row: pairs x transports x faults, the cancel states, qmp, exec and file rows', async () => {
  const { code, stdout } = await faults(['--list']);
  assert.equal(code, 0);
  const ids = stdout.trim().split('\n');
  for (const transport of ['tcp', 'unix', 'multifd4', 'tls'])
    for (const fault of [
      'dst-kill-10',
      'dst-kill-50',
      'dst-kill-90',
      'src-kill',
      'cut-close',
      'cut-reset',
      'stall-cancel',
      'stall-timeout',
    ])
      for (const pair of ['qmigrate->qmigrate', 'qmigrate->qemu', 'qemu->qmigrate'])
        assert.ok(ids.includes(`socket/${transport}/${fault}/${pair}`), `${transport} ${fault} ${pair}`);
  for (const state of ['setup', 'active', 'pre-switchover', 'device', 'cancelling'])
    assert.ok(
      ids.some((id) => id.startsWith(`cancel/unix/cancel-${state}/`)),
      state,
    );
  for (const f of [
    'race-migrate',
    'incoming-twice',
    'client-gone-migrate',
    'client-gone-query',
    'exec-child-exits-50',
    'truncate',
    'corrupt',
  ])
    assert.ok(
      ids.some((id) => id.includes(`/${f}/`)),
      f,
    );
});

test('one row, two reps: exit 0, the report and its JSON from what was measured', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'qmigrate-faults-test-'));
  try {
    const out = join(dir, 'r.md');
    const { code, stderr } = await faults([
      ...['--only', '^socket/unix/dst-kill-50/qmigrate->qmigrate$'],
      ...['--reps', '2', '--size', '16', '--out', out],
    ]);
    assert.equal(code, 0, stderr);
    const json = JSON.parse(readFileSync(join(dir, 'r.json'), 'utf8'));
    assert.equal(json.meta.reps, 2);
    assert.match(json.meta.command, /--reps 2/);
    assert.equal(json.rows.length, 1);
    const row = json.rows[0];
    assert.equal(row.id, 'socket/unix/dst-kill-50/qmigrate->qmigrate');
    assert.deepEqual(row.outcomes, { failed: 2 });
    assert.deepEqual(row.violations, []);
    assert.ok(row.worstMs > 0 && row.worstMs < 30_000, String(row.worstMs));
    assert.equal(typeof row.fdDrift, 'number');
    assert.equal(typeof row.rssDriftKiB, 'number');
    const md = readFileSync(out, 'utf8');
    assert.match(md, /^# Reliability: the fault matrix/);
    assert.match(md, /- Commit: [0-9a-f]{7}/);
    assert.match(md, /\| unix dst-kill-50 \| qmigrate -> qmigrate \| 2 \| failed 2 \| 0 \| 0 \|/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
