/**
 * Runs qmigrate's CLI from source (through tsx), so tests need no build step: `qmigrate vm`
 * processes for tests, with their QMP socket and a way to stop them.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import type { TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';

const entry = fileURLToPath(new URL('../../src/cli/bin.ts', import.meta.url));

/**
 * Spawns `qmigrate ARGS` from the sources; with `netns`, inside that network namespace
 * (through `ip netns exec`, which execs: the child's pid is qmigrate's).
 */
export function spawnQmigrate(
  args: string[],
  options: {
    stdio?: 'pipe' | 'inherit' | import('node:child_process').StdioOptions;
    env?: NodeJS.ProcessEnv;
    netns?: string;
  } = {},
): ChildProcess {
  const argv = [process.execPath, '--import', 'tsx', entry, ...args];
  if (options.netns) argv.unshift('ip', 'netns', 'exec', options.netns);
  return spawn(argv[0]!, argv.slice(1), {
    stdio: options.stdio ?? 'pipe',
    env: options.env ?? process.env,
  });
}

/** Runs `qmigrate ARGS` to completion and returns its exit code and output. */
export function runQmigrate(
  args: string[],
  input?: string,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawnQmigrate(args);
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (d) => {
      stdout += d;
    });
    child.stderr?.on('data', (d) => {
      stderr += d;
    });
    if (input !== undefined) child.stdin?.end(input);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** A started `qmigrate ARGS` (startQmigrate), its output collected as it comes. */
export interface QmigrateRun {
  child: ChildProcess;
  /** Standard output and error so far. */
  readonly stdout: string;
  readonly stderr: string;
  /**
   * Its exit code, waited for at most `ms`; past that the child is killed (SIGKILL) and the
   * wait rejects, so a qmigrate that never ends fails the test instead of hanging it.
   */
  exit(ms: number): Promise<number | null>;
}

/** Starts `qmigrate ARGS` from the sources with its output collected; killed when the test ends. */
export function startQmigrate(t: TestContext, args: string[]): QmigrateRun {
  const child = spawnQmigrate(args);
  const out = { stdout: '', stderr: '' };
  child.stdout?.on('data', (d) => {
    out.stdout += d;
  });
  child.stderr?.on('data', (d) => {
    out.stderr += d;
  });
  const exited = new Promise<number | null>((r) => child.on('close', r));
  t.after(() => child.kill('SIGKILL'));
  return {
    child,
    get stdout() {
      return out.stdout;
    },
    get stderr() {
      return out.stderr;
    },
    async exit(ms) {
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          child.kill('SIGKILL');
          reject(new Error(`qmigrate ${args[0]} did not exit within ${ms} ms`));
        }, ms);
      });
      try {
        return await Promise.race([exited, late]);
      } finally {
        clearTimeout(timer);
      }
    },
  };
}
