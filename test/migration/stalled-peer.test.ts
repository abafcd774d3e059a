// A destination that stops reading must not freeze the source's guest: the migration stays
// `active` with the guest running (switchover waits for bytes the peer has taken, not bytes
// queued in the process), query-migrate counts what reached the peer, expected-downtime is
// still downtime-limit (no rate measured yet), and migrate_cancel ends it at once with the
// guest running and its RAM intact. QEMU 10.0 is the reference for the first three; its
// cancel waits for the exec child to exit (27 s here), qmigrate's does not.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { MigrationInfo, StatusInfo } from '../../src/qapi/types.js';
import { type PeerKind, startPeer, waitMigration } from '../helpers/peers.js';

const MiB = 64;

function tmp(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'qmigrate-stall-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Kills the exec child by the pid it wrote, whatever happened to its parent. */
function reap(t: TestContext, pidFile: string): void {
  t.after(() => {
    try {
      process.kill(Number(readFileSync(pidFile, 'utf8')), 'SIGKILL');
    } catch {}
  });
}

interface Stalled {
  status: StatusInfo;
  info: MigrationInfo;
}

/** A zero-filled guest migrating over exec to a child that never reads, observed after 1.5 s. */
async function stall(t: TestContext, kind: PeerKind) {
  const dir = tmp(t);
  writeFileSync(join(dir, 'src.img'), '');
  const src = await startPeer(t, kind, dir, 'src', join(dir, 'src.img'), MiB);
  if (!src) return undefined;
  const pidFile = join(dir, 'child.pid');
  reap(t, pidFile);
  await src.qmp.migrateSetParameters({ 'downtime-limit': 123 });
  await src.qmp.migrate({
    channels: [
      {
        'channel-type': 'main',
        addr: { transport: 'exec', args: ['/bin/sh', '-c', `echo $$ > ${pidFile}; exec sleep 30`] },
      },
    ],
  });
  await sleep(1500);
  const seen: Stalled = { status: await src.qmp.queryStatus(), info: await src.qmp.queryMigrate() };
  return { src, seen };
}

function assertStalled(kind: string, seen: Stalled): void {
  assert.equal(seen.info.status, 'active', `${kind}: the migration waits in active`);
  assert.deepEqual(seen.status, { status: 'running', running: true }, `${kind}: the guest runs`);
  assert.equal(seen.info['expected-downtime'], 123, `${kind}: no rate measured, downtime-limit stands`);
  // Only what the kernel's pipe took counts as transferred (64 KiB and QEMU's 32 KiB buffer).
  assert.ok(Number(seen.info.ram?.transferred) < 128 << 10, `${kind}: ${seen.info.ram?.transferred} bytes`);
}

test('QEMU 10.0: a destination that never reads leaves the migration active, the guest running', async (t) => {
  const r = await stall(t, '10.0');
  if (r) assertStalled('QEMU 10.0', r.seen);
});

test('qmigrate: a destination that never reads leaves the migration active; cancel ends it at once', async (t) => {
  const r = (await stall(t, 'qmigrate'))!;
  assertStalled('qmigrate', r.seen);
  const t0 = Date.now();
  await r.src.qmp.migrateCancel();
  assert.equal((await waitMigration(r.src.qmp, 5000)).status, 'cancelled');
  assert.ok(Date.now() - t0 < 2000, `cancel took ${Date.now() - t0} ms`);
  assert.deepEqual(await r.src.qmp.queryStatus(), { status: 'running', running: true });
});
