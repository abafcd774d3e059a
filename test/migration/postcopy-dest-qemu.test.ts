// QEMU 10.0 as postcopy source -> qmigrate as destination with its guest workload running:
// postcopy starts at once (max-bandwidth low), the workload faults on pages still on the
// source, fetches them over the return path and waits; the migration completes, RAM equals
// the source's except the first bytes the workload wrote, QEMU's consistency check passes,
// and blocktime shows the waits.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { WORKLOAD_START } from '../../src/machine/workload.js';
import { waitMigration } from '../helpers/peers.js';
import { assertPostcopyRam, MiB, postcopyPair, statuses } from '../helpers/postcopy.js';

test('QEMU 10.0 -> qmigrate postcopy with the workload faulting pages in', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'qmigrate-pc-dst-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const pair = await postcopyPair(t, dir, ['postcopy-blocktime']);
  if (!pair) return;
  const { src, dst, addr } = pair;
  const events = dst.qmp.listen('MIGRATION');
  // 4 MiB/s: the first pass would take 8 s; postcopy starts at once and runs at 8 MiB/s.
  await src.qmp.migrateSetParameters({ 'max-bandwidth': 4 << 20, 'max-postcopy-bandwidth': 8 << 20 });
  await src.qmp.migrate({ channels: [{ 'channel-type': 'main', addr }] });
  await src.qmp.migrateStartPostcopy();
  const info = await waitMigration(src.qmp, 60_000);
  assert.equal(info.status, 'completed', JSON.stringify(info));
  const dinfo = await waitMigration(dst.qmp, 20_000);
  assert.equal(dinfo.status, 'completed', JSON.stringify(dinfo));
  t.diagnostic(`source: ${JSON.stringify(info.ram)}; destination: ${JSON.stringify(dinfo)}`);
  // The workload faulted (it writes from 1 MiB on while most pages were still at the source).
  assert.ok(Number(info.ram?.['postcopy-requests']) > 0, 'the source served page requests');
  assert.ok(Number(dinfo['postcopy-blocktime']) > 0, 'blocktime counted the waits');
  assert.equal(dinfo['postcopy-vcpu-blocktime']?.length, 1);
  assert.ok(Number(dinfo['postcopy-vcpu-blocktime']?.[0]) > 0);
  assert.deepEqual(statuses(events), ['active', 'postcopy-active', 'completed']);
  assert.equal((await dst.qmp.queryStatus()).status, 'running');
  await sleep(200);
  await dst.qmp.stop();
  const dump = join(dir, 'dst.dump');
  await dst.qmp.pmemsave({ val: 0, size: MiB << 20, filename: dump });
  const ram = readFileSync(dump);
  assertPostcopyRam(ram, readFileSync(join(dir, 'src.img')));
  assert.notEqual(ram[WORKLOAD_START], 0, 'the workload ran on the destination');
});

// QEMU 10.0's destination (observed with QEMU 10.0 on both ends): at POSTCOPY_RUN the guest
// starts with autostart even when the source's guest was stopped, and stays paused with -S.
for (const c of [
  { name: 'a stopped source, autostart', stopSource: true, dstArgs: [], want: 'running' },
  { name: 'a running source, -S', stopSource: false, dstArgs: ['-S'], want: 'paused' },
]) {
  test(`postcopy RUN: ${c.name} -> ${c.want}`, async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'qmigrate-pc-run-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const pair = await postcopyPair(t, dir, [], c.dstArgs);
    if (!pair) return;
    const { src, dst, addr } = pair;
    if (c.stopSource) await src.qmp.stop();
    await src.qmp.migrateSetParameters({ 'max-bandwidth': 4 << 20, 'max-postcopy-bandwidth': 64 << 20 });
    await src.qmp.migrate({ channels: [{ 'channel-type': 'main', addr }] });
    await src.qmp.migrateStartPostcopy();
    assert.equal((await waitMigration(src.qmp, 30_000)).status, 'completed');
    assert.equal((await waitMigration(dst.qmp, 20_000)).status, 'completed');
    assert.equal((await dst.qmp.queryStatus()).status, c.want);
  });
}
