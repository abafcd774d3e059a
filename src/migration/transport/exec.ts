/**
 * The exec transport (migration/exec.c): the stream goes to a child's standard input
 * (outgoing) or comes from its standard output (incoming). `args` run without a shell and,
 * as with QEMU 10.0's g_spawn call, without a PATH search: a bare name is relative to the
 * working directory. A child that fails fails the migration.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { resolve } from 'node:path';
import { genericError } from '../../qapi/errors.js';

export interface ExecChannel {
  child: ChildProcess;
  /** Resolves with the exit code, or rejects with QEMU-style text when the child failed. */
  exited: Promise<void>;
}

/**
 * Spawns the command.
 * @throws {QapiError} `Failed to execute child process “X” (...)` when it cannot run.
 */
export function spawnExec(args: readonly string[], direction: 'out' | 'in'): ExecChannel {
  const [prog, ...rest] = args;
  if (prog === undefined) throw genericError("exec migration needs a program to run: 'args' is empty");
  const path = resolve(prog);
  try {
    accessSync(path, constants.X_OK);
  } catch (e) {
    const why =
      (e as NodeJS.ErrnoException).code === 'EACCES' ? 'Permission denied' : 'No such file or directory';
    throw genericError(`Failed to execute child process \u201c${prog}\u201d (${why})`);
  }
  const child = spawn(path, rest, {
    argv0: prog,
    stdio: direction === 'out' ? ['pipe', 'ignore', 'inherit'] : ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise<void>((res, rej) => {
    child.once('error', (e) =>
      rej(genericError(`Failed to execute child process \u201c${prog}\u201d (${e.message})`)),
    );
    child.once('exit', (code, signal) => {
      if (code === 0) res();
      else
        rej(
          genericError(`exec: ${prog} ${signal ? `was killed by ${signal}` : `exited with status ${code}`}`),
        );
    });
  });
  exited.catch(() => {});
  return { child, exited };
}
