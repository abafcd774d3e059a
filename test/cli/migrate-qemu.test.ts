// `qmigrate migrate` with real QEMU peers: QEMU 10.0 -> `qmigrate vm` completes with the RAM
// equal; --dry-run from QEMU 7.2 (no `channels` before 8.2) plans `migrate` with the uri form
// for it and `channels` for a 10.0 destination, and changes nothing on either; a QEMU 10.0
// destination that does not wait in -incoming defer fails the preflight (exit 3); qmigrate vm ->
// QEMU 10.0 completes too, and RAM of another size on qmigrate vm fails the preflight.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type Lab, ramEqual, startLab } from '../orchestrator/lab.js';

const bin = fileURLToPath(new URL('../../src/cli/bin.ts', import.meta.url));

/** Runs `qmigrate migrate` from the lab's source to its destination over its unix socket. */
function migrate(
  lab: Lab,
  extra: string[],
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const path = (e: Lab['plan']['from']) => (e.kind === 'unix' ? e.path : '');
  const args = ['migrate', '--from', path(lab.plan.from), '--to', path(lab.plan.to)];
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', bin, ...args, '--unix', join(lab.dir, 'mig.sock'), ...extra],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => {
    stdout += d;
  });
  child.stderr.on('data', (d) => {
    stderr += d;
  });
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
}

for (const [from, to, name] of [
  ['10.0', 'qmigrate', 'QEMU 10.0 -> qmigrate vm'],
  ['qmigrate', '10.0', 'qmigrate vm -> QEMU 10.0'],
] as const) {
  test(`${name}: exit 0, the report in JSON, the RAM equal`, async (t) => {
    const lab = await startLab(t, from, to);
    if (!lab) return;
    const r = await migrate(lab, ['--json']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const last = JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '');
    assert.equal(last.type, 'report');
    assert.equal(last.status, 'completed');
    assert.equal(last.destinationRunState, 'running');
    assert.ok(await ramEqual(lab));
  });
}

test('--dry-run from QEMU 7.2 to QEMU 10.0: the uri form for 7.2, channels for 10.0, nothing changed', async (t) => {
  const lab = await startLab(t, '7.2', '10.0');
  if (!lab) return;
  const r = await migrate(lab, ['--dry-run']);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const sock = join(lab.dir, 'mig.sock');
  const lines = r.stdout.trim().split('\n');
  assert.ok(
    lines.includes(
      `destination migrate-incoming {"channels":[{"channel-type":"main","addr":{"transport":"socket","type":"unix","path":"${sock}"}}]}`,
    ),
    r.stdout,
  );
  assert.ok(lines.includes(`source      migrate {"uri":"unix:${sock}"}`), r.stdout);
  assert.equal((await lab.src.qmp.queryMigrate()).status, undefined, 'no migration on the source');
  assert.equal(
    (await lab.dst.qmp.queryMigrate()).status,
    undefined,
    'no migrate-incoming on the destination',
  );
  assert.equal((await lab.dst.qmp.queryStatus()).status, 'inmigrate');
  assert.equal((await lab.src.qmp.queryStatus()).status, 'running');
});

test('a QEMU 10.0 destination not in -incoming defer: exit 3 before any byte moves', async (t) => {
  const lab = await startLab(t, 'qmigrate', '10.0', { defer: false });
  if (!lab) return;
  const r = await migrate(lab, []);
  assert.equal(r.code, 3, r.stdout + r.stderr);
  assert.equal(r.stdout, '');
  assert.match(r.stderr, /^qmigrate: .*destination.*'(running|prelaunch|paused)'/m);
  assert.equal((await lab.src.qmp.queryMigrate()).status, undefined);
  assert.equal((await lab.src.qmp.queryStatus()).status, 'running');
});

test('QEMU 10.0 -> qmigrate vm with less RAM: exit 3, one line naming the block and both sizes', async (t) => {
  const lab = await startLab(t, '10.0', 'qmigrate', { srcMiB: 64, dstMiB: 32 });
  if (!lab) return;
  const r = await migrate(lab, []);
  assert.equal(r.code, 3, r.stdout + r.stderr);
  assert.match(r.stderr, /^qmigrate: destination RAM block '\w+' is 32 MiB, source's is 64 MiB$/m);
  assert.equal((await lab.src.qmp.queryStatus()).status, 'running');
  assert.equal((await lab.dst.qmp.queryStatus()).status, 'inmigrate');
});
