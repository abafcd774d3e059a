/**
 * A pseudo-terminal a test can type into over time: python3's pty module runs the command on
 * a new pty (100x24) and relays the test's writes to it and its output back. For interactive
 * CLI tests (a shell's prompt, Tab, arrow keys, Ctrl-C), where test/helpers/pty.ts runs a
 * command to its end with no input.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import type { TestContext } from 'node:test';

const RELAY = `
import os, pty, select, struct, sys, fcntl, termios
pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack('HHHH', 24, 100, 0, 0))
inputs = [fd, 0]
while True:
    r, _, _ = select.select(inputs, [], [])
    if fd in r:
        try:
            data = os.read(fd, 65536)
        except OSError:
            break
        if not data:
            break
        os.write(1, data)
    if 0 in r:
        data = os.read(0, 65536)
        if data:
            os.write(fd, data)
        else:
            inputs = [fd]
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status) & 255)
`;

export interface PtySession {
  child: ChildProcess;
  /** Everything the command wrote to its terminal so far. */
  readonly out: string;
  /** Types `text` (keys as bytes: "\\t" Tab, "\\x1b[A" Up, "\\x03" Ctrl-C, "\\x04" Ctrl-D). */
  type(text: string): void;
  /** Waits until the output after `from` (an index into `out`) matches, at most `ms`. */
  waitFor(pattern: RegExp | string, ms?: number, from?: number): Promise<string>;
  /** The command's exit code, waited for at most `ms` (then killed, and the wait rejects). */
  exit(ms: number): Promise<number | null>;
}

/** Starts `argv` on a new pty, with `env` added to this process's (CI cleared); killed after the test. */
export function startPty(t: TestContext, argv: string[], env: NodeJS.ProcessEnv = {}): PtySession {
  const child = spawn('python3', ['-c', RELAY, ...argv], {
    stdio: ['pipe', 'pipe', 'inherit'],
    env: { ...process.env, CI: '', TERM: 'xterm', ...env },
  });
  let out = '';
  const waiters = new Set<() => void>();
  child.stdout!.on('data', (d) => {
    out += d;
    for (const w of waiters) w();
  });
  const exited = new Promise<number | null>((r) => child.on('close', r));
  t.after(() => child.kill('SIGKILL'));
  return {
    child,
    get out() {
      return out;
    },
    type: (text) => void child.stdin!.write(text),
    waitFor(pattern, ms = 10_000, from = 0) {
      const test = () => {
        const tail = out.slice(from);
        return typeof pattern === 'string' ? tail.includes(pattern) : pattern.test(tail);
      };
      if (test()) return Promise.resolve(out);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(
            new Error(
              `no ${pattern} within ${ms} ms in the terminal's output:\n${JSON.stringify(out.slice(from))}`,
            ),
          );
        }, ms);
        const check = () => {
          if (!test()) return;
          clearTimeout(timer);
          waiters.delete(check);
          resolve(out);
        };
        waiters.add(check);
      });
    },
    async exit(ms) {
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          child.kill('SIGKILL');
          reject(new Error(`the command did not exit within ${ms} ms; output:\n${out}`));
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
