/**
 * One measured migration between two VM processes (QEMU 10.0 or `qmigrate vm`), driven over
 * QMP as a user would: what the source's query-migrate says (total time, downtime, bytes),
 * the CPU seconds each process spent between `migrate` and completion (/proc/PID/stat), and
 * each one's peak RSS (VmHWM). With `profile`, qmigrate processes run under --cpu-prof and the
 * samples that fall inside the migration are summed per function.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createCipheriv } from 'node:crypto';
import { closeSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type { MigrationAddress, MigrationInfo } from '../src/qapi/types.js';
import { QmpClient } from '../src/qmp/client.js';
import { LineClient, Prober } from '../test/helpers/monitors.js';
import { findQemu } from '../test/helpers/qemu.js';

export type Engine = 'qemu' | 'qmigrate';
export type Pattern = 'zero' | 'half' | 'random';

const root = fileURLToPath(new URL('..', import.meta.url));
const bin = join(root, 'bin/qmigrate.js');

/** What one migration measured. Times in ms, CPU in s, sizes in bytes. */
export interface Sample {
  total: number;
  downtime?: number;
  /** Bytes the migration moved (RAM transferred, or the file's size). */
  bytes: number;
  cpuSrc?: number;
  cpuDst?: number;
  rssSrc?: number;
  rssDst?: number;
  /** QMP round trips (query-status, ms) measured on each side while the migration ran. */
  rttSrc?: number[];
  rttDst?: number[];
}

/** A guest RAM image: 1 MiB runs of random bytes or zeros, as the pattern says. */
export function writeImage(path: string, mib: number, pattern: Pattern): void {
  const cipher = createCipheriv('aes-128-ctr', Buffer.alloc(16, 3), Buffer.alloc(16));
  const fd = openSync(path, 'w');
  for (let i = 0; i < mib; i++) {
    const random = pattern === 'random' || (pattern === 'half' && i % 2 === 0);
    writeSync(fd, random ? cipher.update(Buffer.alloc(1 << 20)) : Buffer.alloc(1 << 20));
  }
  closeSync(fd);
}

/** CPU seconds (user + system, all threads) a process has used so far. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}

function peakRss(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

/** Microseconds on the monotonic clock V8's profiler stamps its samples with. */
const nowUs = () => Number(process.hrtime.bigint() / 1000n);

export interface VmOptions {
  engine: Engine;
  dir: string;
  name: string;
  mib: number;
  /** The RAM image to start from (a private mapping: the file is never written). */
  image?: string;
  incoming?: boolean;
  /** Pages per second the qmigrate workload writes while the guest runs. */
  workload?: number;
  /** Directory for a --cpu-prof profile (qmigrate only). */
  profileDir?: string;
  /** Without an image: touch the RAM at start (prealloc=on). */
  prealloc?: boolean;
  /** A second QMP monitor, for a client that measures round trips (QEMU's serve one each). */
  probe?: boolean;
}

export class Vm {
  readonly proc: ChildProcess;
  readonly qmp: Promise<QmpClient>;
  readonly name: string;
  #exited: Promise<unknown>;

  constructor(o: VmOptions) {
    this.name = o.name;
    const sock = join(o.dir, `${o.name}.qmp`);
    const mem = o.image
      ? `memory-backend-file,id=m0,size=${o.mib}M,mem-path=${o.image},share=off`
      : // Touched at start, so page faults stay out of the migration (qmigrate does this anyway
        // on a destination; QEMU does it with prealloc=on).
        `memory-backend-ram,id=m0,size=${o.mib}M${o.prealloc === false ? '' : ',prealloc=on'}`;
    const args = [
      '-machine',
      'none,memory-backend=m0',
      '-object',
      mem,
      '-m',
      `${o.mib}M`,
      '-display',
      'none',
      '-nodefaults',
      '-qmp',
      `unix:${sock},server=on,wait=off`,
      ...(o.incoming ? ['-incoming', 'defer'] : []),
      ...(o.probe ? ['-qmp', `unix:${join(o.dir, `${o.name}-probe.qmp`)},server=on,wait=off`] : []),
    ];
    if (o.engine === 'qmigrate') {
      if (o.workload) args.push('-object', `qmigrate-workload,id=w0,rate=${o.workload}`);
      const prof = o.profileDir
        ? ['--cpu-prof', `--cpu-prof-dir=${o.profileDir}`, `--cpu-prof-name=${o.name}.cpuprofile`]
        : [];
      this.proc = spawn(process.execPath, [...prof, bin, 'vm', ...args], {
        stdio: ['ignore', 'inherit', 'inherit'],
      });
    } else {
      if (o.workload) throw new Error('QEMU 10.0 -machine none has no vCPU to run a workload');
      const q = findQemu('10.0');
      if (!('path' in q)) throw new Error(`QEMU 10.0 not found: ${q.missing}; run npm run setup:qemu`);
      this.proc = spawn(q.path, [...q.args, ...args], {
        env: q.env,
        stdio: ['ignore', 'inherit', 'inherit'],
      });
    }
    const proc = this.proc;
    this.#exited = new Promise((r) => proc.once('exit', r));
    this.qmp = (async () => {
      for (let i = 0; ; i++) {
        try {
          return await QmpClient.connect(sock, { timeout: 5000 });
        } catch (e) {
          if (i > 800 || proc.exitCode !== null) throw e;
          await sleep(25);
        }
      }
    })();
    this.qmp.catch(() => {});
  }

  get pid(): number {
    return this.proc.pid!;
  }

  cpu(): number {
    return cpuSeconds(this.pid);
  }

  rss(): number {
    return peakRss(this.pid);
  }

  /** Ends the process: `quit` (so that a profile gets written) or SIGKILL. */
  async stop(graceful = false): Promise<void> {
    if (this.proc.exitCode === null && this.proc.signalCode === null) {
      if (graceful) {
        const q = await this.qmp.catch(() => undefined);
        await q?.quit().catch(() => {});
        await Promise.race([this.#exited, sleep(20_000)]);
      }
      this.proc.kill('SIGKILL');
      await this.#exited;
    }
    (await this.qmp.catch(() => undefined))?.close().catch(() => {});
  }
}

async function waitStatus(q: QmpClient, who: string): Promise<MigrationInfo> {
  for (;;) {
    const info = await q.queryMigrate();
    if (info.status === 'completed') return info;
    if (info.status === 'failed' || info.status === 'cancelled') {
      throw new Error(`${who}: migration ${info.status}: ${info['error-desc'] ?? ''}`);
    }
    await sleep(5);
  }
}

async function enableMultifd(qs: QmpClient[], channels: number): Promise<void> {
  if (!channels) return;
  for (const q of qs) {
    await q.migrateSetCapabilities({ capabilities: [{ capability: 'multifd', state: true }] });
    await q.migrateSetParameters({ 'multifd-channels': channels });
  }
}

export interface SocketCase {
  src: Engine;
  dst: Engine;
  transport: 'unix' | 'tcp';
  multifd: number;
  workload: number;
  /** Preallocate the destination's RAM (default true). */
  prealloc?: boolean;
  /** Measure QMP round trips on both sides during the migration. */
  probe?: boolean;
  /**
   * Migrate over TLS with the credentials in this directory (QEMU's x509 layout, all five
   * files): a tls-creds-x509 object on each side, `tls-creds` pointing at it.
   */
  tls?: string;
}

/**
 * The TLS set-up a user makes on both sides (as `qmigrate migrate --tls-creds` does): the
 * destination a server that checks the source's certificate, the source a client that checks
 * the destination's against the address's host (127.0.0.1, in the test certificates' SANs).
 */
async function enableTls(s: QmpClient, d: QmpClient, dir: string | undefined): Promise<void> {
  if (!dir) return;
  for (const [q, endpoint] of [
    [d, 'server'],
    [s, 'client'],
  ] as const) {
    await q.executeRaw('object-add', {
      'qom-type': 'tls-creds-x509',
      id: 'tls0',
      dir,
      endpoint,
      'verify-peer': true,
    });
    await q.migrateSetParameters({ 'tls-creds': 'tls0' });
  }
}

/** Profile windows (monotonic µs) of the last profiled run, per VM name. */
export interface Window {
  from: number;
  to: number;
}

/** Source -> destination over a socket. */
export async function migrateSocket(
  c: SocketCase,
  dir: string,
  mib: number,
  image: string,
  profileDir?: string,
): Promise<{ sample: Sample; window: Window }> {
  const src = new Vm({
    engine: c.src,
    dir,
    name: 'src',
    mib,
    image,
    workload: c.workload,
    profileDir: c.src === 'qmigrate' ? profileDir : undefined,
    probe: c.probe,
  });
  const dst = new Vm({
    engine: c.dst,
    dir,
    name: 'dst',
    mib,
    incoming: true,
    prealloc: c.prealloc,
    profileDir: c.dst === 'qmigrate' ? profileDir : undefined,
    probe: c.probe,
  });
  try {
    const [s, d] = await Promise.all([src.qmp, dst.qmp]);
    const addr: MigrationAddress =
      c.transport === 'tcp'
        ? { transport: 'socket', type: 'inet', host: '127.0.0.1', port: '0' }
        : { transport: 'socket', type: 'unix', path: join(dir, 'mig.sock') };
    await s.migrateSetParameters({ 'max-bandwidth': 0 });
    await enableMultifd([s, d], c.multifd);
    await enableTls(s, d, c.tls);
    await d.migrateIncoming({ channels: [{ 'channel-type': 'main', addr }] });
    const bound = (await d.queryMigrate())['socket-address']?.[0];
    if (addr.transport === 'socket' && addr.type === 'inet' && bound?.type === 'inet') addr.port = bound.port;
    // A running workload needs a moment to be at its rate.
    if (c.workload) await sleep(200);
    // A management client's view: query-status on a monitor of its own, 1 ms after each reply.
    const pings = c.probe
      ? await Promise.all(
          ['src', 'dst'].map(async (n) => {
            const client = await LineClient.open(join(dir, `${n}-probe.qmp`));
            await client.negotiate();
            return { client, prober: new Prober(client, 1) };
          }),
        )
      : [];
    const cpu0 = [src.cpu(), dst.cpu()];
    const from = nowUs();
    await s.migrate({ channels: [{ 'channel-type': 'main', addr }] });
    const info = await waitStatus(s, `${c.src} source`);
    await waitStatus(d, `${c.dst} destination`);
    const to = nowUs();
    const [rttSrc, rttDst] = await Promise.all(
      pings.map(async ({ client, prober }) => {
        await prober.finish();
        client.destroy();
        // Kept in the report's JSON: hundredths of a millisecond are plenty.
        return prober.rtts.map((ms) => Math.round(ms * 100) / 100);
      }),
    );
    const sample: Sample = {
      rttSrc,
      rttDst,
      total: Number(info['total-time']),
      downtime: Number(info.downtime),
      bytes: Number(info.ram?.transferred),
      cpuSrc: src.cpu() - cpu0[0]!,
      cpuDst: dst.cpu() - cpu0[1]!,
      rssSrc: src.rss(),
      rssDst: dst.rss(),
    };
    return { sample, window: { from, to } };
  } finally {
    await Promise.all([src.stop(!!profileDir), dst.stop(!!profileDir)]);
  }
}

/** Save to a file: the source migrates to `file:`; the time is its total-time. */
export async function saveToFile(
  engine: Engine,
  dir: string,
  mib: number,
  image: string,
  file: string,
  profileDir?: string,
): Promise<{ sample: Sample; window: Window }> {
  rmSync(file, { force: true });
  const src = new Vm({ engine, dir, name: 'src', mib, image, profileDir });
  try {
    const s = await src.qmp;
    await s.migrateSetParameters({ 'max-bandwidth': 0 });
    const cpu0 = src.cpu();
    const from = nowUs();
    await s.migrate({
      channels: [{ 'channel-type': 'main', addr: { transport: 'file', filename: file, offset: 0 } }],
    });
    const info = await waitStatus(s, `${engine} source`);
    const to = nowUs();
    return {
      sample: {
        total: Number(info['total-time']),
        downtime: Number(info.downtime),
        bytes: statSync(file).size,
        cpuSrc: src.cpu() - cpu0,
        rssSrc: src.rss(),
      },
      window: { from, to },
    };
  } finally {
    await src.stop(!!profileDir);
  }
}

/**
 * Load from a file: `migrate-incoming file:`; the time runs from the command to the
 * MIGRATION completed event's timestamp (the destination reports no total-time).
 */
export async function loadFromFile(
  engine: Engine,
  dir: string,
  mib: number,
  file: string,
  profileDir?: string,
): Promise<{ sample: Sample; window: Window }> {
  const dst = new Vm({ engine, dir, name: 'dst', mib, incoming: true, profileDir });
  try {
    const d = await dst.qmp;
    // MIGRATION events come only with the events capability, as in QEMU.
    await d.migrateSetCapabilities({ capabilities: [{ capability: 'events', state: true }] });
    const done = d.waitFor('MIGRATION', (e) => e.data.status === 'completed', { timeout: 120_000 });
    const cpu0 = dst.cpu();
    const from = nowUs();
    const t0 = Date.now() * 1000;
    await d.migrateIncoming({
      channels: [{ 'channel-type': 'main', addr: { transport: 'file', filename: file, offset: 0 } }],
    });
    const ev = await done;
    await waitStatus(d, `${engine} destination`);
    const to = nowUs();
    const t1 = ev.timestamp.seconds * 1e6 + ev.timestamp.microseconds;
    return {
      sample: {
        total: Math.round((t1 - t0) / 1000),
        bytes: statSync(file).size,
        cpuDst: dst.cpu() - cpu0,
        rssDst: dst.rss(),
      },
      window: { from, to },
    };
  } finally {
    await dst.stop(!!profileDir);
  }
}

export interface ProfileLine {
  ms: number;
  what: string;
}

/** Self time per function of a --cpu-prof profile, counting only samples inside `w`. */
export function summarizeProfile(path: string, w: Window, top = 8): { lines: ProfileLine[]; total: number } {
  interface Node {
    id: number;
    callFrame: { functionName: string; url: string; lineNumber: number };
  }
  const prof = JSON.parse(readFileSync(path, 'utf8')) as {
    nodes: Node[];
    startTime: number;
    samples: number[];
    timeDeltas: number[];
  };
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const self = new Map<string, number>();
  let t = prof.startTime;
  let total = 0;
  prof.samples.forEach((id, i) => {
    const dt = prof.timeDeltas[i] ?? 0;
    t += dt;
    if (t < w.from || t > w.to) return;
    const f = byId.get(id)!.callFrame;
    const file = f.url
      ? ` ${f.url.replace(/^.*\/(src|dist|node_modules)\//, '$1/')}:${f.lineNumber + 1}`
      : '';
    const key = `${f.functionName || '(anonymous)'}${file}`;
    self.set(key, (self.get(key) ?? 0) + dt);
    total += dt;
  });
  const lines = [...self]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([what, us]) => ({ what, ms: us / 1000 }));
  return { lines, total: total / 1000 };
}

/** The profile files a profiled run left in `dir`. */
export function profiles(dir: string): string[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.cpuprofile'))
    .map((f) => join(dir, f));
}
