// A destination in postcopy-recover whose resume channel never speaks (a stray client on the
// migrate-recover address): migrate-pause there shuts that channel and brings it back to
// postcopy-paused, as QEMU 10.0 does for postcopy-active and postcopy-recover alike
// (migration/migration.c qmp_migrate_pause, migration_postcopy_is_alive); a second
// migrate-recover and the source's resume then finish the migration, RAM equal.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { waitMigration, waitMigrationStatus } from '../helpers/peers.js';
import { assertPostcopyRam, MiB, writingPair } from '../helpers/postcopy.js';

test('migrate-pause on a destination stuck in postcopy-recover returns it to postcopy-paused', async (t) => {
  const { dir, src, dst } = await writingPair(t, 'qmigrate-pc-recpause-');
  const on = [{ capability: 'postcopy-ram' as const, state: true }];
  await src.qmp.migrateSetCapabilities({ capabilities: on });
  await dst.qmp.migrateSetCapabilities({ capabilities: on });
  const uri = `unix:${join(dir, 'm.sock')}`;
  await dst.qmp.migrateIncoming({ uri });
  await src.qmp.migrateSetParameters({ 'max-bandwidth': 4 << 20, 'max-postcopy-bandwidth': 4 << 20 });
  await src.qmp.migrate({ uri });
  await src.qmp.migrateStartPostcopy();
  await waitMigrationStatus(src.qmp, 'postcopy-active', 10_000);
  await sleep(300);
  await src.qmp.migratePause();
  await waitMigrationStatus(dst.qmp, 'postcopy-paused', 10_000);

  // A client that connects to the recover address and says nothing.
  const stray = join(dir, 'stray.sock');
  await dst.qmp.migrateRecover({ uri: `unix:${stray}` });
  const sock = connect(stray);
  t.after(() => sock.destroy());
  await waitMigrationStatus(dst.qmp, 'postcopy-recover', 10_000);
  await assert.rejects(dst.qmp.migrateRecover({ uri: `unix:${join(dir, 'early.sock')}` }), {
    message: 'Migrate recover can only be run when postcopy is paused.',
  });

  await dst.qmp.migratePause();
  await waitMigrationStatus(dst.qmp, 'postcopy-paused', 10_000);

  const r = `unix:${join(dir, 'r.sock')}`;
  await dst.qmp.migrateRecover({ uri: r });
  await src.qmp.migrate({ uri: r, resume: true });
  const info = await waitMigration(src.qmp, 60_000);
  assert.equal(info.status, 'completed', JSON.stringify(info));
  const dinfo = await waitMigration(dst.qmp, 20_000);
  assert.equal(dinfo.status, 'completed', JSON.stringify(dinfo));
  await dst.qmp.stop();
  await src.qmp.pmemsave({ val: 0, size: MiB << 20, filename: join(dir, 's.dump') });
  await dst.qmp.pmemsave({ val: 0, size: MiB << 20, filename: join(dir, 'd.dump') });
  assertPostcopyRam(readFileSync(join(dir, 'd.dump')), readFileSync(join(dir, 's.dump')));
});
