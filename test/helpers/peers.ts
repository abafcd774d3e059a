/**
 * Migration peers for tests: a real QEMU (10.0 or 7.2) or a `qmigrate vm`, both started with
 * the same RAM-only guest on a memory-backend-file, both driven through QmpClient, so every
 * test can pair any source with any destination.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { MigrationInfo, MigrationStatus } from '../../src/qapi/types.js';
import { QmpClient } from '../../src/qmp/client.js';
import { atExit } from './at-exit.js';
import { guestArgs, writeWorkloadImage } from './guest.js';
import { type QemuVersion, type RunningQemu, requireQemu, startQemu } from './qemu.js';
import { spawnQmigrate } from './qmigrate.js';

export type PeerKind = 'qmigrate' | QemuVersion;

export interface Peer {
  kind: PeerKind;
  qmp: QmpClient;
  child: ChildProcess;
  /** Resolves with the exit code when the process ends. */
  exited: Promise<number | null>;
  stop(): Promise<void>;
}

export async function connectRetry(path: string, ms = 20_000): Promise<QmpClient> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      return await QmpClient.connect(path, { timeout: 1000 });
    } catch (e) {
      if (Date.now() > deadline) throw e;
      await sleep(30);
    }
  }
}

/**
 * Starts a peer whose RAM is the file `image` (`sizeMiB`), with extra options. Returns
 * undefined (the test skipped) when a QEMU peer is not installed. `opts.netns`: run it inside
 * that network namespace (test/helpers/netns.ts); its QMP socket is still a path in `dir`.
 */
export async function startPeer(
  t: TestContext,
  kind: PeerKind,
  dir: string,
  name: string,
  image: string,
  sizeMiB: number,
  extra: string[] = [],
  opts: { netns?: string } = {},
): Promise<Peer | undefined> {
  if (kind === 'qmigrate') {
    const sock = join(dir, `${name}.qmp`);
    const child = spawnQmigrate(
      [
        'vm',
        ...guestArgs(image, sizeMiB),
        '-display',
        'none',
        '-nodefaults',
        '-qmp',
        `unix:${sock},server=on,wait=off`,
        ...extra,
      ],
      { stdio: 'inherit', netns: opts.netns },
    );
    // A signal that ends the test process must not leave the VM running.
    const unhook = atExit(() => child.kill('SIGKILL'));
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    void exited.then(unhook);
    const qmp = await connectRetry(sock);
    const stop = async () => {
      await qmp.close().catch(() => {});
      if (child.exitCode === null) child.kill('SIGKILL');
      await exited;
    };
    t.after(stop);
    return { kind, qmp, child, exited, stop };
  }
  const bin = requireQemu(t, kind);
  if (!bin) return undefined;
  return qemuPeer(t, kind, await startQemu(bin, extra, guestArgs(image, sizeMiB), opts.netns));
}

/**
 * Two qmigrate VMs of `mib` MiB in a temp dir removed after the test: the source running the
 * guest workload at `rate` pages/s on the workload image, the destination on an empty file
 * with `-incoming defer` (and the workload too when `dstWorkload`, ready for postcopy);
 * capabilities, parameters and addresses are the caller's.
 */
export async function qmigratePair(
  t: TestContext,
  prefix: string,
  { mib, rate, dstWorkload = false }: { mib: number; rate: number; dstWorkload?: boolean },
): Promise<{ dir: string; src: Peer; dst: Peer }> {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeWorkloadImage(join(dir, 'src.img'), mib << 20);
  writeFileSync(join(dir, 'dst.img'), Buffer.alloc(0));
  const workload = ['-object', `qmigrate-workload,id=w0,rate=${rate}`];
  const src = (await startPeer(t, 'qmigrate', dir, 'src', join(dir, 'src.img'), mib, workload))!;
  const dst = (await startPeer(t, 'qmigrate', dir, 'dst', join(dir, 'dst.img'), mib, [
    ...(dstWorkload ? workload : []),
    '-incoming',
    'defer',
  ]))!;
  return { dir, src, dst };
}

/** A started QEMU as a Peer: its own QMP connection (a fresh one), stopped when the test ends. */
export async function qemuPeer(t: TestContext, kind: QemuVersion, q: RunningQemu): Promise<Peer> {
  q.qmp.close();
  const qmp = await connectRetry(join(q.dir, 'qmp.sock'));
  const exited = new Promise<number | null>((r) => {
    if (q.child.exitCode !== null) r(q.child.exitCode);
    else q.child.once('exit', (code) => r(code));
  });
  const stop = async () => {
    await qmp.close().catch(() => {});
    await q.stop();
  };
  t.after(stop);
  return { kind, qmp, child: q.child, exited, stop };
}

/** Polls query-migrate until the status is final. */
export async function waitMigration(qmp: QmpClient, ms = 120_000): Promise<MigrationInfo> {
  const deadline = Date.now() + ms;
  for (;;) {
    const info = await qmp.queryMigrate();
    if (info.status === 'completed' || info.status === 'failed' || info.status === 'cancelled') return info;
    if (Date.now() > deadline) throw new Error(`migration still ${info.status} after ${ms} ms`);
    await sleep(20);
  }
}

/** Polls query-migrate until the status is `want` (an intermediate state, say). */
export async function waitMigrationStatus(qmp: QmpClient, want: MigrationStatus, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    const { status } = await qmp.queryMigrate();
    if (status === want) return;
    if (Date.now() > deadline) throw new Error(`migration is ${status}, never ${want}`);
    await sleep(10);
  }
}

export async function waitRunstate(qmp: QmpClient, state: string, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    const s = await qmp.queryStatus();
    if (s.status === state) return;
    if (Date.now() > deadline) throw new Error(`runstate is ${s.status}, not ${state}`);
    await sleep(20);
  }
}

/**
 * Asserts that the source's RAM is still its image and that the destination's equals it byte
 * for byte, both read with pmemsave (as QEMU sees them) into `dir`.
 */
export async function assertRamMigrated(src: Peer, dst: Peer, dir: string, sizeMiB: number, srcImg: string) {
  const a = join(dir, 'src.dump');
  const b = join(dir, 'dst.dump');
  await src.qmp.pmemsave({ val: 0, size: sizeMiB << 20, filename: a });
  await dst.qmp.pmemsave({ val: 0, size: sizeMiB << 20, filename: b });
  const srcRam = readFileSync(a);
  assert.ok(srcRam.equals(readFileSync(srcImg)), 'source RAM is its image');
  assert.ok(srcRam.equals(readFileSync(b)), 'destination RAM equals the source RAM byte for byte');
}

/**
 * A bare `qmigrate vm -machine none -m 16M` (no backing file) with its QMP on a unix socket in a
 * new temp dir, its stderr kept, and everything gone after the test: for tests that need a VM
 * process and its stderr, not a guest image.
 */
export async function startBareVm(
  t: TestContext,
  extra: string[] = [],
  ram: string[] = ['-machine', 'none', '-m', '16M'],
): Promise<{ dir: string; child: ChildProcess; qmp: QmpClient; stderr: () => string }> {
  const dir = mkdtempSync(join(tmpdir(), 'qmigrate-vm-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const sock = join(dir, 'q.sock');
  const child = spawnQmigrate(['vm', ...ram, '-qmp', `unix:${sock},server=on,wait=off`, ...extra]);
  t.after(() => child.kill('SIGKILL'));
  let stderr = '';
  child.stderr?.on('data', (d) => {
    stderr += d;
  });
  const qmp = await connectRetry(sock);
  t.after(() => qmp.close());
  return { dir, child, qmp, stderr: () => stderr };
}
