/**
 * Finds and starts the real QEMU peers installed by `npm run setup:qemu`.
 * QEMU_10 / QEMU_7 name other binaries. Where a binary is missing, tests skip loudly; with
 * QMIGRATE_REQUIRE_QEMU=1 (as CI sets it) they fail instead.
 */
import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import type { TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { atExit } from './at-exit.js';
import { MiniQmp } from './qmp-mini.js';

export type QemuVersion = '10.0' | '7.2';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

export interface QemuBinary {
  version: QemuVersion;
  path: string;
  /** Extra environment and arguments a privately unpacked build needs. */
  env: NodeJS.ProcessEnv;
  args: string[];
}

function versionOf(path: string, env: NodeJS.ProcessEnv, args: string[]): string | undefined {
  try {
    const out = execFileSync(path, [...args, '--version'], { env, encoding: 'utf8', timeout: 10_000 });
    return /version (\d+\.\d+)/.exec(out)?.[1];
  } catch {
    return undefined;
  }
}

/** The QEMU binary of the given version, or undefined with the reason. */
export function findQemu(version: QemuVersion): QemuBinary | { missing: string } {
  const override = version === '10.0' ? process.env.QEMU_10 : process.env.QEMU_7;
  const unpacked = join(root, '.qemu/10.0');
  const path =
    override ??
    (version === '10.0' ? join(unpacked, 'usr/bin/qemu-system-x86_64') : '/usr/bin/qemu-system-x86_64');
  if (!existsSync(path)) return { missing: `${path} does not exist` };
  let env: NodeJS.ProcessEnv = { ...process.env };
  let args: string[] = [];
  if (!override && version === '10.0') {
    env = { ...env, QEMU_MODULE_DIR: join(unpacked, 'usr/lib/x86_64-linux-gnu/qemu') };
    args = ['-L', join(unpacked, 'usr/share/qemu')];
  }
  const got = versionOf(path, env, args);
  if (got !== version) return { missing: `${path} is QEMU ${got ?? '(unknown)'}, not ${version}` };
  return { version, path, env, args };
}

/**
 * Returns the QEMU binary, or skips the test (loudly) when it is absent. With
 * QMIGRATE_REQUIRE_QEMU=1 an absent QEMU fails the test instead.
 */
export function requireQemu(t: TestContext, version: QemuVersion): QemuBinary | undefined {
  const q = findQemu(version);
  if ('path' in q) return q;
  skipLoudly(t, `QEMU ${version} not found (${q.missing}); run \`npm run setup:qemu\``);
  return undefined;
}

/**
 * Skips a test whose peer or tool is not installed, with a `*** SKIPPED` line on stderr; under
 * QMIGRATE_REQUIRE_QEMU=1 (CI) it throws instead, so a missing tool fails the run.
 */
export function skipLoudly(t: TestContext, why: string): void {
  if (process.env.QMIGRATE_REQUIRE_QEMU === '1') throw new Error(`${why} (QMIGRATE_REQUIRE_QEMU=1)`);
  process.stderr.write(`\n*** SKIPPED: ${why} ***\n`);
  t.skip(why);
}

/**
 * Runs QEMU 10.0 (`-machine none`, no display, no defaults) with `args` until it exits (at
 * most 10 s); its stderr with the program prefix cut. Undefined when the test skipped.
 */
export async function qemuStderr(t: TestContext, args: string[]): Promise<string | undefined> {
  const bin = requireQemu(t, '10.0');
  if (!bin) return undefined;
  return new Promise((resolve) => {
    execFile(
      bin.path,
      [...bin.args, '-machine', 'none', '-display', 'none', '-nodefaults', ...args],
      { env: bin.env, timeout: 10_000 },
      (_e, _out, err) => resolve(err.replaceAll('qemu-system-x86_64: ', '')),
    );
  });
}

export interface RunningQemu {
  qmp: MiniQmp;
  child: ChildProcess;
  dir: string;
  stop(): Promise<void>;
}

/**
 * Starts `-machine none` with a QMP unix socket and connects a negotiated QMP session. With
 * `netns`, QEMU runs inside that network namespace (`ip netns exec`, which execs: the child's
 * pid is QEMU's); its QMP socket is a path, reachable from any namespace.
 */
export async function startQemu(
  bin: QemuBinary,
  extra: string[] = [],
  machine: string[] = ['-machine', 'none'],
  netns?: string,
): Promise<RunningQemu> {
  const dir = mkdtempSync(join(tmpdir(), 'qmigrate-qemu-'));
  const sock = join(dir, 'qmp.sock');
  const prefix = netns ? ['netns', 'exec', netns, bin.path] : [];
  const child = spawn(
    netns ? 'ip' : bin.path,
    [
      ...prefix,
      ...bin.args,
      ...machine,
      '-display',
      'none',
      '-nodefaults',
      '-qmp',
      `unix:${sock},server=on,wait=off`,
      ...extra,
    ],
    { env: bin.env, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr?.on('data', (d) => {
    stderr += d;
  });
  const exited = new Promise<void>((res) => child.once('exit', () => res()));
  // A signal that ends the test process must leave neither QEMU nor its directory.
  const unhook = atExit(() => {
    child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });
  try {
    const qmp = await MiniQmp.connect(sock, 10_000, exited);
    await qmp.execute('qmp_capabilities');
    const stop = async () => {
      qmp.close();
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
      // A child QEMU spawned (an exec migration's) may still hold the stderr pipe open, which
      // would keep this test process alive for as long as it lives.
      child.stderr?.destroy();
      rmSync(dir, { recursive: true, force: true });
      unhook();
    };
    return { qmp, child, dir, stop };
  } catch (e) {
    child.kill('SIGKILL');
    await exited;
    rmSync(dir, { recursive: true, force: true });
    unhook();
    throw new Error(`QEMU did not start: ${(e as Error).message}; stderr: ${stderr}`);
  }
}

/**
 * Extra QEMU 10.0 arguments that block migration, for preflight tests: an ivshmem device in
 * peer mode (its default) on `-machine pc` registers a migration blocker, which query-migrate
 * lists in `blocked-reasons` and `migrate` refuses with (hw/misc/ivshmem.c). `dir` holds the
 * shared memory file.
 */
export function migrationBlockerArgs(dir: string): string[] {
  return [
    ...['-object', `memory-backend-file,id=ivshmem0,size=1M,mem-path=${join(dir, 'ivshmem')},share=on`],
    ...['-device', 'ivshmem-plain,memdev=ivshmem0'],
  ];
}

/**
 * Waits (up to `ms`) until `get()` includes `text`, then returns `get()`. A process's last
 * stderr line can reach our end of the pipe after its QMP reply or its exit event.
 */
export async function untilIncludes(get: () => string, text: string, ms = 3000): Promise<string> {
  for (const end = Date.now() + ms; !get().includes(text) && Date.now() < end; ) {
    await new Promise((r) => setTimeout(r, 20));
  }
  return get();
}
