// A hostile source that opens the return path, floods the destination with PINGs and never
// reads the PONGs: the destination stops reading once its replies back up, so its memory
// stays bounded and its monitor keeps answering; when the source goes, the load fails.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startPeer, waitMigration } from '../helpers/peers.js';

/** Peak resident memory of a process, in MiB (Linux). */
function peakRssMiB(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  assert.ok(m, 'no VmHWM in /proc/PID/status');
  return Number(m[1]) / 1024;
}

/** Stream header: magic, version, configuration record for machine 'none'. */
const HEADER = Buffer.from('5145564d0000000307000000046e6f6e65', 'hex');
const OPEN_RETURN_PATH = Buffer.from([0x08, 0x00, 0x01, 0x00, 0x00]);
/** 1 MiB-ish of MIG_CMD_PING commands (9 bytes each). */
const PINGS = Buffer.alloc(9 * 116_508);
for (let at = 0; at < PINGS.length; at += 9) PINGS.set([0x08, 0x00, 0x02, 0x00, 0x04, 0, 0, 0, 1], at);

/**
 * Bound on the destination's peak RSS growth while flooded: its stream reader buffers up to
 * 16 MiB before it stops reading, the return path queues up to 256 KiB; the rest is slack
 * (about 45 MiB is typical). Without the bound it grows by 2 GiB here.
 */
const GROWTH_MAX_MIB = 96;
/** What the flood offers: 7.5 million PINGs; their PONGs, all queued, took 2 GiB. */
const FLOOD_MIB = 64;

test('a ping flood whose replies are never read leaves the destination bounded and answering', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'qmigrate-rp-flood-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'dst.img'), '');
  const dst = (await startPeer(t, 'qmigrate', dir, 'dst', join(dir, 'dst.img'), 16, ['-incoming', 'defer']))!;
  const path = join(dir, 'm.sock');
  await dst.qmp.migrateIncoming({ uri: `unix:${path}`, 'exit-on-error': false });
  await dst.qmp.queryStatus();
  const before = peakRssMiB(dst.child.pid!);

  const s = await new Promise<Socket>((res, rej) => {
    const c = connect(path, () => res(c));
    c.once('error', rej);
  });
  s.on('error', () => {});
  t.after(() => s.destroy());
  // The source never reads: its receive buffer fills and the destination's writes queue.
  s.pause();
  s.write(Buffer.concat([HEADER, OPEN_RETURN_PATH]));
  let offered = 0;
  let stalled = false;
  const deadline = Date.now() + 20_000;
  while (offered < FLOOD_MIB << 20 && Date.now() < deadline) {
    if (!s.write(PINGS)) {
      // Back-pressure reached the source: the destination stopped reading.
      const drained = await Promise.race([
        new Promise<boolean>((r) => s.once('drain', () => r(true))),
        sleep(1500).then(() => false),
      ]);
      if (!drained) {
        stalled = true;
        break;
      }
    }
    offered += PINGS.length;
  }
  // Its monitor answers while it is flooded.
  const started = Date.now();
  assert.equal((await dst.qmp.queryMigrate()).status, 'active');
  assert.ok(Date.now() - started < 2000, 'the monitor was slow to answer');
  const growth = peakRssMiB(dst.child.pid!) - before;
  assert.ok(stalled, `the destination read all ${offered >> 20} MiB of pings without stopping`);
  assert.ok(growth < GROWTH_MAX_MIB, `peak RSS grew by ${growth.toFixed(0)} MiB`);
  // The source goes away: the load fails, and the guest does not run.
  s.destroy();
  const info = await waitMigration(dst.qmp, 20_000);
  assert.equal(info.status, 'failed');
  assert.notEqual((await dst.qmp.queryStatus()).status, 'running');
});
