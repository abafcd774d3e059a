/**
 * Runs qmigrate's CLI from source (through tsx), so tests need no build step: `qmigrate vm`
 * processes for tests, with their QMP socket and a way to stop them.
 */
import { type ChildProcess, spawn } from 'node:child_process';
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
