// postcopy-ram on at both ends, but the precopy completes before any migrate-start-postcopy
// (libvirt's --postcopy turns the capability on and switches only if needed): the stream
// carries POSTCOPY_ADVISE and then ends as an ordinary precopy. A qmigrate destination must
// take that end as QEMU 10.0 does (migration/migration.c process_incoming_migration_co: an
// ADVISE-only postcopy state exits normally): completed, guest running, RAM the source's.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { waitMigration } from '../helpers/peers.js';
import { assertPostcopyRam, MiB, postcopyPair, statuses, writingPair } from '../helpers/postcopy.js';

test('QEMU 10.0 -> qmigrate: postcopy-ram on, never started: an ordinary precopy end', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'qmigrate-pc-never-q-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const pair = await postcopyPair(t, dir);
  if (!pair) return;
  const { src, dst, addr } = pair;
  const events = dst.qmp.listen('MIGRATION');
  await src.qmp.migrate({ channels: [{ 'channel-type': 'main', addr }] });
  const info = await waitMigration(src.qmp, 60_000);
  assert.equal(info.status, 'completed', JSON.stringify(info));
  const dinfo = await waitMigration(dst.qmp, 20_000);
  assert.equal(dinfo.status, 'completed', JSON.stringify(dinfo));
  assert.deepEqual(statuses(events), ['active', 'completed']);
  assert.equal((await dst.qmp.queryStatus()).status, 'running');
  await dst.qmp.stop();
  const dump = join(dir, 'dst.dump');
  await dst.qmp.pmemsave({ val: 0, size: MiB << 20, filename: dump });
  assertPostcopyRam(readFileSync(dump), readFileSync(join(dir, 'src.img')));
});

test('qmigrate -> qmigrate: postcopy-ram on, never started, both guests writing', async (t) => {
  const { dir, src, dst } = await writingPair(t, 'qmigrate-pc-never-');
  const on = [{ capability: 'postcopy-ram' as const, state: true }];
  await src.qmp.migrateSetCapabilities({ capabilities: on });
  await dst.qmp.migrateSetCapabilities({ capabilities: on });
  const uri = `unix:${join(dir, 'm.sock')}`;
  await dst.qmp.migrateIncoming({ uri });
  await src.qmp.migrate({ uri });
  const info = await waitMigration(src.qmp, 60_000);
  assert.equal(info.status, 'completed', JSON.stringify(info));
  const dinfo = await waitMigration(dst.qmp, 20_000);
  assert.equal(dinfo.status, 'completed', JSON.stringify(dinfo));
  assert.equal((await dst.qmp.queryStatus()).status, 'running');
  await dst.qmp.stop();
  const sdump = join(dir, 'src.dump');
  const ddump = join(dir, 'dst.dump');
  await src.qmp.pmemsave({ val: 0, size: MiB << 20, filename: sdump });
  await dst.qmp.pmemsave({ val: 0, size: MiB << 20, filename: ddump });
  assertPostcopyRam(readFileSync(ddump), readFileSync(sdump));
});
