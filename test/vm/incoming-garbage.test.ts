// 100 MB of garbage to the migration listener of a `qmigrate vm -incoming defer` (tcp and
// unix; exit-on-error false): random bytes, and a valid header then random bytes, fail the
// incoming migration with a clear error, the guest not started; a whole valid stream whose VM
// description claims 4 GiB is read to its end (100 MB) and completes, as QEMU 10.0 completes
// it (the guest's state is whole at EOF). Throughout, the process's RSS stays bounded and the
// monitor answers.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { connectRetry } from '../helpers/peers.js';
import { spawnQmigrate } from '../helpers/qmigrate.js';

const TOTAL = 100 << 20;
const CHUNK = 4 << 20;
/**
 * RSS the destination may grow by while it takes the garbage. Its reader buffers at most
 * 16 MiB ahead (QemuFileReader's high-water mark) plus what Node's socket holds; 100 MB read
 * into memory would be far above this. Measured: at most 5 MiB of growth.
 */
const RSS_GROWTH_MAX = 64 << 20;

const sample = readFileSync(new URL('../fixtures/samples/qemu10-none-16M-pattern.mig', import.meta.url));
/** The sample up to QEMU_VM_EOF, then a VMDESCRIPTION that claims 0xffffffff bytes. */
const eof = sample.lastIndexOf(Buffer.from([0x00, 0x06]));
const hugeVmdesc = Buffer.concat([sample.subarray(0, eof + 2), Buffer.from([0xff, 0xff, 0xff, 0xff])]);

const random = randomBytes(CHUNK);
/**
 * `want`: the error-desc, or undefined when the migration completes; `all`: the destination
 * must take every byte (the others are refused early).
 */
const KINDS: { name: string; head: Buffer; fill: Buffer; want?: RegExp; all?: boolean }[] = [
  { name: 'random bytes', head: Buffer.alloc(0), fill: random, want: /not a migration stream: magic 0x/ },
  {
    name: 'a valid header, then random bytes',
    head: sample.subarray(0, 17),
    fill: random,
    want: /load of migration failed: .+ \(at byte \d+/,
  },
  {
    name: 'a valid stream whose VM description claims 4 GiB',
    head: hugeVmdesc,
    fill: Buffer.alloc(CHUNK),
    all: true,
  },
];

function rss(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'latin1'));
  return Number(m?.[1] ?? 0) * 1024;
}

/** Writes head, then fill until TOTAL bytes, honouring back-pressure; stops when the peer closes. */
async function pour(s: Socket, head: Buffer, fill: Buffer, sample: () => void): Promise<number> {
  let sent = 0;
  const gone = new Promise<void>((res) => {
    s.on('close', () => res());
    s.on('error', () => res());
  });
  let closed = false;
  void gone.then(() => {
    closed = true;
  });
  const write = async (b: Buffer) => {
    if (closed) return;
    sent += b.length;
    if (!s.write(b)) await Promise.race([new Promise((r) => s.once('drain', r)), gone]);
    sample();
  };
  await write(head);
  while (sent < TOTAL && !closed) await write(fill.subarray(0, Math.min(fill.length, TOTAL - sent)));
  s.end();
  await gone;
  return sent;
}

/** A `qmigrate vm -incoming defer` listening on `transport` (exit-on-error false). */
async function destination(t: TestContext, transport: 'tcp' | 'unix', multifd = false) {
  const dir = mkdtempSync(join(tmpdir(), 'qmigrate-garbage-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const qmp = join(dir, 'q.sock');
  const child = spawnQmigrate([
    'vm',
    '-machine',
    'none,memory-backend=m0',
    '-object',
    'memory-backend-ram,id=m0,size=16M',
    '-incoming',
    'defer',
    '-qmp',
    `unix:${qmp},server=on,wait=off`,
  ]);
  const out = { stderr: '' };
  child.stderr?.on('data', (d) => {
    out.stderr += d;
  });
  t.after(() => child.kill('SIGKILL'));
  const q = await connectRetry(qmp);
  t.after(() => q.close());
  if (multifd) {
    await q.migrateSetCapabilities({ capabilities: [{ capability: 'multifd', state: true }] });
    await q.migrateSetParameters({ 'multifd-channels': 2 });
  }
  const uri = transport === 'tcp' ? 'tcp:127.0.0.1:0' : `unix:${join(dir, 'mig.sock')}`;
  await q.migrateIncoming({ uri, 'exit-on-error': false });
  const info = await q.queryMigrate();
  const addr = info['socket-address']?.[0];
  assert.ok(addr, `no socket-address in ${JSON.stringify(info)}`);
  const dial = async () => {
    const s =
      addr.type === 'inet' ? connect(Number(addr.port), addr.host) : connect((addr as { path: string }).path);
    await new Promise((res, rej) => s.once('connect', res).once('error', rej));
    return s;
  };
  const pid = child.pid!;
  /** Polls until the incoming migration ended; checks what must hold after garbage. */
  const ended = async (peakSoFar: number, before: number, want: RegExp | undefined) => {
    let peak = peakSoFar;
    let status = '';
    for (let i = 0; i < 400 && status !== 'failed' && status !== 'completed'; i++) {
      status = (await q.queryMigrate()).status ?? '';
      if (status !== 'failed') await new Promise((r) => setTimeout(r, 25));
      peak = Math.max(peak, rss(pid));
    }
    const after = await q.queryMigrate();
    if (want) {
      assert.equal(after.status, 'failed', JSON.stringify(after));
      assert.match(after['error-desc'] ?? '', want);
      // The monitor answers, and the guest never ran.
      assert.equal((await q.queryStatus()).status, 'inmigrate');
    } else {
      assert.equal(after.status, 'completed', JSON.stringify(after));
      assert.equal((await q.queryStatus()).status, 'running');
    }
    assert.ok(
      peak - before <= RSS_GROWTH_MAX,
      `RSS grew by ${((peak - before) / 2 ** 20).toFixed(1)} MiB (from ${(before / 2 ** 20).toFixed(1)} MiB)`,
    );
    assert.equal(child.exitCode, null, `the process exited: ${out.stderr}`);
    t.diagnostic(`RSS ${(before / 2 ** 20).toFixed(1)} -> peak ${(peak / 2 ** 20).toFixed(1)} MiB`);
  };
  return { dial, pid, ended };
}

for (const transport of ['tcp', 'unix'] as const) {
  for (const kind of KINDS) {
    test(`${transport}: ${kind.name} (100 MB): ${kind.want ? 'fails' : 'completes'}, RSS bounded, monitor up`, async (t) => {
      const d = await destination(t, transport);
      const s = await d.dial();
      const before = rss(d.pid);
      let peak = before;
      const sent = await pour(s, kind.head, kind.fill, () => {
        peak = Math.max(peak, rss(d.pid));
      });
      await d.ended(peak, before, kind.want);
      if (kind.all) assert.ok(sent >= TOTAL, `only ${sent} bytes were taken`);
    });
  }
}

test('tcp with multifd: three connections of random bytes fail the incoming migration, nothing else', async (t) => {
  const d = await destination(t, 'tcp', true);
  const before = rss(d.pid);
  let peak = before;
  const conns = await Promise.all([d.dial(), d.dial(), d.dial()]);
  await Promise.all(
    conns.map((s) =>
      pour(s, Buffer.alloc(0), random, () => {
        peak = Math.max(peak, rss(d.pid));
      }),
    ),
  );
  await d.ended(peak, before, /multifd: received packet magic|not a migration stream/);
});
