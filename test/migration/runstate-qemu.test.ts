// The guest's run state (query-status) in every migration state, on the source and on the
// destination, for QEMU 10.0 and for qmigrate driven the same way: the two tables must be
// equal. States are held with peers the test controls: a rate limit (active), the
// pause-before-switchover capability (pre-switchover), a destination that reads the whole
// stream but never confirms it on the return path (device), one that hangs up (failed).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import type { StatusInfo } from '../../src/qapi/types.js';
import { writeMixedImage } from '../helpers/guest.js';
import { type Peer, type PeerKind, startPeer, waitMigration, waitMigrationStatus } from '../helpers/peers.js';

const MiB = 32;
type Table = Record<string, StatusInfo | string[] | number | string>;

function tmp(t: TestContext, kind: string): string {
  const dir = mkdtempSync(join(tmpdir(), `qmigrate-rs-${kind}-`));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A listener the test owns: `onConn` decides what the "destination" does. */
async function fakeDestination(t: TestContext, path: string, onConn: (s: Socket) => void): Promise<Server> {
  const server = createServer(onConn);
  await new Promise<void>((r) => server.listen(path, r));
  t.after(() => server.close());
  return server;
}

async function source(t: TestContext, kind: PeerKind, dir: string, name: string): Promise<Peer | undefined> {
  const img = join(dir, `${name}.img`);
  writeMixedImage(img, MiB << 20, 4);
  return startPeer(t, kind, dir, name, img, MiB);
}

/** Source side: setup is too short to catch reliably with a real peer and is left out. */
async function sourceTable(t: TestContext, kind: PeerKind): Promise<Table | undefined> {
  const dir = tmp(t, kind);
  const table: Table = {};
  const sock = join(dir, 'fake.sock');
  let a = await source(t, kind, dir, 'a');
  if (!a) return undefined;

  // active, then cancelled: a slow rate keeps the migration active.
  await fakeDestination(t, sock, (s) => s.resume());
  await a.qmp.migrateSetParameters({ 'max-bandwidth': 1 << 20 });
  await a.qmp.migrate({ uri: `unix:${sock}` });
  await waitMigrationStatus(a.qmp, 'active');
  table.active = await a.qmp.queryStatus();
  await a.qmp.migrateCancel();
  assert.equal((await waitMigration(a.qmp)).status, 'cancelled');
  table.cancelled = await a.qmp.queryStatus();

  // failed: the destination hangs up mid-stream.
  await a.stop();
  a = (await source(t, kind, dir, 'b'))!;
  const sock2 = join(dir, 'hangup.sock');
  await fakeDestination(t, sock2, (s) => s.once('data', () => s.destroy()));
  await a.qmp.migrateSetParameters({ 'max-bandwidth': 1 << 20 });
  await a.qmp.migrate({ uri: `unix:${sock2}` });
  assert.equal((await waitMigration(a.qmp)).status, 'failed');
  table.failed = await a.qmp.queryStatus();

  // pre-switchover, then device: the fake destination reads everything and never answers on
  // the return path, so the source waits in device for the end of the migration.
  await a.stop();
  a = (await source(t, kind, dir, 'c'))!;
  const sock3 = join(dir, 'mute.sock');
  await fakeDestination(t, sock3, (s) => s.resume());
  await a.qmp.migrateSetCapabilities({
    capabilities: [
      { capability: 'pause-before-switchover', state: true },
      { capability: 'return-path', state: true },
      { capability: 'events', state: true },
    ],
  });
  const events = a.qmp.listen('MIGRATION', 'STOP', 'RESUME');
  await a.qmp.migrateSetParameters({ 'max-bandwidth': 0 });
  await a.qmp.migrate({ uri: `unix:${sock3}` });
  await waitMigrationStatus(a.qmp, 'pre-switchover');
  table['pre-switchover'] = await a.qmp.queryStatus();
  // An idle guest: no dirtying rate was measured, so the estimate is still downtime-limit.
  table['expected-downtime in pre-switchover'] = Number((await a.qmp.queryMigrate())['expected-downtime']);
  await a.qmp.migrateContinue({ state: 'pre-switchover' });
  await waitMigrationStatus(a.qmp, 'device');
  table.device = await a.qmp.queryStatus();
  await a.qmp.migrateCancel();
  table['cancel in device ends'] = (await waitMigration(a.qmp)).status ?? '';
  table['after cancel in device'] = await a.qmp.queryStatus();
  // The order of run-state and migration events around the switchover and the cancel.
  const order = events.drain().map((e) => (e.event === 'MIGRATION' ? e.data.status : e.event));
  table.events = order;

  // completed, into a real destination of the same kind.
  await a.stop();
  a = (await source(t, kind, dir, 'd'))!;
  const dst = (await startPeer(t, kind, dir, 'dst', join(dir, 'dst.img'), MiB, ['-incoming', 'defer']))!;
  await dst.qmp.migrateIncoming({ uri: `unix:${join(dir, 'real.sock')}` });
  await a.qmp.migrate({ uri: `unix:${join(dir, 'real.sock')}` });
  assert.equal((await waitMigration(a.qmp)).status, 'completed');
  table.completed = await a.qmp.queryStatus();
  return table;
}

/** Destination side: listening (setup), loading (active), completed, failed. */
async function destinationTable(t: TestContext, kind: PeerKind): Promise<Table | undefined> {
  const dir = tmp(t, kind);
  const table: Table = {};
  writeFileSync(join(dir, 'dst.img'), '');
  let dst = await startPeer(t, kind, dir, 'dst', join(dir, 'dst.img'), MiB, ['-incoming', 'defer']);
  if (!dst) return undefined;
  const src = (await source(t, kind, dir, 'src'))!;
  const path = join(dir, 'm.sock');
  await dst.qmp.migrateIncoming({ uri: `unix:${path}` });
  await waitMigrationStatus(dst.qmp, 'setup');
  table.setup = await dst.qmp.queryStatus();
  await src.qmp.migrateSetParameters({ 'max-bandwidth': 4 << 20 });
  await src.qmp.migrate({ uri: `unix:${path}` });
  await waitMigrationStatus(dst.qmp, 'active');
  table.active = await dst.qmp.queryStatus();
  await src.qmp.migrateSetParameters({ 'max-bandwidth': 0 });
  assert.equal((await waitMigration(dst.qmp)).status, 'completed');
  table.completed = await dst.qmp.queryStatus();

  // failed: the source dies mid-stream; exit-on-error off keeps the destination up to ask.
  await dst.stop();
  writeFileSync(join(dir, 'dst2.img'), '');
  dst = (await startPeer(t, kind, dir, 'dst2', join(dir, 'dst2.img'), MiB, ['-incoming', 'defer']))!;
  const src2 = (await source(t, kind, dir, 'src2'))!;
  const path2 = join(dir, 'm2.sock');
  await dst.qmp.migrateIncoming({ uri: `unix:${path2}`, 'exit-on-error': false });
  await src2.qmp.migrateSetParameters({ 'max-bandwidth': 1 << 20 });
  await src2.qmp.migrate({ uri: `unix:${path2}` });
  await waitMigrationStatus(dst.qmp, 'active');
  src2.child.kill('SIGKILL');
  assert.equal((await waitMigration(dst.qmp)).status, 'failed');
  table.failed = await dst.qmp.queryStatus();
  return table;
}

test('source run state in each migration state matches QEMU 10.0', async (t) => {
  // QEMU 10.0 itself sometimes ends a cancel in device `failed` (seen once in CI, on a loaded
  // machine): its reference is taken again then, up to three times.
  let theirs = await sourceTable(t, '10.0');
  for (let i = 0; i < 2 && theirs?.['cancel in device ends'] === 'failed'; i++)
    theirs = await sourceTable(t, '10.0');
  if (!theirs) return;
  assert.equal(theirs['cancel in device ends'], 'cancelled');
  const ours = await sourceTable(t, 'qmigrate');
  assert.deepEqual(ours, theirs);
  // The values themselves, as QEMU 10.0 gave them here.
  assert.deepEqual(theirs['pre-switchover'], { status: 'finish-migrate', running: false });
  assert.deepEqual(theirs.active, { status: 'running', running: true });
  assert.equal(theirs['expected-downtime in pre-switchover'], 300);
});

test('destination run state in each migration state matches QEMU 10.0', async (t) => {
  const theirs = await destinationTable(t, '10.0');
  if (!theirs) return;
  const ours = await destinationTable(t, 'qmigrate');
  assert.deepEqual(ours, theirs);
});
