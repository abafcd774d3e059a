/**
 * A real vCPU guest for the QEMU migration tests: test/fixtures/guest/bootblock.asm, assembled
 * with nasm once per test process, booted by QEMU (10.0 or 7.2) under TCG on `-machine pc`. It
 * keeps incrementing one byte in every page from 1 MiB to TOP_MIB and prints 'B' on the serial
 * port after each pass; checkGuestCounters holds its RAM to the invariant QEMU's own migration
 * test checks (tests/qtest/migration/framework.c, check_guests_ram).
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import type { TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type { MigrationInfo } from '../../src/qapi/types.js';
import type { QmpClient } from '../../src/qmp/client.js';
import { type Peer, qemuPeer, waitRunstate } from './peers.js';
import { type QemuVersion, requireQemu, skipLoudly, startQemu } from './qemu.js';
import { runQmigrate } from './qmigrate.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const SOURCE = join(root, 'test/fixtures/guest/bootblock.asm');

export const PAGE = 4096;
/** Guest RAM (`-m`), and the first and the end address of the pages the guest writes. */
export const GUEST_MIB = 128;
export const START_MIB = 1;
export const TOP_MIB = 100;

let cached: string | undefined;

/**
 * Returns nasm's path, or skips the test loudly when it is absent (`npm run setup:packages`
 * installs it); with QMIGRATE_REQUIRE_QEMU=1, as CI sets it, an absent nasm fails the test.
 */
export function requireNasm(t: TestContext): string | undefined {
  const nasm = process.env.NASM ?? 'nasm';
  try {
    execFileSync(nasm, ['-v'], { stdio: 'ignore', timeout: 10_000 });
    return nasm;
  } catch (e) {
    skipLoudly(
      t,
      `nasm not runnable (${(e as Error).message.split('\n')[0]}); run \`npm run setup:packages\``,
    );
    return undefined;
  }
}

/** The 512-byte boot image, assembled on first use into a temp dir removed at process exit. */
export function bootImage(t: TestContext): string | undefined {
  if (cached && existsSync(cached)) return cached;
  const nasm = requireNasm(t);
  if (!nasm) return undefined;
  const dir = mkdtempSync(join(tmpdir(), 'qmigrate-boot-'));
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  const out = join(dir, 'boot.img');
  execFileSync(nasm, ['-f', 'bin', `-DTOP_MB=${TOP_MIB}`, '-o', out, SOURCE], { timeout: 30_000 });
  cached = out;
  return out;
}

export interface VcpuGuest extends Peer {
  /** The file the guest's serial port writes to. */
  serialPath: string;
  /** A second QMP monitor, for `qmigrate migrate` (the first is the test's). */
  cliQmp: string;
  /** What the guest printed on its serial port so far. */
  serial(): string;
}

/**
 * Starts QEMU `version` running the boot-sector guest (`-machine MACHINE -accel tcg -m 128`),
 * its serial port in `DIR/NAME.serial`, its disk a private copy of the boot image (two
 * QEMUs on one host would otherwise contend for the image's lock). Undefined when the test
 * skipped (QEMU or nasm absent). Stopped when the test ends.
 */
export async function startVcpuGuest(
  t: TestContext,
  version: QemuVersion,
  dir: string,
  name: string,
  opts: { machine?: string; extra?: string[]; mib?: number } = {},
): Promise<VcpuGuest | undefined> {
  const bin = requireQemu(t, version);
  const img = bootImage(t);
  if (!bin || !img) return undefined;
  const disk = join(dir, `${name}.boot.img`);
  copyFileSync(img, disk);
  const serialPath = join(dir, `${name}.serial`);
  const machine = [
    ...['-machine', opts.machine ?? 'pc', '-accel', 'tcg', '-m', String(opts.mib ?? GUEST_MIB)],
    ...['-drive', `file=${disk},format=raw,if=ide`],
    ...['-chardev', `file,id=serial0,path=${serialPath}`, '-serial', 'chardev:serial0'],
  ];
  const cliQmp = join(dir, `${name}.cli.qmp`);
  machine.push('-qmp', `unix:${cliQmp},server=on,wait=off`);
  const peer = await qemuPeer(t, version, await startQemu(bin, opts.extra ?? [], machine));
  const serial = () => (existsSync(serialPath) ? readFileSync(serialPath, 'latin1') : '');
  return { ...peer, serialPath, serial, cliQmp };
}

/** Waits until the guest's serial output is longer than `than` characters; returns it. */
export async function waitSerial(g: VcpuGuest, than: number, ms = 20_000): Promise<string> {
  const deadline = Date.now() + ms;
  for (;;) {
    const s = g.serial();
    if (s.length > than) return s;
    if (Date.now() > deadline) throw new Error(`serial output stayed at ${s.length} characters for ${ms} ms`);
    await sleep(20);
  }
}

export interface GuestCounters {
  /** The counter of the last page (passes completed, mod 256). */
  low: number;
  /** Index (from START_MIB) of the first page still at `low`, when the loop was mid-pass. */
  boundary?: number;
}

/**
 * Checks guest RAM (`ram` from physical address 0) against the guest's invariant: the first
 * byte of the pages from START_MIB to TOP_MIB is one value, or one value higher up to a single
 * boundary where the loop was (mod 256). Reads one byte per page.
 * @throws {Error} naming the first page that breaks it.
 */
export function checkGuestCounters(ram: Buffer): GuestCounters {
  const first = (START_MIB << 20) / PAGE;
  const end = (TOP_MIB << 20) / PAGE;
  if (ram.length < end * PAGE) throw new Error(`RAM dump of ${ram.length} bytes ends before ${TOP_MIB} MiB`);
  let boundary: number | undefined;
  for (let p = first + 1; p < end; p++) {
    const prev = ram.readUInt8((p - 1) * PAGE);
    const cur = ram.readUInt8(p * PAGE);
    if (cur === prev) continue;
    const where = `page at 0x${(p * PAGE).toString(16)} holds ${cur}, the page before ${prev}`;
    if (cur !== ((prev + 255) & 0xff)) throw new Error(`guest RAM inconsistent: ${where}`);
    if (boundary !== undefined) {
      throw new Error(
        `guest RAM inconsistent: ${where}, a second boundary after 0x${((first + boundary) * PAGE).toString(16)}`,
      );
    }
    boundary = p - first;
  }
  return { low: ram.readUInt8((end - 1) * PAGE), boundary };
}

/** Stops the guest and dumps its RAM up to TOP_MIB with pmemsave into `file`; returns it. */
export async function dumpGuestRam(qmp: QmpClient, file: string): Promise<Buffer> {
  await qmp.stop();
  await qmp.pmemsave({ val: 0, size: TOP_MIB << 20, filename: file });
  return readFileSync(file);
}

/**
 * The migration step of the vCPU tests, as a user runs it: `qmigrate migrate` between the
 * guests' second monitors, the destination listening on 127.0.0.1 port 0 (read back), the
 * uri form where the source has no `channels` (QEMU 7.2). A generous downtime limit lets a
 * guest that dirties all its pages in every pass converge on a loaded CI machine. The
 * command must exit 0 with a `completed` report and the destination running; returns the
 * source's final query-migrate.
 */
export async function migrateGuest(src: VcpuGuest, dst: VcpuGuest): Promise<MigrationInfo> {
  const args = ['migrate', '--from', src.cliQmp, '--to', dst.cliQmp, '--tcp', '127.0.0.1:0'];
  const r = await runQmigrate([...args, '--downtime-limit', '2000', '--json']);
  const lines = r.stdout.trim().split('\n');
  const report = JSON.parse(lines[lines.length - 1] ?? '{}') as { type?: string; status?: string };
  if (r.code !== 0 || report.type !== 'report' || report.status !== 'completed') {
    throw new Error(`qmigrate migrate exited ${r.code}: ${r.stderr.trim()} ${lines.at(-1)}`);
  }
  await waitRunstate(dst.qmp, 'running');
  return src.qmp.queryMigrate();
}
