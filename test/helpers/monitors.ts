/**
 * Monitor processes for hostile-client tests: a `qmigrate vm` or a QEMU 10.0 with several
 * monitor sockets (QMP or HMP), a raw line client that can stop reading, a prober that
 * measures how fast another monitor answers meanwhile, and the process's resident memory.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { requireQemu } from './qemu.js';
import { spawnQmigrate } from './qmigrate.js';

export interface MonitorHost {
  child: ChildProcess;
  /** The socket path of the monitor called `name`. */
  path(name: string): string;
  /** Resident memory of the process, in MiB. */
  rssMiB(): number;
}

/**
 * Starts `-machine none` with one unix-socket monitor per entry of `monitors` (`qmp` or
 * `hmp`), stopped and cleaned up after the test. Undefined when QEMU is absent (skipped).
 */
export async function startMonitors(
  t: TestContext,
  kind: 'qmigrate' | '10.0',
  monitors: Record<string, 'qmp' | 'hmp'>,
): Promise<MonitorHost | undefined> {
  const dir = mkdtempSync(join(tmpdir(), 'qmigrate-mon-'));
  const path = (name: string) => join(dir, `${name}.sock`);
  const args = ['-machine', 'none', '-display', 'none', '-nodefaults'];
  for (const [name, mode] of Object.entries(monitors)) {
    args.push(mode === 'qmp' ? '-qmp' : '-monitor', `unix:${path(name)},server=on,wait=off`);
  }
  let child: ChildProcess;
  if (kind === 'qmigrate') child = spawnQmigrate(['vm', ...args], { stdio: 'inherit' });
  else {
    const bin = requireQemu(t, kind);
    if (!bin) {
      rmSync(dir, { recursive: true, force: true });
      return undefined;
    }
    child = spawn(bin.path, [...bin.args, ...args], { env: bin.env, stdio: ['ignore', 'ignore', 'inherit'] });
  }
  const exited = new Promise<void>((res) => child.once('exit', () => res()));
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
    rmSync(dir, { recursive: true, force: true });
  });
  // Every socket is up once one client has connected to each.
  for (const name of Object.keys(monitors)) (await LineClient.open(path(name))).destroy();
  return {
    child,
    path,
    rssMiB: () =>
      Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1]) / 1024,
  };
}

/** A raw client that splits what it reads into lines (CRLF kept) and counts them. */
export class LineClient {
  readonly socket: Socket;
  readonly lines: string[] = [];
  #partial = '';
  #wake: (() => void) | undefined;
  #closed = false;

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.on('data', (d: Buffer) => {
      const text = this.#partial + d.toString('latin1');
      const parts = text.split('\n');
      this.#partial = parts.pop()!;
      for (const p of parts) this.lines.push(`${p}\n`);
      this.#wake?.();
    });
    socket.on('close', () => {
      this.#closed = true;
      this.#wake?.();
    });
    socket.on('error', () => {});
  }

  /** Connects, retrying for up to 20 s while the socket does not exist yet. */
  static async open(path: string): Promise<LineClient> {
    const deadline = Date.now() + 20_000;
    for (;;) {
      try {
        const s = await new Promise<Socket>((res, rej) => {
          const c = connect(path, () => res(c));
          c.once('error', rej);
        });
        return new LineClient(s);
      } catch (e) {
        if (Date.now() > deadline) throw e;
        await sleep(30);
      }
    }
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Waits until `n` lines have arrived in all. */
  async waitLines(n: number, timeoutMs: number): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    while (this.lines.length < n) {
      if (this.#closed) throw new Error(`connection closed after ${this.lines.length} of ${n} lines`);
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`${this.lines.length} of ${n} lines within ${timeoutMs} ms`);
      await new Promise<void>((res) => {
        const t = setTimeout(res, left);
        this.#wake = () => {
          clearTimeout(t);
          res();
        };
      });
      this.#wake = undefined;
    }
  }

  /** Reads the QMP greeting and negotiates (`oob` enables out-of-band execution). */
  async negotiate(oob = false): Promise<void> {
    await this.waitLines(1, 10_000);
    this.socket.write(
      oob
        ? '{"execute":"qmp_capabilities","arguments":{"enable":["oob"]}}\n'
        : '{"execute":"qmp_capabilities"}\n',
    );
    await this.waitLines(2, 10_000);
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/**
 * Sends `query-status` on a negotiated QMP client every `everyMs` and records each round trip
 * and the slowest answer; stop() returns that in ms, counting a probe still unanswered then.
 */
export class Prober {
  #worst = 0;
  #since = 0;
  #stopped = false;
  readonly #loop: Promise<void>;
  answered = 0;
  /** Every answered round trip, in ms. */
  readonly rtts: number[] = [];

  constructor(client: LineClient, everyMs = 50) {
    this.#loop = (async () => {
      while (!this.#stopped) {
        this.#since = performance.now();
        const n = client.lines.length + 1;
        client.socket.write('{"execute":"query-status"}\n');
        await client.waitLines(n, 600_000);
        const rtt = performance.now() - this.#since;
        this.rtts.push(rtt);
        this.#worst = Math.max(this.#worst, rtt);
        this.#since = 0;
        this.answered++;
        await sleep(everyMs);
      }
    })();
    this.#loop.catch(() => {});
  }

  /** The slowest answer so far, counting one still pending. */
  get worst(): number {
    return Math.max(this.#worst, this.#since ? performance.now() - this.#since : 0);
  }

  stop(): number {
    this.#stopped = true;
    return this.worst;
  }

  /** Stops and waits for the last probe to be answered. */
  async finish(): Promise<number> {
    const w = this.stop();
    await this.#loop;
    return Math.max(w, this.#worst);
  }
}

/** The p-th quantile (0..1) of `xs`, NaN for none. */
export function quantile(xs: readonly number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * p))] ?? Number.NaN;
}
