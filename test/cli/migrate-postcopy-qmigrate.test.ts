// `qmigrate migrate --postcopy` between two `qmigrate vm`s running the guest workload, which
// writes faster than --max-bandwidth lets precopy converge: the switch after the first pass,
// the link cut during postcopy (a FaultProxy the source's `migrate` is redirected to) ending
// with exit 5 and both sides postcopy-paused, then `--resume` completing it; the destination's
// RAM is the source's but for its own workload's counters, and passes QEMU's check.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { cuttableSource } from '../helpers/cut-link.js';
import { type PeerKind, waitMigrationStatus } from '../helpers/peers.js';
import { assertPostcopyRam, MiB } from '../helpers/postcopy.js';
import { runQmigrate, startQmigrate } from '../helpers/qmigrate.js';
import { type Lab, ramEqual, startLab } from '../orchestrator/lab.js';

const WORKLOAD = ['-object', 'qmigrate-workload,id=w0,rate=3000'];

test('qmigrate -> qmigrate: --postcopy, the link cut in postcopy (exit 5), --resume completes; RAM as the source but for the workload', async (t) => {
  const lab = await startLab(t, 'qmigrate', 'qmigrate', {
    srcMiB: MiB,
    workloadRate: 3000,
    dstExtra: WORKLOAD,
  });
  if (!lab) return;
  const path = (e: { kind: string; path?: string }) => e.path ?? '';
  const link = await cuttableSource(t, lab.dir, path(lab.plan.from));
  // 12 MB/s of writes against 4 MiB/s: precopy never converges; postcopy at 2 MiB/s lasts.
  const args = ['migrate', '--from', link.from, '--to', path(lab.plan.to), '--unix', join(lab.dir, 'm.sock')];
  const slow = ['--max-bandwidth', '4M', '--parameter', 'max-postcopy-bandwidth=2M'];
  const run = startQmigrate(t, [...args, ...slow, '--postcopy', '--json']);
  await waitMigrationStatus(lab.src.qmp, 'postcopy-active', 30_000);
  await link.cut();
  const code = await run.exit(60_000);
  assert.equal(code, 5, run.stdout + run.stderr);
  const report = JSON.parse(run.stdout.trim().split('\n').at(-1) ?? '{}');
  assert.equal(report.status, 'postcopy-paused');
  assert.equal(report.postcopy.startedBy, 'passes');
  assert.equal((await lab.src.qmp.queryMigrate()).status, 'postcopy-paused');
  assert.equal((await lab.dst.qmp.queryMigrate()).status, 'postcopy-paused');
  await lab.src.qmp.migrateSetParameters({ 'max-postcopy-bandwidth': 0 });
  const back = ['migrate', '--from', path(lab.plan.from), '--to', path(lab.plan.to)];
  const r = await runQmigrate([...back, '--unix', join(lab.dir, 'recover.sock'), '--resume', '--json']);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const resumed = JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '{}');
  assert.equal(resumed.status, 'completed');
  assert.equal(resumed.destinationRunState, 'running');
  await lab.dst.qmp.stop();
  const sdump = join(lab.dir, 'src.dump');
  const ddump = join(lab.dir, 'dst.dump');
  await lab.src.qmp.pmemsave({ val: 0, size: MiB << 20, filename: sdump });
  await lab.dst.qmp.pmemsave({ val: 0, size: MiB << 20, filename: ddump });
  assertPostcopyRam(readFileSync(ddump), readFileSync(sdump));
});

/** startLab with its files on tmpfs: QEMU 10.0 takes postcopy on file-backed RAM there only. */
async function tmpfsLab(t: TestContext, from: PeerKind, to: PeerKind) {
  const was = process.env.TMPDIR;
  if (existsSync('/dev/shm')) process.env.TMPDIR = '/dev/shm';
  try {
    return await startLab(t, from, to);
  } finally {
    if (was === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = was;
  }
}

async function postcopyAtOnce(lab: Lab, extra: string[] = []) {
  const path = (e: { kind: string; path?: string }) => e.path ?? '';
  const args = ['migrate', '--from', path(lab.plan.from), '--to', path(lab.plan.to)];
  const pc = ['--max-bandwidth', '8M', '--postcopy', '--postcopy-after-passes', '0', '--json', ...extra];
  return runQmigrate([...args, '--unix', join(lab.dir, 'm.sock'), ...pc]);
}

for (const [from, to] of [
  ['10.0', 'qmigrate'],
  ['qmigrate', '10.0'],
] as const) {
  test(`${from} -> ${to}: --postcopy-after-passes 0 switches at once and completes, the RAM equal`, async (t) => {
    const lab = await tmpfsLab(t, from, to);
    if (!lab) return;
    const r = await postcopyAtOnce(lab);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const report = JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '{}');
    assert.equal(report.status, 'completed');
    assert.equal(report.postcopy.startedBy, 'passes');
    assert.ok(report.postcopy.bytes > 0, 'pages went in postcopy');
    assert.ok(await ramEqual(lab));
  });
}

test("qmigrate -> QEMU 10.0 whose RAM is a file off tmpfs: QEMU's refusal of postcopy-ram is a preflight error (exit 3), nothing moved", async (t) => {
  const lab = await startLab(t, 'qmigrate', '10.0');
  if (!lab) return;
  const r = await postcopyAtOnce(lab);
  assert.equal(r.code, 3, r.stdout + r.stderr);
  assert.match(
    r.stderr,
    /^qmigrate: destination refused migrate-set-capabilities: Postcopy is not supported: Host backend files need to be TMPFS or HUGETLBFS only$/m,
  );
  assert.equal((await lab.src.qmp.queryMigrate()).status, undefined, 'nothing was sent');
  assert.equal((await lab.src.qmp.queryStatus()).status, 'running');
});
