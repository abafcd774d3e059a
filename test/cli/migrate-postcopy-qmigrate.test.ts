// `qmigrate migrate --postcopy` between two `qmigrate vm`s running the guest workload, which
// writes faster than --max-bandwidth lets precopy converge: the switch after the first pass,
// the link cut during postcopy (a FaultProxy the source's `migrate` is redirected to) ending
// with exit 5 and both sides postcopy-paused, then `--resume` completing it; the destination's
// RAM is the source's but for its own workload's counters, and passes QEMU's check.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { FaultProxy, QmpRelay, type Where } from '../../faults/proxy.js';
import { waitMigrationStatus } from '../helpers/peers.js';
import { assertPostcopyRam, MiB } from '../helpers/postcopy.js';
import { runQmigrate, spawnQmigrate } from '../helpers/qmigrate.js';
import { startLab } from '../orchestrator/lab.js';

const WORKLOAD = ['-object', 'qmigrate-workload,id=w0,rate=3000'];

test('qmigrate -> qmigrate: --postcopy, the link cut in postcopy (exit 5), --resume completes; RAM as the source but for the workload', async (t) => {
  const lab = await startLab(t, 'qmigrate', 'qmigrate', {
    srcMiB: MiB,
    workloadRate: 3000,
    dstExtra: WORKLOAD,
  });
  if (!lab) return;
  const path = (e: { kind: string; path?: string }) => e.path ?? '';
  let proxy: FaultProxy | undefined;
  const relay = await QmpRelay.start(join(lab.dir, 'relay.qmp'), path(lab.plan.from), async (to: Where) => {
    proxy = await FaultProxy.start(to, { path: join(lab.dir, 'proxy.sock') });
    return proxy.where;
  });
  t.after(async () => {
    await relay.stop();
    await proxy?.stop();
  });
  // 12 MB/s of writes against 4 MiB/s: precopy never converges; postcopy at 2 MiB/s lasts.
  const args = [
    'migrate',
    '--from',
    relay.path,
    '--to',
    path(lab.plan.to),
    '--unix',
    join(lab.dir, 'm.sock'),
  ];
  const slow = ['--max-bandwidth', '4M', '--parameter', 'max-postcopy-bandwidth=2M'];
  const child = spawnQmigrate([...args, ...slow, '--postcopy', '--json']);
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d) => {
    stdout += d;
  });
  child.stderr?.on('data', (d) => {
    stderr += d;
  });
  const exited = new Promise<number | null>((r) => child.on('close', r));
  t.after(() => child.kill('SIGKILL'));
  await waitMigrationStatus(lab.src.qmp, 'postcopy-active', 30_000);
  await proxy?.stop();
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  const code = await exited;
  clearTimeout(timer);
  assert.equal(code, 5, stdout + stderr);
  const report = JSON.parse(stdout.trim().split('\n').at(-1) ?? '{}');
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
