/**
 * The processes of `npm run faults`: a `qmigrate vm` (from dist/) or a QEMU 10.0 with a RAM-only
 * guest on a memory-backend-file, two QMP monitors (one for the matrix, one for the clients the
 * rows drop mid-command), and what the matrix samples of them: exit, open fds, RSS, a RAM digest.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type { MigrationInfo } from '../src/qapi/types.js';
import { QmpClient } from '../src/qmp/client.js';
import { guestArgs } from '../test/helpers/guest.js';
import { findQemu } from '../test/helpers/qemu.js';

export type Kind = 'qmigrate' | 'qemu';

const bin = fileURLToPath(new URL('../bin/qmigrate.js', import.meta.url));

/** Bound on every single QMP command the matrix sends (ms). */
export const COMMAND_MS = 10_000;

/** Thrown when a bounded wait ran out: the rep is a `hang`. */
export class HangError extends Error {}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** Every process started and not yet reaped: killed when the matrix exits, however it exits. */
const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

export class Proc {
  readonly kind: Kind;
  readonly name: string;
  readonly child: ChildProcess;
  readonly qmpPath: string;
  /** The second monitor, for clients that go away mid-command. */
  readonly qmp2Path: string;
  readonly exited: Promise<ExitInfo>;
  /** Set before the matrix kills the process itself: its exit is then no crash. */
  killedByUs = false;
  /** A RESUME event came: the guest ran. */
  resumed = false;
  /** MIGRATION events with status `setup` seen (with the events capability): migrations started. */
  setups = 0;
  qmp!: QmpClient;
  #stderr = '';

  private constructor(kind: Kind, dir: string, name: string, args: string[]) {
    this.kind = kind;
    this.name = name;
    this.qmpPath = join(dir, `${name}.qmp`);
    this.qmp2Path = join(dir, `${name}-2.qmp`);
    const all = [
      ...args,
      ...['-display', 'none', '-nodefaults'],
      ...['-qmp', `unix:${this.qmpPath},server=on,wait=off`],
      ...['-qmp', `unix:${this.qmp2Path},server=on,wait=off`],
    ];
    if (kind === 'qmigrate') {
      this.child = spawn(process.execPath, [bin, 'vm', ...all], { stdio: ['ignore', 'ignore', 'pipe'] });
    } else {
      const q = findQemu('10.0');
      if (!('path' in q)) throw new Error(`QEMU 10.0 not found: ${q.missing}`);
      this.child = spawn(q.path, [...q.args, ...all], { env: q.env, stdio: ['ignore', 'ignore', 'pipe'] });
    }
    this.child.stderr?.on('data', (d) => {
      if (this.#stderr.length < 8192) this.#stderr += d;
    });
    const child = this.child;
    live.add(child);
    child.once('exit', () => live.delete(child));
    this.exited = new Promise((r) => child.once('exit', (code, signal) => r({ code, signal })));
  }

  /** Starts a VM whose RAM is `image` (`mib` MiB) and connects its first monitor. */
  static async start(
    kind: Kind,
    dir: string,
    name: string,
    image: string,
    mib: number,
    extra: string[] = [],
  ) {
    const p = new Proc(kind, dir, name, [...guestArgs(image, mib), ...extra]);
    const deadline = Date.now() + 20_000;
    for (;;) {
      try {
        p.qmp = await QmpClient.connect(p.qmpPath, {
          timeout: 2000,
          commandTimeout: COMMAND_MS,
          onEvent: (e) => {
            if (e.event === 'RESUME') p.resumed = true;
            if (e.event === 'MIGRATION' && (e.data as { status?: string }).status === 'setup') p.setups++;
          },
        });
        return p;
      } catch (e) {
        if (!p.alive() || Date.now() > deadline) {
          await p.kill();
          throw new Error(`${name} (${kind}) did not start: ${(e as Error).message} ${p.#stderr}`);
        }
        await sleep(20);
      }
    }
  }

  get pid(): number {
    return this.child.pid!;
  }

  get stderr(): string {
    return this.#stderr;
  }

  alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Open file descriptors (/proc/PID/fd). */
  fds(): number {
    return readdirSync(`/proc/${this.pid}/fd`).length;
  }

  /** Resident set size in bytes (VmRSS). */
  rss(): number {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${this.pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  }

  /** SHA-256 of the guest's RAM as the VM sees it (pmemsave into `dir`). */
  async ramDigest(dir: string, mib: number): Promise<string> {
    const f = join(dir, `${this.name}.pmem`);
    await this.qmp.pmemsave({ val: 0, size: mib << 20, filename: f });
    const h = createHash('sha256').update(readFileSync(f)).digest('hex');
    rmSync(f, { force: true });
    return h;
  }

  /** SIGKILL (marked as ours) and wait for the exit. */
  async kill(): Promise<void> {
    this.killedByUs = true;
    if (this.alive()) this.child.kill('SIGKILL');
    await this.exited;
    this.child.stderr?.destroy();
    await this.qmp?.close().catch(() => {});
  }
}

/** Polls `get` until `done` says so; a HangError after `ms`. */
export async function until<T>(what: string, ms: number, get: () => Promise<T>, done: (v: T) => boolean) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await get().catch((e: Error) => {
      throw new Error(`${what}: ${e.message}`, { cause: e });
    });
    if (done(v)) return v;
    if (Date.now() > deadline) throw new HangError(`${what} after ${ms} ms`);
    await sleep(10);
  }
}

const FINAL = new Set(['completed', 'failed', 'cancelled']);

/** query-migrate until the status is final (or the HangError). */
export function finalMigration(p: Proc, ms: number): Promise<MigrationInfo> {
  return until(
    `${p.name} (${p.kind}): migration not final`,
    ms,
    () => p.qmp.queryMigrate(),
    (i) => FINAL.has(i.status ?? ''),
  );
}
