// The source's run state after a cancelled migration, as QEMU 10.0 leaves it: only a guest
// the migration itself stopped is put back, and put back as it was when it was stopped
// (migration.c keeps it as vm_old_state). A guest the user paused during `active` stays
// paused; a paused guest cancelled in pre-switchover is `paused` again, not stuck in
// `finish-migrate` (where `cont` is refused); one the user resumed mid-migration runs again.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import type { StatusInfo } from '../../src/qapi/types.js';
import { writeMixedImage } from '../helpers/guest.js';
import { type PeerKind, startPeer, waitMigration, waitMigrationStatus } from '../helpers/peers.js';

const MiB = 32;

type Scenario =
  | 'stop in active'
  | 'paused, cancel in pre-switchover'
  | 'cont in active, cancel in pre-switchover';

/** Runs one scenario against a destination that reads everything; the run state after cancel. */
async function afterCancel(
  t: TestContext,
  kind: PeerKind,
  scenario: Scenario,
): Promise<StatusInfo | undefined> {
  const dir = mkdtempSync(join(tmpdir(), 'qmigrate-cancel-rs-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const sock = join(dir, 'dst.sock');
  const server = createServer((s) => s.resume());
  await new Promise<void>((r) => server.listen(sock, r));
  t.after(() => server.close());
  writeMixedImage(join(dir, 'src.img'), MiB << 20, 5);
  const src = await startPeer(t, kind, dir, 'src', join(dir, 'src.img'), MiB);
  if (!src) return undefined;
  const q = src.qmp;
  if (scenario === 'stop in active') {
    await q.migrateSetParameters({ 'max-bandwidth': 1 << 20 });
    await q.migrate({ uri: `unix:${sock}` });
    await waitMigrationStatus(q, 'active');
    await q.stop();
  } else {
    await q.migrateSetCapabilities({
      capabilities: [{ capability: 'pause-before-switchover', state: true }],
    });
    await q.stop();
    if (scenario.startsWith('cont')) await q.migrateSetParameters({ 'max-bandwidth': 4 << 20 });
    await q.migrate({ uri: `unix:${sock}` });
    if (scenario === 'cont in active, cancel in pre-switchover') {
      await waitMigrationStatus(q, 'active');
      await q.cont();
    }
    await waitMigrationStatus(q, 'pre-switchover');
  }
  await q.migrateCancel();
  assert.equal((await waitMigration(q, 10_000)).status, 'cancelled');
  return q.queryStatus();
}

const expected: Record<Scenario, StatusInfo> = {
  'stop in active': { status: 'paused', running: false },
  'paused, cancel in pre-switchover': { status: 'paused', running: false },
  'cont in active, cancel in pre-switchover': { status: 'running', running: true },
};

for (const [scenario, want] of Object.entries(expected) as [Scenario, StatusInfo][]) {
  test(`run state after cancel (${scenario}) is QEMU 10.0's`, async (t) => {
    const theirs = await afterCancel(t, '10.0', scenario);
    if (theirs) assert.deepEqual(theirs, want, 'QEMU 10.0');
    assert.deepEqual(await afterCancel(t, 'qmigrate', scenario), want, 'qmigrate');
  });
}
