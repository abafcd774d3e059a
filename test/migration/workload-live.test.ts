// Live migration with the guest writing memory all along (qmigrate -> qmigrate): several
// dirty-bitmap syncs happen, downtime stays within downtime-limit plus a stated margin, and
// the destination's RAM passes QEMU's own consistency check and keeps being written.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { checkGuestRam, findNextPage } from '../../src/machine/workload.js';
import { qmigratePair, waitMigration, waitRunstate } from '../helpers/peers.js';

const MiB = 256;
const DOWNTIME_LIMIT = 300;
/** Stop-and-copy also pays for flushing the socket and the device sections: allow 200 ms. */
const MARGIN = 200;

test('a writing guest migrates live and consistently', async (t) => {
  const { dir, src, dst } = await qmigratePair(t, 'qmigrate-live-', {
    mib: MiB,
    rate: 4000,
    dstWorkload: true,
  });
  await sleep(300); // the guest is writing
  const addr = { transport: 'socket' as const, type: 'unix' as const, path: join(dir, 'm.sock') };
  await dst.qmp.migrateIncoming({ channels: [{ 'channel-type': 'main', addr }] });
  await src.qmp.migrateSetCapabilities({ capabilities: [{ capability: 'events', state: true }] });
  // 64 MiB/s against 16 MB/s of dirtying: converges, after several passes.
  await src.qmp.migrateSetParameters({ 'max-bandwidth': 64 << 20, 'downtime-limit': DOWNTIME_LIMIT });
  const events = src.qmp.listen('MIGRATION', 'MIGRATION_PASS', 'STOP');
  await src.qmp.migrate({ channels: [{ 'channel-type': 'main', addr }] });
  const info = await waitMigration(src.qmp);
  assert.equal(info.status, 'completed', JSON.stringify(info));
  const syncs = Number(info.ram?.['dirty-sync-count']);
  t.diagnostic(`syncs ${syncs}, downtime ${info.downtime} ms, total ${info['total-time']} ms`);
  assert.ok(syncs > 2, `only ${syncs} dirty syncs: the guest was not dirtying memory`);
  assert.ok(Number(info.downtime) <= DOWNTIME_LIMIT + MARGIN, `downtime ${info.downtime} ms`);
  const sent = Number(info.ram?.normal) + Number(info.ram?.duplicate);
  assert.ok(sent > (MiB << 20) / 4096, `dirtied pages were sent again (${sent} page records)`);

  // QEMU 10.0's event order; MIGRATION_PASS numbers every sync.
  const seq = events
    .drain()
    .map((e) =>
      e.event === 'MIGRATION' ? e.data.status : e.event === 'MIGRATION_PASS' ? `pass${e.data.pass}` : e.event,
    );
  const passes = seq.filter((s) => String(s).startsWith('pass'));
  assert.deepEqual(
    passes,
    [...Array(syncs).keys()].map((i) => `pass${i + 1}`),
  );
  const skeleton = seq.filter((s) => !String(s).startsWith('pass') || s === 'pass1' || s === `pass${syncs}`);
  assert.deepEqual(skeleton, ['setup', 'pass1', 'active', 'STOP', 'device', `pass${syncs}`, 'completed']);

  // The destination runs the guest on: its loop goes on from where the source stopped.
  await waitRunstate(dst.qmp, 'running');
  await sleep(200);
  await dst.qmp.stop();
  const dump = join(dir, 'dst.dump');
  await dst.qmp.pmemsave({ val: 0, size: MiB << 20, filename: dump });
  const ram = readFileSync(dump);
  assert.equal(checkGuestRam(ram), 0, 'check_guests_ram found bad pages on the destination');
  const sdump = join(dir, 'src.dump');
  await src.qmp.pmemsave({ val: 0, size: MiB << 20, filename: sdump });
  const srcRam = readFileSync(sdump);
  assert.equal(checkGuestRam(srcRam), 0);
  assert.notEqual(
    findNextPage(ram),
    findNextPage(srcRam),
    'the destination guest did not run after switchover',
  );
});
