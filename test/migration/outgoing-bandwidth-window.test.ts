// The bandwidth the convergence check uses is measured over windows of at least
// BUFFER_DELAY (100 ms), as QEMU's migration_update_counters measures it (migration/
// migration.c). Measured also at each pass's end, over a window of a few ms after a burst,
// it came out several times max-bandwidth, and a guest dirtying faster than max-bandwidth
// "converged" with its whole RAM still dirty, sent in downtime.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { qmigratePair, waitMigration } from '../helpers/peers.js';

const MiB = 128;
/** 30000 pages/s is 117 MiB/s of writing, against 40 MiB/s of max-bandwidth. */
const RATE = 30_000;
const MAX_BW = 40 << 20;

test('a guest dirtying faster than max-bandwidth does not converge', async (t) => {
  const { dir, src, dst } = await qmigratePair(t, 'qmigrate-bw-window-', { mib: MiB, rate: RATE });
  const addr = { transport: 'socket' as const, type: 'unix' as const, path: join(dir, 'm.sock') };
  await dst.qmp.migrateIncoming({ channels: [{ 'channel-type': 'main', addr }] });
  await src.qmp.migrateSetParameters({ 'max-bandwidth': MAX_BW });
  await src.qmp.migrate({ channels: [{ 'channel-type': 'main', addr }] });
  let passes = 0;
  for (const end = Date.now() + 60_000; passes < 4; await sleep(100)) {
    assert.ok(Date.now() < end, `fewer than 4 passes within 60 s (${passes})`);
    const info = await src.qmp.queryMigrate();
    if (info.status === 'setup') continue;
    assert.equal(info.status, 'active', `converged after pass ${passes}: ${JSON.stringify(info.ram)}`);
    passes = Number(info.ram?.['dirty-sync-count'] ?? 0);
  }
  await src.qmp.migrateCancel();
  assert.equal((await waitMigration(src.qmp)).status, 'cancelled');
});
