// query-migrate and the MIGRATION events as QEMU 10.0 gives them, compared with qmigrate's
// for the same guest and the same migration: the members present in each state and the
// order of events (values such as times and byte counts legitimately differ).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import type { MigrationInfo } from '../../src/qapi/types.js';
import { writeMixedImage } from '../helpers/guest.js';
import { type PeerKind, startPeer, waitMigration } from '../helpers/peers.js';

interface Observed {
  events: string[];
  activeKeys: string[];
  activeRamKeys: string[];
  doneKeys: string[];
  doneRamKeys: string[];
  listening: MigrationInfo;
}

const keys = (o: object | undefined) => Object.keys(o ?? {}).sort();

async function observe(t: TestContext, kind: PeerKind): Promise<Observed | undefined> {
  const dir = mkdtempSync(join(tmpdir(), `qmigrate-qm-${kind}-`));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const img = join(dir, 'img');
  writeMixedImage(img, 64 << 20, 2);
  const src = await startPeer(t, kind, dir, 'src', img, 64);
  const dst = await startPeer(t, kind, dir, 'dst', join(dir, 'dst.img'), 64, ['-incoming', 'defer']);
  if (!src || !dst) return undefined;
  await dst.qmp.migrateIncoming({ uri: 'tcp:127.0.0.1:0' });
  const listening = await dst.qmp.queryMigrate();
  await src.qmp.migrateSetCapabilities({ capabilities: [{ capability: 'events', state: true }] });
  await src.qmp.migrateSetParameters({ 'max-bandwidth': 32 << 20 });
  const l = src.qmp.listen('MIGRATION', 'MIGRATION_PASS', 'STOP');
  await src.qmp.migrate({ uri: `file:${join(dir, 'm.mig')}` });
  let active: MigrationInfo | undefined;
  for (let i = 0; i < 200 && !active; i++) {
    const info = await src.qmp.queryMigrate();
    if (info.status === 'active' && info.ram) active = info;
  }
  assert.ok(active, 'saw the migration active');
  const done = await waitMigration(src.qmp);
  assert.equal(done.status, 'completed');
  const events = l
    .drain()
    .map((e) => (e.event === 'MIGRATION' ? e.data.status : e.event === 'MIGRATION_PASS' ? 'PASS' : e.event));
  // Count passes apart from their number: iterations depend on timing.
  const squeezed = events.filter((e, i) => !(e === 'PASS' && events[i - 1] === 'PASS'));
  return {
    events: squeezed,
    activeKeys: keys(active),
    activeRamKeys: keys(active?.ram),
    doneKeys: keys(done),
    doneRamKeys: keys(done.ram),
    listening,
  };
}

test('query-migrate members and MIGRATION events match QEMU 10.0', async (t) => {
  const theirs = await observe(t, '10.0');
  if (!theirs) return;
  const ours = (await observe(t, 'qmigrate'))!;
  assert.deepEqual(ours.events, theirs.events);
  assert.deepEqual(ours.activeKeys, theirs.activeKeys);
  assert.deepEqual(ours.activeRamKeys, theirs.activeRamKeys);
  assert.deepEqual(ours.doneKeys, theirs.doneKeys);
  assert.deepEqual(ours.doneRamKeys, theirs.doneRamKeys);
  const strip = (i: MigrationInfo) => JSON.stringify(i).replace(/"port":"\d+"/, '"port":"P"');
  assert.equal(strip(ours.listening), strip(theirs.listening));
});
