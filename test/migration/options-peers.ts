/**
 * Peers for the option tests: a `qmigrate vm` or a real QEMU 10.0 with the same command
 * line, driven through the independent MiniQmp so that replies (and errors) compare as raw
 * QMP, with the process's stderr and exit code kept, as a destination's TLS failure shows
 * only there.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { guestArgs, writeMixedImage } from '../helpers/guest.js';
import { requireQemu } from '../helpers/qemu.js';
import { spawnQmigrate } from '../helpers/qmigrate.js';
import { MiniQmp, type QmpReply } from '../helpers/qmp-mini.js';

export type Kind = 'qmigrate' | '10.0';
export const KINDS: readonly Kind[] = ['qmigrate', '10.0'];

export interface Vm {
  kind: Kind;
  qmp: MiniQmp;
  child: ChildProcess;
  exited: Promise<number | null>;
  stderr(): string;
  /** Runs a command; the reply as QEMU sends it. */
  x(command: string, args?: unknown): Promise<QmpReply>;
  /** Runs a command that must succeed. */
  ok(command: string, args?: unknown): Promise<Record<string, unknown>>;
}

export function tmpDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'qmigrate-opt-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A 16 MiB guest on a share=on file of mixed pages, as the pair tests use. */
export function sharedGuest(dir: string, name = 'img'): string[] {
  writeMixedImage(join(dir, name), 16 << 20, 1);
  return guestArgs(join(dir, name), 16);
}

/** A 16 MiB guest whose RAM file starts empty (zeros), for destinations. */
export function emptyGuest(dir: string, name: string): string[] {
  writeFileSync(join(dir, name), '');
  return guestArgs(join(dir, name), 16);
}

/**
 * Starts a peer with `args` (machine, RAM, -incoming ...); undefined when QEMU 10.0 is
 * absent (the test skipped loudly). Stopped when the test ends.
 */
export async function startVm(
  t: TestContext,
  kind: Kind,
  args: string[],
  dir: string,
): Promise<Vm | undefined> {
  const sock = join(mkdtempSync(join(dir, `${kind}-`)), 'qmp.sock');
  const common = ['-display', 'none', '-nodefaults', '-qmp', `unix:${sock},server=on,wait=off`];
  let child: ChildProcess;
  if (kind === 'qmigrate') {
    child = spawnQmigrate(['vm', ...args, ...common], { stdio: ['ignore', 'ignore', 'pipe'] });
  } else {
    const bin = requireQemu(t, '10.0');
    if (!bin) return undefined;
    child = spawn(bin.path, [...bin.args, ...args, ...common], {
      env: bin.env,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
  }
  let stderr = '';
  child.stderr?.on('data', (d) => {
    stderr += d;
  });
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const gone = exited.then(() => {});
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  });
  const qmp = await MiniQmp.connect(sock, 20_000, gone);
  t.after(() => qmp.close());
  await qmp.execute('qmp_capabilities');
  const x = (command: string, args?: unknown) => qmp.execute(command, args);
  const ok = async (command: string, args?: unknown) => {
    const r = await x(command, args);
    if (!('return' in r)) throw new Error(`${kind}: ${command} failed: ${JSON.stringify(r)}`);
    return r.return as Record<string, unknown>;
  };
  return { kind, qmp, child, exited, stderr: () => stderr, x, ok };
}

/** Polls query-migrate until `done` says so (or the time is up). */
export async function waitInfo(
  vm: Vm,
  done: (info: Record<string, unknown>) => boolean,
  ms = 20_000,
): Promise<Record<string, unknown>> {
  const deadline = Date.now() + ms;
  for (;;) {
    const info = await vm.ok('query-migrate');
    if (done(info)) return info;
    if (Date.now() > deadline) throw new Error(`${vm.kind}: query-migrate still ${JSON.stringify(info)}`);
    await sleep(25);
  }
}

export const finished = (i: Record<string, unknown>) =>
  i.status === 'completed' || i.status === 'failed' || i.status === 'cancelled';

export const channels = (...list: [string, Record<string, unknown>][]) => ({
  channels: list.map(([type, addr]) => ({ 'channel-type': type, addr })),
});
export const unixAddr = (path: string) => ({ transport: 'socket', type: 'unix', path });
