// Postcopy recovery with qmigrate as the destination and QEMU 10.0 as the source: the link is
// cut in postcopy; both sides pause (the destination's guest keeps running, waiting on missing
// pages, its monitor answering); `migrate-recover` on qmigrate and `migrate resume=true` on
// QEMU exchange the received bitmap (RECV_BITMAP) and RESUME_ACK; the migration completes with
// RAM equal but for the workload's bytes.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { FaultProxy } from '../../faults/proxy.js';
import { waitMigration, waitMigrationStatus } from '../helpers/peers.js';
import { assertPostcopyRam, MiB, postcopyPair, statuses } from '../helpers/postcopy.js';

for (const how of ['the link cut', 'migrate-pause on qmigrate'] as const) {
  test(`QEMU 10.0 -> qmigrate postcopy: ${how}, migrate-recover, resume completes`, async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'qmigrate-pc-rec-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const pair = await postcopyPair(t, dir, ['postcopy-blocktime']);
    if (!pair) return;
    const { src, dst, addr } = pair;
    // Cut: the source's bytes go through a proxy that closes both ends 10 MiB in (in
    // postcopy). Pause: straight to the destination, which shuts the connection itself.
    let uri = `unix:${addr.path}`;
    if (how === 'the link cut') {
      const proxy = await FaultProxy.start(
        { path: addr.path },
        { path: join(dir, 'proxy.sock') },
        {
          at: 10 << 20,
          action: 'close',
        },
      );
      t.after(() => proxy.stop());
      uri = proxy.uri;
    }
    const events = dst.qmp.listen('MIGRATION');
    await src.qmp.migrateSetParameters({ 'max-bandwidth': 4 << 20, 'max-postcopy-bandwidth': 8 << 20 });
    await src.qmp.migrate({ uri });
    await src.qmp.migrateStartPostcopy();
    if (how !== 'the link cut') {
      await waitMigrationStatus(dst.qmp, 'postcopy-active', 20_000);
      await sleep(500);
      await dst.qmp.migratePause();
    }
    await waitMigrationStatus(dst.qmp, 'postcopy-paused', 20_000);
    await waitMigrationStatus(src.qmp, 'postcopy-paused', 20_000);
    // Paused: the guest runs on (it waits on a missing page, it does not crash); the monitor answers.
    assert.equal((await dst.qmp.queryStatus()).status, 'running');
    await sleep(300);
    assert.equal((await dst.qmp.queryMigrate()).status, 'postcopy-paused');
    await assert.rejects(
      dst.qmp.pmemsave({ val: 0, size: MiB << 20, filename: join(dir, 'x') }),
      /still on the migration source/,
    );

    const path = join(dir, 'recover.sock');
    await dst.qmp.migrateRecover({ uri: `unix:${path}` });
    // As QEMU 10.0: still paused, and the new listener's address reported.
    const paused = await dst.qmp.queryMigrate();
    assert.equal(paused.status, 'postcopy-paused');
    assert.deepEqual(paused['socket-address'], [{ type: 'unix', path }]);
    await src.qmp.migrate({ uri: `unix:${path}`, resume: true });
    const info = await waitMigration(src.qmp, 60_000);
    assert.equal(info.status, 'completed', JSON.stringify(info));
    // The received bitmap spared what had arrived: not the whole guest again (it had 10 MiB
    // and more when the link was cut; a bitmap of nothing would make that 42 MiB and more).
    const sent = Number(info.ram?.transferred);
    assert.ok(sent < (MiB + 4) << 20, `the source sent ${sent} bytes in all for a ${MiB} MiB guest`);
    const dinfo = await waitMigration(dst.qmp, 20_000);
    assert.equal(dinfo.status, 'completed', JSON.stringify(dinfo));
    assert.deepEqual(statuses(events), [
      'active',
      'postcopy-active',
      'postcopy-paused',
      'postcopy-recover',
      'postcopy-active',
      'completed',
    ]);
    await dst.qmp.stop();
    const dump = join(dir, 'dst.dump');
    await dst.qmp.pmemsave({ val: 0, size: MiB << 20, filename: dump });
    assertPostcopyRam(readFileSync(dump), readFileSync(join(dir, 'src.img')));
  });
}
