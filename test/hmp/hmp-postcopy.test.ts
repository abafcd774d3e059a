// HMP's postcopy commands on a qmigrate VM pair: `migrate -d`, `migrate_start_postcopy`,
// `migrate_pause`, `migrate_recover URI` on the destination and `migrate -d -r URI` on the
// source drive a postcopy through a pause and its recovery to completed, RAM equal.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { type Peer, waitMigration, waitMigrationStatus } from '../helpers/peers.js';
import { assertPostcopyRam, MiB, writingPair } from '../helpers/postcopy.js';

const hmp = (p: Peer, line: string) => p.qmp.execute('human-monitor-command', { 'command-line': line });

test('HMP migrate_start_postcopy, migrate_pause, migrate_recover and migrate -r on qmigrate', async (t) => {
  const { dir, src, dst } = await writingPair(t, 'qmigrate-hmp-pc-');
  assert.equal(await hmp(src, 'migrate_set_capability postcopy-ram on'), '');
  assert.equal(await hmp(dst, 'migrate_set_capability postcopy-ram on'), '');
  assert.equal(await hmp(src, 'migrate_set_parameter max-bandwidth 4M'), '');
  assert.equal(await hmp(src, 'migrate_set_parameter max-postcopy-bandwidth 4M'), '');
  const uri = `unix:${join(dir, 'm.sock')}`;
  assert.equal(await hmp(dst, `migrate_incoming ${uri}`), '');
  assert.equal(
    await hmp(dst, 'migrate_start_postcopy'),
    'Error: Postcopy must be started after migration has been started\r\n',
  );
  assert.equal(await hmp(src, `migrate -d ${uri}`), '');
  await sleep(300);
  assert.equal(await hmp(src, 'migrate_start_postcopy'), '');
  await waitMigrationStatus(src.qmp, 'postcopy-active', 10_000);
  await sleep(300);
  assert.equal(await hmp(src, 'migrate_pause'), '');
  await waitMigrationStatus(dst.qmp, 'postcopy-paused', 10_000);
  await waitMigrationStatus(src.qmp, 'postcopy-paused', 10_000);
  assert.equal(
    await hmp(src, 'migrate_pause'),
    'Error: migrate-pause is currently only supported during postcopy-active or postcopy-recover state\r\n',
  );
  const r = `unix:${join(dir, 'r.sock')}`;
  assert.equal(await hmp(dst, `migrate_recover ${r}`), '');
  assert.equal(await hmp(src, `migrate -d -r ${r}`), '');
  const info = await waitMigration(src.qmp, 60_000);
  assert.equal(info.status, 'completed', JSON.stringify(info));
  assert.equal((await waitMigration(dst.qmp, 20_000)).status, 'completed');
  await dst.qmp.stop();
  await src.qmp.pmemsave({ val: 0, size: MiB << 20, filename: join(dir, 's.dump') });
  await dst.qmp.pmemsave({ val: 0, size: MiB << 20, filename: join(dir, 'd.dump') });
  assertPostcopyRam(readFileSync(join(dir, 'd.dump')), readFileSync(join(dir, 's.dump')));
});
