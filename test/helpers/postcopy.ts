/**
 * Postcopy tests' shared set-up: a QEMU 10.0 source and a qmigrate destination running the
 * guest workload, both with postcopy-ram, and the checks of the destination's RAM afterwards.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { checkGuestRam, WORKLOAD_START } from '../../src/machine/workload.js';
import type { MigrationStatus } from '../../src/qapi/types.js';
import type { EventListener } from '../../src/qmp/events.js';
import { PAGE, writeWorkloadImage } from './guest.js';
import { type Peer, qmigratePair, startPeer } from './peers.js';

export const MiB = 32;

/** Source and destination with postcopy-ram on, the destination's workload ready to run. */
export async function postcopyPair(
  t: TestContext,
  dir: string,
  dstCaps: string[] = [],
  dstArgs: string[] = [],
): Promise<{ src: Peer; dst: Peer; addr: { transport: 'socket'; type: 'unix'; path: string } } | undefined> {
  writeWorkloadImage(join(dir, 'src.img'), MiB << 20);
  writeFileSync(join(dir, 'dst.img'), Buffer.alloc(0));
  const src = await startPeer(t, '10.0', dir, 'src', join(dir, 'src.img'), MiB);
  if (!src) return undefined;
  const dst = (await startPeer(t, 'qmigrate', dir, 'dst', join(dir, 'dst.img'), MiB, [
    '-object',
    'qmigrate-workload,id=w0,rate=3000',
    '-incoming',
    'defer',
    ...dstArgs,
  ]))!;
  const on = (caps: string[]) => caps.map((c) => ({ capability: c as 'events', state: true }));
  await src.qmp.migrateSetCapabilities({ capabilities: on(['postcopy-ram', 'events']) });
  await dst.qmp.migrateSetCapabilities({ capabilities: on(['postcopy-ram', 'events', ...dstCaps]) });
  const addr = { transport: 'socket' as const, type: 'unix' as const, path: join(dir, 'm.sock') };
  await dst.qmp.migrateIncoming({ channels: [{ 'channel-type': 'main', addr }] });
  return { src, dst, addr };
}

/** The states MIGRATION events said so far (drained from `l`). */
export function statuses(l: EventListener<'MIGRATION'>): MigrationStatus[] {
  return l.drain().map((e) => (e.data as { status: MigrationStatus }).status);
}

/** RAM of the destination against the source image: equal but for the workload's bytes. */
export function assertPostcopyRam(dst: Buffer, srcImg: Buffer): void {
  assert.equal(dst.length, srcImg.length);
  // Below the workload's range nothing was written: byte for byte.
  assert.ok(dst.subarray(0, WORKLOAD_START).equals(srcImg.subarray(0, WORKLOAD_START)), 'first MiB equal');
  // Above it, every byte but each page's first (the workload's counter).
  let differ = 0;
  for (let p = WORKLOAD_START; p < dst.length; p += PAGE) {
    if (!dst.subarray(p + 1, p + PAGE).equals(srcImg.subarray(p + 1, p + PAGE))) differ++;
  }
  assert.equal(differ, 0, `${differ} pages differ from the source beyond their first byte`);
  assert.equal(checkGuestRam(dst), 0, 'check_guests_ram found bad pages on the destination');
}

/**
 * Two qmigrate VMs of MiB MiB, each running the workload (3000 pages/s), the destination
 * waiting with `-incoming defer` (peers.ts qmigratePair).
 */
export function writingPair(t: TestContext, prefix: string): Promise<{ dir: string; src: Peer; dst: Peer }> {
  return qmigratePair(t, prefix, { mib: MiB, rate: 3000, dstWorkload: true });
}
