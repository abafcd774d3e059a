/**
 * `qmigrate demo`: a live migration on the embedded engine, end to end. Two `qmigrate vm`
 * processes, a guest whose workload keeps writing memory, a migration over the channels API,
 * then proof: the destination's RAM equals the source's at switchover, passes QEMU's
 * consistency check, and the guest runs on. Prints a summary; exits 0 only on success.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdtempSync, openSync, readSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { WORKLOAD_START } from '../../machine/workload.js';
import type { MigrationAddress, MigrationInfo } from '../../qapi/types.js';
import { QmpClient } from '../../qmp/client.js';

export interface DemoOptions {
  sizeMiB: number;
  transport: 'unix' | 'tcp' | 'exec' | 'file';
  rate: number;
  downtimeLimit: number;
  maxBandwidth: number;
  json: boolean;
}

const PAGE = 4096;

function vmCommand(): string[] {
  // Re-run this very CLI (compiled, or from source under tsx) as `qmigrate vm`.
  return [...process.execArgv, process.argv[1]!, 'vm'];
}

async function connect(path: string, child: ChildProcess): Promise<QmpClient> {
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) throw new Error(`qmigrate vm exited with status ${child.exitCode}`);
    try {
      return await QmpClient.connect(path, { timeout: 1000 });
    } catch (e) {
      if (i > 400) throw e;
      await sleep(25);
    }
  }
}

/** Compares two RAM dumps chunk by chunk, checks the workload's rule on the second. */
function verify(a: string, b: string, size: number): { equal: boolean; bad: number; sha1: string } {
  const fa = openSync(a, 'r');
  const fb = openSync(b, 'r');
  const chunk = 32 << 20;
  const ba = Buffer.allocUnsafe(chunk);
  const bb = Buffer.allocUnsafe(chunk);
  const hash = createHash('sha1');
  let equal = true;
  let bad = 0;
  let last = -1;
  let edge = false;
  try {
    for (let at = 0; at < size; at += chunk) {
      const n = Math.min(chunk, size - at);
      readSync(fa, ba, 0, n, at);
      readSync(fb, bb, 0, n, at);
      hash.update(ba.subarray(0, n));
      if (equal && ba.compare(bb, 0, n, 0, n) !== 0) equal = false;
      for (let p = Math.max(at, WORKLOAD_START); p < at + n; p += PAGE) {
        const v = bb[p - at]!;
        if (last < 0) last = v;
        else if (v !== last) {
          if (((v + 1) & 0xff) === last && !edge) {
            edge = true;
            last = v;
          } else bad++;
        }
      }
    }
  } finally {
    closeSync(fa);
    closeSync(fb);
  }
  return { equal, bad, sha1: hash.digest('hex').slice(0, 16) };
}

const mib = (b: number) => `${(b / 1048576).toFixed(1)} MiB`;

export async function runDemo(o: DemoOptions, log: (s: string) => void): Promise<number> {
  const base = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
  const dir = mkdtempSync(join(base, 'qmigrate-demo-'));
  const children: ChildProcess[] = [];
  const clients: QmpClient[] = [];
  try {
    const vm = (name: string, extra: string[]) => {
      const args = [
        ...vmCommand(),
        '-machine',
        'none',
        '-m',
        `${o.sizeMiB}M`,
        '-object',
        `qmigrate-workload,id=w0,rate=${o.rate}`,
        '-qmp',
        `unix:${join(dir, `${name}.qmp`)},server=on,wait=off`,
        ...extra,
      ];
      const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'inherit'] });
      children.push(child);
      return child;
    };
    log(`starting two qmigrate VMs with ${o.sizeMiB} MiB of RAM; the guest writes ${o.rate} pages/s`);
    const srcChild = vm('src', []);
    // -S: the destination stays paused after switchover until its RAM has been checked.
    const dstChild = vm('dst', ['-incoming', 'defer', '-S']);
    const src = await connect(join(dir, 'src.qmp'), srcChild);
    const dst = await connect(join(dir, 'dst.qmp'), dstChild);
    clients.push(src, dst);
    await sleep(300);

    const addr: Record<DemoOptions['transport'], { out: MigrationAddress; in: MigrationAddress }> = {
      unix: {
        out: { transport: 'socket', type: 'unix', path: join(dir, 'mig.sock') },
        in: { transport: 'socket', type: 'unix', path: join(dir, 'mig.sock') },
      },
      tcp: {
        out: { transport: 'socket', type: 'inet', host: '127.0.0.1', port: '0' },
        in: { transport: 'socket', type: 'inet', host: '127.0.0.1', port: '0' },
      },
      exec: {
        out: { transport: 'exec', args: ['/bin/dd', `of=${join(dir, 'mig.exec')}`, 'bs=1M', 'status=none'] },
        in: { transport: 'exec', args: ['/bin/cat', join(dir, 'mig.exec')] },
      },
      file: {
        out: { transport: 'file', filename: join(dir, 'mig.file'), offset: 0 },
        in: { transport: 'file', filename: join(dir, 'mig.file'), offset: 0 },
      },
    };
    const plan = addr[o.transport];
    const streamed = o.transport === 'unix' || o.transport === 'tcp';
    if (streamed) {
      await dst.migrateIncoming({ channels: [{ 'channel-type': 'main', addr: plan.in }] });
      if (plan.out.transport === 'socket' && plan.out.type === 'inet') {
        const sa = (await dst.queryMigrate())['socket-address']?.[0];
        if (sa?.type === 'inet') plan.out.port = sa.port;
      }
    }
    await src.migrateSetCapabilities({ capabilities: [{ capability: 'events', state: true }] });
    await src.migrateSetParameters({ 'max-bandwidth': o.maxBandwidth, 'downtime-limit': o.downtimeLimit });
    log(`migrating live over ${o.transport} with migrate {channels: [...]}`);
    const started = Date.now();
    await src.migrate({ channels: [{ 'channel-type': 'main', addr: plan.out }] });
    let info: MigrationInfo;
    let lastLog = 0;
    for (;;) {
      info = await src.queryMigrate();
      if (info.status === 'completed' || info.status === 'failed' || info.status === 'cancelled') break;
      if (Date.now() - lastLog > 500 && info.ram) {
        lastLog = Date.now();
        log(
          `  ${info.status}: ${mib(Number(info.ram.transferred))} sent, ${mib(Number(info.ram.remaining))} dirty, pass ${info.ram['dirty-sync-count']}`,
        );
      }
      await sleep(50);
    }
    if (info.status !== 'completed') {
      log(`migration ${info.status}: ${info['error-desc'] ?? ''}`);
      return 1;
    }
    if (!streamed) await dst.migrateIncoming({ channels: [{ 'channel-type': 'main', addr: plan.in }] });
    for (;;) {
      const d = await dst.queryMigrate();
      if (d.status === 'completed') break;
      if (d.status === 'failed') {
        log(`destination failed: ${d['error-desc']}`);
        return 1;
      }
      await sleep(20);
    }
    const elapsed = Date.now() - started;
    const size = o.sizeMiB << 20;
    await src.pmemsave({ val: 0, size, filename: join(dir, 'src.ram') });
    await dst.pmemsave({ val: 0, size, filename: join(dir, 'dst.ram') });
    const check = verify(join(dir, 'src.ram'), join(dir, 'dst.ram'), size);
    rmSync(join(dir, 'src.ram'), { force: true });
    rmSync(join(dir, 'dst.ram'), { force: true });
    await dst.cont();
    await sleep(200);
    const running = (await dst.queryStatus()).status === 'running';
    const ram = info.ram!;
    const total = Number(info['total-time']);
    const summary = {
      ok: check.equal && check.bad === 0 && running,
      transport: o.transport,
      sizeMiB: o.sizeMiB,
      totalTimeMs: total,
      downtimeMs: Number(info.downtime),
      setupTimeMs: Number(info['setup-time']),
      transferredBytes: Number(ram.transferred),
      throughputMiBps: Number((Number(ram.transferred) / 1048576 / (total / 1000)).toFixed(1)),
      normalPages: Number(ram.normal),
      zeroPages: Number(ram.duplicate),
      iterations: Number(ram['dirty-sync-count']),
      ramIdentical: check.equal,
      consistencyBadPages: check.bad,
      ramSha1: check.sha1,
      destinationRunning: running,
      wallMs: elapsed,
    };
    if (o.json) log(JSON.stringify(summary));
    else {
      log(
        `done: total ${summary.totalTimeMs} ms, downtime ${summary.downtimeMs} ms, ${mib(summary.transferredBytes)} sent at ${summary.throughputMiBps} MiB/s`,
      );
      log(
        `      pages: ${summary.normalPages} normal, ${summary.zeroPages} zero; ${summary.iterations} dirty-bitmap syncs`,
      );
      log(
        `check: destination RAM ${check.equal ? 'equals' : 'DIFFERS FROM'} the source's at switchover (sha1 ${check.sha1}), consistency ${check.bad === 0 ? 'ok' : `FAILED (${check.bad} bad pages)`}, guest ${running ? 'running' : 'NOT running'}`,
      );
    }
    return summary.ok ? 0 : 1;
  } finally {
    for (const c of clients) await c.close().catch(() => {});
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}
