/**
 * A real pseudo-terminal for CLI tests, through util-linux's `script` (no native module): the
 * command sees a terminal of the given width, with CI cleared (CI marks a log, which gets plain
 * lines; these tests are the person at a terminal).
 */
import { spawn } from 'node:child_process';

/** Runs `cmd` (a shell line) in a new pty of `columns` columns; resolves with all it wrote. */
export function inPty(cmd: string, columns: number): Promise<{ code: number | null; out: string }> {
  const child = spawn('script', ['-qfec', `stty cols ${columns} rows 24; exec ${cmd}`, '/dev/null'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, CI: '' },
  });
  let out = '';
  child.stdout.on('data', (d) => {
    out += d;
  });
  child.stderr.on('data', (d) => {
    out += d;
  });
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, out })));
}
