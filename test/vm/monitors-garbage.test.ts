// 100 MB of garbage to each monitor listener of a real `qmigrate vm` (-qmp unix, -qmp tcp,
// -monitor unix): random bytes, one endless string token, deep nesting, many small tokens, and
// no newline at all. The process's RSS stays within a bound over its size before, each
// connection still answers a request sent behind its garbage, and a new client is answered
// afterwards. The bound: QEMU's JSON token size limit (64 MiB) lets one endless string hold up
// to 64 MiB until the limit drops it, as in QEMU.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { LineClient } from '../helpers/monitors.js';
import { spawnQmigrate } from '../helpers/qmigrate.js';
import { freePort } from '../helpers/tls-monitor.js';

const MIB = 1 << 20;
/**
 * Over the RSS before: the 64 MiB token QEMU's limit lets a client send, and room for what V8
 * keeps of its heap after the garbage (measured: a peak of 100 to 135 MiB over).
 */
const RSS_BOUND_MIB = 64 + 128;

/**
 * One MiB of each kind of garbage, sent again and again, and how many MiB of it: 100 in all per
 * listener. Random bytes are a small share: about one in six is an error that gets a reply of
 * its own, and replies go out at some 30 k a second (QEMU 10.0's rate too, see
 * test/qmp/server-queue-qemu.test.ts); on HMP each byte typed redraws the line, as in QEMU. So
 * 100 MB of them would take minutes on either.
 */
const KINDS: Record<string, { chunk: Buffer; mib: number; prefix?: string }> = {
  random: { chunk: randomBytes(MIB), mib: 0.25 },
  // One string token past QEMU's token size limit (64 MiB): held until the limit drops it.
  'endless string': { chunk: Buffer.alloc(MIB, 'a'), mib: 70, prefix: '"' },
  // Past QEMU's nesting limit (1024) at once; then every `[` counts again from zero.
  'deep nesting': { chunk: Buffer.alloc(MIB, '['), mib: 10 },
  // Lists of 1000 small tokens, each one message (and one error reply: not an object).
  'small tokens': {
    chunk: Buffer.from(`[${'1,'.repeat(999)}1]`.repeat(Math.floor(MIB / 2001)).padEnd(MIB)),
    mib: 10,
  },
  'no newline': { chunk: Buffer.alloc(MIB, 'x'), mib: 9.75 },
};

/** After any garbage: 0xFF resets QEMU's JSON parser, then a request whose reply names its id. */
const END_QMP = '\xff\n{"execute":"qmp_capabilities","id":"end"}\n';
/** After any garbage: a letter ends an escape sequence, ^E ^U clear the line, then a command. */
const END_HMP = 'x\x05\x15info status\r';
const ASK_WAIT_MS = 60_000;

/** A raw client that reads (and keeps the tail of) whatever the monitor sends. */
class Client {
  tail = '';
  readonly connected: Promise<void>;
  #wake: (() => void) | undefined;

  constructor(readonly socket: Socket) {
    socket.on('data', (d: Buffer) => {
      this.tail = (this.tail + d.toString('latin1')).slice(-4096);
      this.#wake?.();
    });
    socket.on('error', () => {});
    this.connected = new Promise((res, rej) => socket.once('connect', res).once('error', rej));
  }

  /** Sends `text` and waits until `answer` shows in the output. */
  async ask(text: string, answer: string, what: string): Promise<void> {
    this.tail = '';
    this.socket.write(Buffer.from(text, 'latin1'));
    const end = performance.now() + ASK_WAIT_MS;
    while (!this.tail.includes(answer)) {
      assert.ok(!this.socket.destroyed, `${what}: connection closed`);
      assert.ok(performance.now() < end, `${what}: no answer within ${ASK_WAIT_MS} ms`);
      await new Promise<void>((res) => {
        this.#wake = res;
        setTimeout(res, 100);
      });
    }
  }
}

function rssMiB(pid: number): number {
  return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]) / 1024;
}

/** Writes `total` bytes of `chunk` as fast as the peer takes them; resolves at the end or a close. */
async function flood(s: Socket, prefix: string, chunk: Buffer, total: number): Promise<number> {
  let sent = 0;
  if (prefix) s.write(prefix);
  while (sent < total && !s.destroyed) {
    const part = chunk.subarray(0, Math.min(chunk.length, total - sent));
    const ok = await new Promise<boolean>((res) => s.write(part, (e) => res(!e)));
    if (!ok) break;
    sent += part.length;
  }
  return sent;
}

test('100 MB of garbage of each kind to each monitor listener: RSS bounded, new clients answered', {
  timeout: 120_000,
}, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'qmigrate-garbage-'));
  const port = await freePort();
  const child = spawnQmigrate(
    [
      'vm',
      '-machine',
      'none',
      '-m',
      '16M',
      '-qmp',
      `unix:${join(dir, 'q.sock')},server=on,wait=off`,
      '-qmp',
      `tcp:127.0.0.1:${port},server=on,wait=off`,
      '-monitor',
      `unix:${join(dir, 'h.sock')},server=on,wait=off`,
    ],
    { stdio: 'inherit' },
  );
  const exited = new Promise<void>((res) => child.once('exit', () => res()));
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
    rmSync(dir, { recursive: true, force: true });
  });
  const listeners = {
    'qmp unix': () => connect(join(dir, 'q.sock')),
    'qmp tcp': () => connect(port, '127.0.0.1'),
    'hmp unix': () => connect(join(dir, 'h.sock')),
  };
  // Up once each answers.
  for (const p of [join(dir, 'q.sock'), join(dir, 'h.sock')]) (await LineClient.open(p)).destroy();
  await sleep(300);
  const before = rssMiB(child.pid!);
  let peak = before;
  const watch = setInterval(() => {
    peak = Math.max(peak, rssMiB(child.pid!));
  }, 50);
  t.after(() => clearInterval(watch));

  const t0 = performance.now();
  // One listener after the other (the two cores go to the kinds), every kind on a connection of
  // its own.
  for (const [where, open] of Object.entries(listeners)) {
    {
      const hmp = where.startsWith('hmp');
      await Promise.all(
        Object.entries(KINDS).map(async ([kind, { chunk, mib, prefix }]) => {
          // A line end would make HMP run what the garbage spelled (`q` quits).
          const bytes =
            hmp && kind === 'random' ? Buffer.from(chunk.map((b) => (b === 10 || b === 13 ? 32 : b))) : chunk;
          const c = new Client(open());
          await c.connected;
          const n = await flood(c.socket, prefix ?? '', bytes, Math.round(mib * MIB));
          assert.equal(n, Math.round(mib * MIB), `${where}, ${kind}: the monitor closed the connection`);
          // Written is not read (loopback tcp buffers megabytes): a request behind the garbage
          // is answered once the monitor has been through all of it.
          await c.ask(hmp ? END_HMP : END_QMP, hmp ? 'VM status' : '"id": "end"', `${where}, ${kind}`);
          t.diagnostic(`${where}, ${kind}: ${mib} MiB taken in ${Math.round(performance.now() - t0)} ms`);
          c.socket.destroy();
        }),
      );
      // A new client is answered.
      const c = new Client(open());
      await c.connected;
      await c.ask(
        hmp ? 'info status\r' : '{"execute":"qmp_capabilities","id":"end"}\n',
        hmp ? 'VM status' : '"id": "end"',
        where,
      );
      c.socket.destroy();
    }
  }
  t.diagnostic(`100 MiB to each listener in ${Math.round(performance.now() - t0)} ms`);
  clearInterval(watch);
  t.diagnostic(`RSS before ${before.toFixed(0)} MiB, peak ${peak.toFixed(0)} MiB`);
  assert.ok(peak - before < RSS_BOUND_MIB, `RSS went from ${before.toFixed(0)} to ${peak.toFixed(0)} MiB`);
});
