/**
 * What a hostile monitor client costs the process, on `qmigrate vm` or QEMU 10.0 (`-machine
 * none`, two QMP sockets and an HMP one): how long N malformed messages take to answer, how
 * far a client that pipelines N requests and never reads gets and what the process grows by,
 * the same for an HMP client typing 4000-byte lines without reading the echo, and meanwhile
 * the slowest `query-status` answer on the other QMP monitor.
 *
 *   node --import tsx bench/experiments/monitor-flood.ts qmigrate|qemu errors|pipeline|hmp [N] [COMMAND]
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { LineClient, Prober } from '../../test/helpers/monitors.js';
import { findQemu } from '../../test/helpers/qemu.js';
import { spawnQmigrate } from '../../test/helpers/qmigrate.js';

const [kind = 'qmigrate', scenario = 'errors', count, command = 'query-status'] = process.argv.slice(2);
const dir = mkdtempSync(join(tmpdir(), 'monitor-flood-'));
const path = (name: string) => join(dir, `${name}.sock`);
const args = ['-machine', 'none', '-display', 'none', '-nodefaults'];
args.push('-qmp', `unix:${path('a')},server=on,wait=off`, '-qmp', `unix:${path('b')},server=on,wait=off`);
args.push('-monitor', `unix:${path('h')},server=on,wait=off`);
let child: ChildProcess;
if (kind === 'qemu') {
  const q = findQemu('10.0');
  if (!('path' in q)) throw new Error(q.missing);
  child = spawn(q.path, [...q.args, ...args], { env: q.env, stdio: 'inherit' });
} else child = spawnQmigrate(['vm', ...args], { stdio: 'inherit' });
const rss = () =>
  Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1]) / 1024;

/** Samples RSS for `seconds`, printing each second; returns the peak. */
async function watch(seconds: number, progress: () => string): Promise<number> {
  let peak = 0;
  for (let i = 1; i <= seconds * 10; i++) {
    await sleep(100);
    peak = Math.max(peak, rss());
    if (i % 10 === 0) console.log(`  t=${i / 10}s ${progress()} rss ${rss().toFixed(0)} MiB`);
  }
  return peak;
}

/** Writes `chunk` `times` times, each after the last was taken by the kernel; counts them. */
function writeAll(c: LineClient, chunk: Buffer, times: number): { taken: number } {
  const state = { taken: 0 };
  void (async () => {
    for (let i = 0; i < times; i++) {
      if (!(await new Promise<boolean>((res) => c.socket.write(chunk, (e) => res(!e))))) return;
      state.taken++;
    }
  })();
  return state;
}

try {
  const b = await LineClient.open(path('b'));
  await b.negotiate();
  const a = await LineClient.open(path('a'));
  await a.negotiate();
  await sleep(500);
  const before = rss();
  console.log(`${kind} ${scenario}: rss at start ${before.toFixed(0)} MiB`);
  const probe = new Prober(b);
  if (scenario === 'errors') {
    const n = Number(count ?? 100_000);
    const t0 = performance.now();
    a.socket.write(Buffer.alloc(n, ']'));
    await a.waitLines(2 + n, 600_000);
    const ms = performance.now() - t0;
    console.log(`  ${n} error replies in ${(ms / 1000).toFixed(2)} s; rss ${rss().toFixed(0)} MiB`);
  } else if (scenario === 'pipeline') {
    const n = Number(count ?? 40_000);
    a.socket.pause();
    const per = 100;
    const w = writeAll(a, Buffer.from(`{"execute":"${command}"}\n`.repeat(per)), Math.ceil(n / per));
    const peak = await watch(10, () => `requests taken by the kernel ${w.taken * per}`);
    console.log(`  peak rss ${peak.toFixed(0)} MiB`);
  } else {
    const h = await LineClient.open(path('h'));
    h.socket.pause();
    const line = Buffer.from(`${'x'.repeat(3999)}\n`);
    const w = writeAll(h, line, Number(count ?? 250));
    const peak = await watch(10, () => `bytes taken by the kernel ${w.taken * line.length}`);
    console.log(`  peak rss ${peak.toFixed(0)} MiB`);
    h.destroy();
  }
  console.log(`  slowest query-status on the other monitor: ${Math.round(probe.stop())} ms`);
  a.destroy();
  await sleep(3000);
  console.log(`  rss 3 s after the disconnect ${rss().toFixed(0)} MiB`);
  b.destroy();
} finally {
  child.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
}
