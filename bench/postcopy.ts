/**
 * The postcopy rows of `npm run bench`: a guest that writes faster than the link carries
 * (`max-bandwidth` set), migrated by `runMigration` (what `qmigrate migrate` runs) once in
 * precopy with its downtime limit and a time limit, once with `--postcopy` (the switch after
 * the first pass, as virsh --postcopy-after-precopy). QEMU 10.0 runs the TCG vCPU guest of
 * test/fixtures/guest/bootblock.asm; qmigrate runs `-machine none` with its guest workload.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { PreflightError } from '../src/orchestrator/errors.js';
import { runMigration } from '../src/orchestrator/migrate.js';
import type { MigratePlan, MigrationReport } from '../src/orchestrator/types.js';
import { findQemu } from '../test/helpers/qemu.js';
import { Vm } from './harness.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const BOOTBLOCK = join(root, 'test/fixtures/guest/bootblock.asm');

/** The vCPU guest's RAM and the top of the pages it writes (test/helpers/vcpu-guest.ts). */
const GUEST_MIB = 128;
const TOP_MIB = 100;

export type PostcopyEngine = 'qemu' | 'qmigrate';
export type PostcopyMode = 'precopy' | 'postcopy';

export interface PostcopyCase {
  engine: PostcopyEngine;
  mode: PostcopyMode;
  /** max-bandwidth, bytes/s: below what the guest dirties. */
  bandwidth: number;
  /** downtime-limit, ms. */
  downtimeLimitMs: number;
  /** Seconds precopy gets before it is called not converging (and cancelled). */
  precopyTimeoutS: number;
  /** qmigrate's workload, pages per second. */
  workload: number;
}

/** One run: times in ms. `unavailable` says why the pair could not run at all. */
export interface PostcopySample {
  converged: boolean;
  total?: number;
  downtime?: number;
  /** The destination's postcopy-blocktime: ms its guest waited on missing pages. */
  blocktime?: number;
  requests?: number;
  postcopyBytes?: number;
  unavailable?: string;
}

/** The boot image of the vCPU guest, assembled into `dir` once; a reason when nasm is absent. */
function bootImage(dir: string): string | { missing: string } {
  const out = join(dir, 'postcopy-boot.img');
  if (existsSync(out)) return out;
  try {
    execFileSync(process.env.NASM ?? 'nasm', ['-f', 'bin', `-DTOP_MB=${TOP_MIB}`, '-o', out, BOOTBLOCK], {
      timeout: 30_000,
      stdio: 'ignore',
    });
    return out;
  } catch (e) {
    return { missing: `nasm cannot assemble the vCPU guest (${(e as Error).message.split('\n')[0]})` };
  }
}

/** A QEMU 10.0 vCPU guest under TCG with its QMP socket; the destination waits in -incoming defer. */
function startQemuGuest(dir: string, name: string, img: string, incoming: boolean): ChildProcess {
  const q = findQemu('10.0');
  if (!('path' in q)) throw new Error(`QEMU 10.0 not found: ${q.missing}`);
  const disk = join(dir, `${name}.boot.img`);
  execFileSync('cp', [img, disk]);
  return spawn(
    q.path,
    [
      ...q.args,
      ...['-machine', 'pc', '-accel', 'tcg', '-m', String(GUEST_MIB), '-display', 'none', '-nodefaults'],
      ...['-drive', `file=${disk},format=raw,if=ide`],
      ...['-qmp', `unix:${join(dir, `${name}.qmp`)},server=on,wait=off`],
      ...(incoming ? ['-incoming', 'defer'] : []),
    ],
    { env: q.env, stdio: ['ignore', 'ignore', 'inherit'] },
  );
}

/** Waits until a QMP socket exists (the VM is up), bounded. */
async function socketUp(path: string, proc: ChildProcess): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if (existsSync(path)) return;
    if (proc.exitCode !== null) throw new Error(`${path}: the VM exited (${proc.exitCode})`);
    await sleep(25);
  }
  throw new Error(`${path} did not appear in 10 s`);
}

/** The plan `qmigrate migrate` makes of the case's flags. */
function planOf(c: PostcopyCase, dir: string): MigratePlan {
  const postcopy = c.mode === 'postcopy';
  return {
    from: { kind: 'unix', path: join(dir, 'src.qmp') },
    to: { kind: 'unix', path: join(dir, 'dst.qmp') },
    channels: [
      { 'channel-type': 'main', addr: { transport: 'socket', type: 'inet', host: '127.0.0.1', port: '0' } },
    ],
    capabilities: postcopy ? { 'postcopy-ram': true, 'postcopy-blocktime': true } : {},
    parameters: { 'max-bandwidth': c.bandwidth, 'downtime-limit': c.downtimeLimitMs },
    onTimeout: 'cancel',
    ...(postcopy ? { postcopy: { afterPasses: 1 } } : { timeoutS: c.precopyTimeoutS }),
  };
}

function sampleOf(r: MigrationReport): PostcopySample {
  if (r.status !== 'completed') return { converged: false, total: r.totalTimeMs };
  return {
    converged: true,
    total: r.totalTimeMs,
    downtime: r.downtimeMs,
    blocktime: r.postcopy?.blocktimeMs,
    requests: r.postcopy?.requests,
    postcopyBytes: r.postcopy?.bytes,
  };
}

/**
 * One migration of the case: both VMs started in `dir`, migrated by runMigration, stopped.
 * A side that refuses the set-up (qmigrate before it does postcopy) makes an `unavailable`
 * sample with QEMU's or qmigrate's own words.
 * @throws {Error} when a VM does not start or the migration fails otherwise.
 */
export async function postcopyMigration(c: PostcopyCase, dir: string): Promise<PostcopySample> {
  const procs: ChildProcess[] = [];
  const vms: Vm[] = [];
  try {
    if (c.engine === 'qemu') {
      const img = bootImage(dir);
      if (typeof img !== 'string') return { converged: false, unavailable: img.missing };
      procs.push(startQemuGuest(dir, 'src', img, false), startQemuGuest(dir, 'dst', img, true));
      await socketUp(join(dir, 'src.qmp'), procs[0]!);
      await socketUp(join(dir, 'dst.qmp'), procs[1]!);
      // The boot sector is writing its pages within a second under TCG.
      await sleep(1000);
    } else {
      const o = { engine: 'qmigrate' as const, dir, mib: GUEST_MIB };
      // The destination runs the workload too once it has the guest: its accesses to pages
      // not there yet are what postcopy-blocktime measures.
      vms.push(
        new Vm({ ...o, name: 'src', workload: c.workload }),
        new Vm({ ...o, name: 'dst', incoming: true, workload: c.workload }),
      );
      // Vm's own client holds the monitor only until it is closed; the orchestrator connects anew.
      for (const vm of vms) await (await vm.qmp).close();
      await sleep(200);
    }
    const job = runMigration(planOf(c, dir), { pollMs: 100 });
    try {
      return sampleOf(await job.result);
    } catch (e) {
      if (e instanceof PreflightError) return { converged: false, unavailable: e.problems.join('; ') };
      throw e;
    }
  } finally {
    for (const p of procs) {
      if (p.exitCode === null && p.signalCode === null) {
        p.kill('SIGKILL');
        await new Promise((r) => p.once('exit', r));
      }
    }
    await Promise.all(vms.map((vm) => vm.stop()));
  }
}
