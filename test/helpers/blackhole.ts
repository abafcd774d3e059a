/**
 * Listeners that never answer, made deterministically on loopback: a child process listens
 * with a backlog of 1 and then blocks its event loop, so it never accepts; two connections
 * fill its accept queue. After that a unix connect fails with EAGAIN at once (a blocking one
 * would wait), and a tcp connect stays in SYN-SENT (Linux drops a SYN for a full accept queue
 * while tcp_abort_on_overflow is 0, its default) until the kernel gives up after minutes.
 * With `acceptAfterMs` the child wakes up after that long, drops the two fillers and relays
 * every later connection to `relayTo` (a unix path), so a waiting peer finally gets through.
 * `fill: 0` leaves the queue's two places free for the caller.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import type { TestContext } from 'node:test';

const CHILD = `
const net = require('node:net');
const [kind, path, after, relayTo] = process.argv.slice(1);
const server = net.createServer({ pauseOnConnect: true });
let n = 0;
server.on('connection', (s) => {
  if (++n <= 2) return s.destroy();
  const d = net.connect(relayTo);
  s.pipe(d).pipe(s);
  s.resume();
  s.on('error', () => d.destroy());
  d.on('error', () => s.destroy());
});
const where = kind === 'unix' ? { path, backlog: 1 } : { host: '127.0.0.1', port: 0, backlog: 1 };
server.listen(where, () => {
  process.stdout.write(JSON.stringify(server.address()) + '\\n');
  // Blocked: libuv never runs accept() while this waits.
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, after === 'never' ? undefined : Number(after));
});
`;

export interface Blackhole {
  /** tcp: the port on 127.0.0.1; unix: 0. */
  port: number;
  path: string;
  stop(): Promise<void>;
}

/** Starts the blocked listener and fills its accept queue; stopped with the test. */
export async function startBlackhole(
  t: TestContext,
  kind: 'tcp' | 'unix',
  opts: { path?: string; acceptAfterMs?: number; relayTo?: string; fill?: number } = {},
): Promise<Blackhole> {
  const child: ChildProcess = spawn(
    process.execPath,
    ['-e', CHILD, kind, opts.path ?? '', String(opts.acceptAfterMs ?? 'never'), opts.relayTo ?? ''],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const line = await new Promise<string>((resolve, reject) => {
    child.stdout?.once('data', (d) => resolve(String(d)));
    child.once('exit', () => reject(new Error('the blackhole listener did not start')));
  });
  const bound = JSON.parse(line) as string | { port: number };
  const port = typeof bound === 'string' ? 0 : bound.port;
  const fillers: Socket[] = [];
  for (let i = 0; i < (opts.fill ?? 2); i++) {
    fillers.push(
      await new Promise<Socket>((resolve, reject) => {
        const s = kind === 'unix' ? connect(opts.path ?? '') : connect(port, '127.0.0.1');
        s.once('connect', () => resolve(s));
        s.once('error', reject);
      }),
    );
  }
  for (const s of fillers) s.on('error', () => {});
  const stop = async () => {
    for (const s of fillers) s.destroy();
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  };
  t.after(stop);
  return { port, path: opts.path ?? '', stop };
}
