/**
 * The exec transport (migration/exec.c): the stream goes to a child's standard input
 * (outgoing) or comes from its standard output (incoming). `args` run without a shell and,
 * as with QEMU 10.0's g_spawn call, without a PATH search: a bare name is relative to the
 * working directory. A child that fails fails the migration.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { accessSync, closeSync, constants, mkdtempSync, openSync, rmSync, statSync } from 'node:fs';
import { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { genericError } from '../../qapi/errors.js';
import { strerror, systemError } from '../../util/errno.js';

export interface ExecChannel {
  child: ChildProcess;
  /** Our end: the child's standard input (outgoing) or output (incoming). */
  stream: Writable | Readable;
  /** Resolves with the exit code, or rejects with QEMU-style text when the child failed. */
  exited: Promise<void>;
}

/**
 * A kernel pipe for the child's standard input: `[read end for the child, our write end]`.
 * Node's `'pipe'` stdio is a socket pair, whose buffers take some 180 KiB that a child never
 * reads; QEMU hands the child a pipe (64 KiB), so a child that stops reading holds the stream
 * there while the guest runs on. Node has no pipe(2); a FIFO made in a private directory and
 * unlinked at once is the same kernel object. Undefined if no FIFO can be made.
 */
function kernelPipe(): [number, number] | undefined {
  let dir: string | undefined;
  try {
    dir = mkdtempSync(join(tmpdir(), 'qmigrate-exec-'));
    const path = join(dir, 'stdin');
    execFileSync('mkfifo', ['-m', '600', path], { stdio: 'ignore' });
    // Opening one end of a FIFO waits for the other; a read-write open holds both meanwhile.
    const both = openSync(path, constants.O_RDWR);
    const read = openSync(path, constants.O_RDONLY);
    const write = openSync(path, constants.O_WRONLY | constants.O_NONBLOCK);
    closeSync(both);
    return [read, write];
  } catch {
    return undefined;
  } finally {
    if (dir) rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * The program's absolute path, once execve(2) would take it: access(2) fails for the same
 * reasons (ENOENT, EACCES, ENOTDIR, ELOOP), and execve refuses anything but a regular file
 * with EACCES. An empty name is no file (resolve() would make it the working directory).
 * @throws {QapiError} `Failed to execute child process “X” (...)`, QEMU 10.0's text.
 */
function checkProgram(prog: string): string {
  const fail = (why: string) => genericError(`Failed to execute child process \u201c${prog}\u201d (${why})`);
  if (prog === '') throw fail(strerror(systemError('ENOENT', 'execve')));
  const path = resolve(prog);
  // QEMU's JSON parser makes U+0000 the bytes C0 80: the file it looks for has those in its name.
  const C0_80 = Buffer.from([0xc0, 0x80]);
  const name = path.includes('\0')
    ? Buffer.concat(
        path.split('\0').flatMap((part, i) => (i ? [C0_80, Buffer.from(part)] : [Buffer.from(part)])),
      )
    : path;
  try {
    accessSync(name, constants.X_OK);
    if (!statSync(name).isFile()) throw systemError('EACCES', 'execve');
  } catch (e) {
    throw fail(strerror(e));
  }
  // Such a file exists; Node cannot name it to spawn.
  if (name !== path) throw fail('a NUL character in its name, which qmigrate cannot pass on');
  return path;
}

/**
 * Spawns the command.
 * @throws {QapiError} `Failed to execute child process “X” (...)` when it cannot run.
 */
export function spawnExec(args: readonly string[], direction: 'out' | 'in'): ExecChannel {
  const [prog, ...rest] = args;
  if (prog === undefined) throw genericError("exec migration needs a program to run: 'args' is empty");
  const path = checkProgram(prog);
  // QEMU passes U+0000 on as the bytes C0 80 (its JSON parser's); Node cannot pass those.
  const nul = rest.findIndex((a) => a.includes('\0'));
  if (nul >= 0) {
    throw genericError(
      `Failed to execute child process \u201c${prog}\u201d (argument ${nul + 1} has a NUL character, which qmigrate cannot pass on)`,
    );
  }
  const pipe = direction === 'out' ? kernelPipe() : undefined;
  let child: ChildProcess;
  try {
    child = spawn(path, rest, {
      argv0: prog,
      stdio: direction === 'out' ? [pipe?.[0] ?? 'pipe', 'ignore', 'inherit'] : ['ignore', 'pipe', 'inherit'],
    });
  } catch (e) {
    for (const fd of pipe ?? []) closeSync(fd);
    throw genericError(`Failed to execute child process \u201c${prog}\u201d (${strerror(e)})`);
  }
  let stream: Writable | Readable;
  if (direction === 'in') stream = child.stdout as Readable;
  else if (pipe) {
    closeSync(pipe[0]);
    stream = new Socket({ fd: pipe[1], readable: false, writable: true });
  } else stream = child.stdin as Writable;
  const exited = new Promise<void>((res, rej) => {
    child.once('error', (e) =>
      rej(genericError(`Failed to execute child process \u201c${prog}\u201d (${strerror(e)})`)),
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
  return { child, stream, exited };
}
