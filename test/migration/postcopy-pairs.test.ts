// qmigrate -> qmigrate postcopy, both running the guest workload: the source writes faster
// than max-bandwidth lets precopy converge, migrate-start-postcopy switches, the destination's
// workload faults pages in; the migration completes (also after a link cut in postcopy and a
// recovery), the destination's RAM is the source's but for the bytes its own workload wrote,
// and QEMU's consistency check passes on it.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { FaultProxy } from '../../faults/proxy.js';
import { waitMigration, waitMigrationStatus } from '../helpers/peers.js';
import { assertPostcopyRam, MiB, writingPair } from '../helpers/postcopy.js';

for (const cut of [false, true]) {
  test(`qmigrate -> qmigrate postcopy with a writing guest${cut ? ', the link cut and recovered' : ''}`, async (t) => {
    const { dir, src, dst } = await writingPair(t, 'qmigrate-pc-pair-');
    const on = (caps: string[]) => caps.map((c) => ({ capability: c as 'events', state: true }));
    await src.qmp.migrateSetCapabilities({ capabilities: on(['postcopy-ram']) });
    await dst.qmp.migrateSetCapabilities({ capabilities: on(['postcopy-ram', 'postcopy-blocktime']) });
    const addr = join(dir, 'm.sock');
    await dst.qmp.migrateIncoming({ uri: `unix:${addr}` });
    let uri = `unix:${addr}`;
    if (cut) {
      // Past the precopy part (about 2 MiB at 4 MiB/s) and before the end.
      const proxy = await FaultProxy.start(
        { path: addr },
        { path: join(dir, 'proxy.sock') },
        {
          at: 12 << 20,
          action: 'close',
        },
      );
      t.after(() => proxy.stop());
      uri = proxy.uri;
    }
    // 12 MB/s of writes against 4 MiB/s: precopy alone would never converge.
    await src.qmp.migrateSetParameters({ 'max-bandwidth': 4 << 20, 'max-postcopy-bandwidth': 8 << 20 });
    await src.qmp.migrate({ uri });
    await sleep(500);
    await src.qmp.migrateStartPostcopy();
    if (cut) {
      await waitMigrationStatus(dst.qmp, 'postcopy-paused', 20_000);
      await waitMigrationStatus(src.qmp, 'postcopy-paused', 20_000);
      const recover = `unix:${join(dir, 'recover.sock')}`;
      await dst.qmp.migrateRecover({ uri: recover });
      await src.qmp.migrate({ uri: recover, resume: true });
    }
    const info = await waitMigration(src.qmp, 60_000);
    assert.equal(info.status, 'completed', JSON.stringify(info));
    const dinfo = await waitMigration(dst.qmp, 20_000);
    assert.equal(dinfo.status, 'completed', JSON.stringify(dinfo));
    assert.ok(Number(dinfo['postcopy-blocktime']) > 0, 'the destination guest waited on missing pages');
    await sleep(200);
    await dst.qmp.stop();
    const sdump = join(dir, 'src.dump');
    const ddump = join(dir, 'dst.dump');
    await src.qmp.pmemsave({ val: 0, size: MiB << 20, filename: sdump });
    await dst.qmp.pmemsave({ val: 0, size: MiB << 20, filename: ddump });
    assertPostcopyRam(readFileSync(ddump), readFileSync(sdump));
  });
}
