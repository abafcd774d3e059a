// query-migrate's dirty-pages-rate is a rate of the guest's writing, as QEMU's
// migration_bitmap_sync computes it (migration/ram.c): pages newly dirtied since the last
// update over the time since then, updated after more than a second. It was the pages of a
// whole pass over the ~1 ms of the sync, millions of pages a second for a guest writing
// thousands.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { qmigratePair, waitMigration } from '../helpers/peers.js';

const MiB = 64;
/** Pages the guest writes per second: no rate of distinct dirty pages can be higher. */
const RATE = 5000;

test('dirty-pages-rate stays within what the guest writes', async (t) => {
  const { dir, src, dst } = await qmigratePair(t, 'qmigrate-dirty-rate-', { mib: MiB, rate: RATE });
  const addr = { transport: 'socket' as const, type: 'unix' as const, path: join(dir, 'm.sock') };
  await dst.qmp.migrateIncoming({ channels: [{ 'channel-type': 'main', addr }] });
  // 16 MiB/s against 20 MiB/s of writing: passes of seconds that never converge.
  await src.qmp.migrateSetParameters({ 'max-bandwidth': 16 << 20 });
  await src.qmp.migrate({ channels: [{ 'channel-type': 'main', addr }] });
  const rates: number[] = [];
  for (const end = Date.now() + 30_000; rates.filter((r) => r > 0).length < 2; await sleep(100)) {
    assert.ok(Date.now() < end, `no dirty-pages-rate within 30 s: ${rates}`);
    const info = await src.qmp.queryMigrate();
    if (info.status === 'setup') continue; // the connection still being made, on a busy machine
    assert.equal(info.status, 'active', JSON.stringify(info));
    rates.push(Number(info.ram?.['dirty-pages-rate'] ?? 0));
  }
  await src.qmp.migrateCancel();
  assert.equal((await waitMigration(src.qmp)).status, 'cancelled');
  const measured = rates.filter((r) => r > 0);
  for (const r of measured)
    assert.ok(r <= RATE * 1.1, `${r} pages/s from a guest writing ${RATE}: ${measured}`);
  assert.ok(
    measured.every((r) => r >= RATE / 10),
    `${measured}`,
  );
});
