// The link between two "hosts" (network namespaces joined by a veth, test/helpers/netns.ts)
// goes down mid-migration (`ip link set veth down` in one namespace; max-bandwidth keeps the
// stream mid-way). QEMU 10.0 alone stays `active`, nothing more transferred, until TCP gives
// up (tcp_retries2: some 15 minutes by default); qmigrate does the same, and no worse:
// - migrate_cancel, as a user would, ends it `cancelled` at once, the source's guest running
//   with its RAM intact, the destination never running it; with the link back up a new
//   migration to a fresh destination completes with RAM equal; with multifd 4 too (a qmigrate
//   source: QEMU 10.0's stays `cancelling` with its multifd channels stuck);
// - with tcp_retries2=3 in the source's namespace TCP gives up within seconds and the
//   migration ends `failed` by itself, error-desc as QEMU 10.0's (observed: "Unable to write
//   to socket: No route to host" with the destination's side down, mostly; "Connection timed
//   out" with the source's), the guest running.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { MigrationInfo } from '../../src/qapi/types.js';
import {
  assertRamMigrated,
  type Peer,
  type PeerKind,
  waitMigration,
  waitRunstate,
} from '../helpers/peers.js';
import { freshDestination, migrateAcross, type OnTwoHosts, onTwoHosts } from './two-hosts-peers.js';

const MiB = 64;
/** Slow enough that the stream (some 43 MiB of non-zero pages) is mid-way when the link goes. */
const BANDWIDTH = 8 << 20;

/** Starts a throttled migration and takes `side`'s link down once it has moved some bytes. */
async function cutMidway(on: OnTwoHosts, side: 'src' | 'dst'): Promise<number> {
  await on.src.qmp.migrateSetParameters({ 'max-bandwidth': BANDWIDTH });
  await migrateAcross(on.net, on.src, on.dst);
  await sleep(1500);
  const info = await on.src.qmp.queryMigrate();
  assert.equal(info.status, 'active', 'the stream is mid-way when the link goes');
  on.net.linkDown(on.net[side]);
  return Number(info.ram?.transferred);
}

/** The source's guest runs, and its RAM is still its image. */
async function assertSourceIntact(on: OnTwoHosts): Promise<void> {
  assert.equal((await on.src.qmp.queryStatus()).status, 'running');
  const dump = join(on.dir, 'src-after.dump');
  await on.src.qmp.pmemsave({ val: 0, size: MiB << 20, filename: dump });
  assert.ok(readFileSync(dump).equals(readFileSync(on.srcImg)), "the source's RAM is intact");
}

/**
 * The destination has not run, nor loaded to the end, the partial stream. Once the link is
 * back, the source's close reaches it and its incoming migration fails: with exit-on-error (the
 * default) the process then exits with status 1, as QEMU's does.
 */
async function assertNeverRan(dst: Peer): Promise<void> {
  let state: [string, string];
  try {
    state = [(await dst.qmp.queryStatus()).status, String((await dst.qmp.queryMigrate()).status)];
  } catch (e) {
    const code = await Promise.race([dst.exited, sleep(5000).then(() => 'still running')]);
    assert.equal(code, 1, `the destination's monitor went (${(e as Error).message}): it exited failing`);
    return;
  }
  assert.notEqual(state[0], 'running', 'the destination never runs the guest');
  assert.notEqual(state[1], 'completed');
}

/** Multifd with `channels` channels on each peer (both ends must agree). */
async function setMultifd(peers: Peer[], channels: number): Promise<void> {
  for (const p of peers) {
    await p.qmp.migrateSetCapabilities({ capabilities: [{ capability: 'multifd', state: true }] });
    await p.qmp.migrateSetParameters({ 'multifd-channels': channels });
  }
}

async function cancelThenRetry(t: TestContext, from: PeerKind, to: PeerKind, multifd = 0) {
  const on = await onTwoHosts(t, from, to, MiB);
  if (!on) return;
  const { net, src, dst } = on;
  if (multifd) await setMultifd([src, dst], multifd);
  const before = await cutMidway(on, 'src');
  // QEMU 10.0's behaviour, and qmigrate's: still active, nothing more moves.
  await sleep(2000);
  const stuck = await src.qmp.queryMigrate();
  assert.equal(stuck.status, 'active', JSON.stringify(stuck));
  const frozen = Number(stuck.ram?.transferred);
  assert.ok(frozen - before < BANDWIDTH, `at most what the socket buffers took (${frozen - before} bytes)`);
  const t0 = Date.now();
  await src.qmp.migrateCancel();
  const end: MigrationInfo = await waitMigration(src.qmp, 10_000);
  assert.equal(end.status, 'cancelled', JSON.stringify(end));
  assert.ok(Date.now() - t0 < 5000, `cancelled within 5 s (${Date.now() - t0} ms)`);
  await assertSourceIntact(on);
  await assertNeverRan(dst);

  net.linkUp(net.src);
  await sleep(500);
  await assertNeverRan(dst);
  await dst.stop();
  const dst2 = await freshDestination(t, net, to, on.dir, 'dst2', MiB);
  if (!dst2) return;
  if (multifd) await setMultifd([dst2], multifd);
  await src.qmp.migrateSetParameters({ 'max-bandwidth': 0 });
  await migrateAcross(net, src, dst2);
  const done = await waitMigration(src.qmp, 30_000);
  assert.equal(done.status, 'completed', JSON.stringify(done));
  await waitRunstate(dst2.qmp, 'running');
  await assertRamMigrated(src, dst2, on.dir, MiB, on.srcImg);
}

const PAIRS: [PeerKind, PeerKind][] = [
  ['qmigrate', 'qmigrate'],
  ['qmigrate', '10.0'],
  ['10.0', 'qmigrate'],
];
for (const [from, to] of PAIRS) {
  test(`two hosts, link down mid-way: ${from} -> ${to} is cancelled, then migrates once the link is back`, (t) =>
    cancelThenRetry(t, from, to));
}

// Multifd 4: the cut leaves five connections stuck. A qmigrate source still cancels at once;
// QEMU 10.0's stays 'cancelling' (seen for over 15 s), so it is not a source here.
for (const to of ['qmigrate', '10.0'] as const) {
  test(`two hosts, multifd 4, link down mid-way: qmigrate -> ${to} is cancelled, then migrates once the link is back`, (t) =>
    cancelThenRetry(t, 'qmigrate', to, 4));
}

for (const from of ['10.0', 'qmigrate'] as const) {
  test(`two hosts, link down mid-way, tcp_retries2=3: a ${from} source fails by itself as QEMU 10.0 does`, async (t) => {
    const on = await onTwoHosts(t, from, 'qmigrate', MiB);
    if (!on) return;
    on.net.exec(on.net.src, ['sysctl', '-qw', 'net.ipv4.tcp_retries2=3']);
    await cutMidway(on, 'dst');
    const end = await waitMigration(on.src.qmp, 20_000);
    assert.equal(end.status, 'failed', JSON.stringify(end));
    // Which errno TCP ends with depends on whether the neighbour entry of the destination
    // failed before the retransmissions ran out (No route to host) or not (timed out).
    assert.match(
      String(end['error-desc']),
      /^Unable to write to socket: (No route to host|Connection timed out)$/,
      JSON.stringify(end),
    );
    await assertSourceIntact(on);
    await assertNeverRan(on.dst);
  });
}
