// Live migration of a guest with a real vCPU: QEMU under TCG runs the boot-sector guest of
// test/fixtures/guest/bootblock.asm, which writes its memory and its serial port all the time.
// After QEMU 10.0 -> 10.0 and QEMU 7.2 -> 10.0 the guest goes on running on the destination
// (new serial output appears there) and its memory keeps the guest's invariant. The migration
// is `qmigrate migrate` between the guests' second monitors, as a user runs it.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { QemuVersion } from '../helpers/qemu.js';
import { runQmigrate } from '../helpers/qmigrate.js';
import {
  checkGuestCounters,
  dumpGuestRam,
  migrateGuest,
  PAGE,
  START_MIB,
  startVcpuGuest,
  TOP_MIB,
  waitSerial,
} from '../helpers/vcpu-guest.js';

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'qmigrate-vcpu-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Synthetic RAM: every counter `n`, the pages from `boundary` on at `n - 1`. */
function counters(n: number, boundary?: number): Buffer {
  const ram = Buffer.alloc(TOP_MIB << 20);
  const first = (START_MIB << 20) / PAGE;
  for (let p = first; p < (TOP_MIB << 20) / PAGE; p++) {
    ram[p * PAGE] = boundary !== undefined && p - first >= boundary ? (n + 255) & 0xff : n;
  }
  return ram;
}

test('checkGuestCounters accepts one value, one boundary and the wrap at 256; refuses the rest', () => {
  assert.deepEqual(checkGuestCounters(counters(7)), { low: 7, boundary: undefined });
  assert.deepEqual(checkGuestCounters(counters(8, 1000)), { low: 7, boundary: 1000 });
  assert.deepEqual(checkGuestCounters(counters(0, 5)), { low: 255, boundary: 5 });
  const two = counters(8, 1000);
  two[(START_MIB << 20) + 10 * PAGE] = 7;
  assert.throws(() => checkGuestCounters(two), /inconsistent: page at 0x10b000 holds 8, the page before 7/);
  const skipped = counters(8);
  skipped[(START_MIB << 20) + 20 * PAGE] = 6;
  assert.throws(() => checkGuestCounters(skipped), /inconsistent/);
  assert.throws(() => checkGuestCounters(Buffer.alloc(PAGE)), /ends before 100 MiB/);
});

test('the vCPU guest runs under QEMU 10.0; its RAM passes the check, and fails it once a page is corrupted', async (t) => {
  const dir = tempDir(t);
  const g = await startVcpuGuest(t, '10.0', dir, 'solo');
  if (!g) return;
  assert.match(await waitSerial(g, 3), /^B{4,}$/, 'the guest prints B after each pass');
  const ram = await dumpGuestRam(g.qmp, join(dir, 'solo.dump'));
  const { low } = checkGuestCounters(ram);
  assert.ok(ram.readUInt8(START_MIB << 20) !== 0 || low !== 0, 'the guest has written its pages');
  // One page of the dump a pass ahead (or behind) of both neighbours breaks the invariant.
  const p = (START_MIB << 20) + 1234 * PAGE;
  ram[p] = (ram.readUInt8(p) + 2) & 0xff;
  assert.throws(() => checkGuestCounters(ram), /guest RAM inconsistent: page at 0x/);
});

async function liveMigration(t: TestContext, from: QemuVersion, machine: string) {
  const dir = tempDir(t);
  const src = await startVcpuGuest(t, from, dir, 'src', { machine });
  const dst = await startVcpuGuest(t, '10.0', dir, 'dst', { machine, extra: ['-incoming', 'defer'] });
  if (!src || !dst) return;
  await waitSerial(src, 3);
  const info = await migrateGuest(src, dst);
  // Before the migration the guest's non-zero pages are its counters plus BIOS and ROM pages
  // (well under 1024). More pages sent in full than that means pages went twice: the vCPU
  // wrote them while the migration ran.
  const written = ((TOP_MIB - START_MIB) << 20) / PAGE;
  assert.ok(
    Number(info.ram?.normal) > written + 1024,
    `pages sent in full: ${info.ram?.normal}, counters ${written}`,
  );
  assert.equal((await src.qmp.queryStatus()).status, 'postmigrate');
  // The source's guest stopped; the destination's goes on where it was and prints anew.
  const srcOut = src.serial().length;
  const dstOut = (await waitSerial(dst, 3)).length;
  await sleep(200);
  assert.equal(src.serial().length, srcOut, 'the source printed nothing after the switchover');
  assert.ok((await waitSerial(dst, dstOut)).length > dstOut, 'the destination keeps printing');
  checkGuestCounters(await dumpGuestRam(dst.qmp, join(dir, 'dst.dump')));
}

test('qmigrate migrate, QEMU 10.0 -> QEMU 10.0 over tcp: the live vCPU guest keeps running, its memory consistent', (t) =>
  liveMigration(t, '10.0', 'pc'));

test('qmigrate migrate, QEMU 7.2 -> QEMU 10.0 with a uri: the live vCPU guest keeps running, its memory consistent', (t) =>
  liveMigration(t, '7.2', 'pc-i440fx-7.2'));

test('qmigrate migrate, QEMU 7.2 -> QEMU 10.0 with RAM of another size: the preflight refuses (exit 3), both guests as they were', async (t) => {
  const dir = tempDir(t);
  const src = await startVcpuGuest(t, '7.2', dir, 'src', { machine: 'pc-i440fx-7.2' });
  const dst = await startVcpuGuest(t, '10.0', dir, 'dst', {
    machine: 'pc-i440fx-7.2',
    mib: 256,
    extra: ['-incoming', 'defer'],
  });
  if (!src || !dst) return;
  const r = await runQmigrate(['migrate', '--from', src.cliQmp, '--to', dst.cliQmp, '--tcp', '127.0.0.1:0']);
  assert.equal(r.code, 3, r.stderr);
  assert.match(r.stderr, /destination RAM block 'pc\.ram' is 256 MiB, source's is 128 MiB/);
  assert.equal(r.stderr.includes('    at '), false, 'no stack trace');
  assert.equal((await src.qmp.queryStatus()).status, 'running');
  assert.equal((await dst.qmp.queryStatus()).status, 'inmigrate');
  assert.deepEqual(await src.qmp.queryMigrate(), {}, 'nothing was sent');
});
