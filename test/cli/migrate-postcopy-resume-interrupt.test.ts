// `qmigrate migrate --resume` stopped (SIGINT) while the source is still in postcopy-recover
// (its new connection stalls in a FaultProxy, so the handshake cannot end): exit 130, nothing
// cancelled, and the report does not claim that the link broke (no postcopy-paused status, no
// hint to resume): the recovery goes on without qmigrate following it.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { FaultProxy, QmpRelay, type Where } from '../../faults/proxy.js';
import { waitMigrationStatus } from '../helpers/peers.js';
import { spawnQmigrate } from '../helpers/qmigrate.js';
import { startLab } from '../orchestrator/lab.js';

/** Runs qmigrate; `during` gets the child once it runs; resolves with its code and output. */
async function run(args: string[], during: (kill: (s: NodeJS.Signals) => void) => Promise<void>) {
  const child = spawnQmigrate(args);
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d) => {
    stdout += d;
  });
  child.stderr?.on('data', (d) => {
    stderr += d;
  });
  const exited = new Promise<number | null>((r) => child.on('close', r));
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  try {
    await during((s) => child.kill(s)).catch((e: Error) => {
      // What qmigrate said is what tells a refused resume from a slow one.
      throw new Error(`${e.message}; qmigrate exited ${child.exitCode}: ${stdout}${stderr}`);
    });
    return { code: await exited, stdout, stderr };
  } finally {
    clearTimeout(timer);
    child.kill('SIGKILL');
  }
}

test('--resume interrupted in postcopy-recover: exit 130, no cancel, the report says interrupted, not paused', async (t) => {
  const lab = await startLab(t, 'qmigrate', 'qmigrate', {
    srcMiB: 16,
    // No workload on the destination: its page requests would pull the pages past
    // max-postcopy-bandwidth, and the postcopy phase would be over before the cut.
    workloadRate: 3000,
  });
  if (!lab) return;
  const path = (e: { kind: string; path?: string }) => e.path ?? '';
  const proxies: FaultProxy[] = [];
  // The first migrate goes through a proxy the test cuts; the resume's through one that stalls.
  const relay = await QmpRelay.start(join(lab.dir, 'relay.qmp'), path(lab.plan.from), async (to: Where) => {
    const stall = proxies.length > 0 ? { at: 0, action: 'stall' as const } : {};
    const p = await FaultProxy.start(to, { path: join(lab.dir, `proxy${proxies.length}.sock`) }, stall);
    proxies.push(p);
    return p.where;
  });
  t.after(async () => {
    await relay.stop();
    for (const p of proxies) await p.stop();
  });
  const both = ['--from', relay.path, '--to', path(lab.plan.to)];
  const first = await run(
    [
      'migrate',
      ...both,
      '--unix',
      join(lab.dir, 'm.sock'),
      '--max-bandwidth',
      '4M',
      '--parameter',
      'max-postcopy-bandwidth=1M',
      '--postcopy',
    ],
    async () => {
      await waitMigrationStatus(lab.src.qmp, 'postcopy-active', 30_000);
      await proxies[0]?.stop();
    },
  );
  assert.equal(first.code, 5, first.stdout + first.stderr);
  // The resume's preflight wants both sides paused; the destination may see the cut later
  // than the source, whose pause ended the first run.
  await waitMigrationStatus(lab.dst.qmp, 'postcopy-paused', 20_000);
  const resumed = await run(
    ['migrate', ...both, '--unix', join(lab.dir, 'r.sock'), '--resume', '--json'],
    async (kill) => {
      await waitMigrationStatus(lab.src.qmp, 'postcopy-recover', 20_000);
      kill('SIGINT');
    },
  );
  assert.equal(resumed.code, 130, resumed.stdout + resumed.stderr);
  const report = JSON.parse(resumed.stdout.trim().split('\n').at(-1) ?? '{}');
  assert.equal(report.type, 'report');
  assert.notEqual(report.status, 'postcopy-paused', 'the link did not break: the recovery was interrupted');
  assert.match(report.reason, /interrupted/);
  assert.doesNotMatch(report.reason, /link broke/);
  assert.doesNotMatch(resumed.stderr, /resume it once the link is back/);
  // Nothing was cancelled: the source is still recovering (or paused again, never cancelled).
  const st = (await lab.src.qmp.queryMigrate()).status;
  assert.ok(st === 'postcopy-recover' || st === 'postcopy-paused', `source is '${st}'`);
});
