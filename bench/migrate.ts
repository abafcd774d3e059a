/**
 * Migration benchmark: the same guest migrated by QEMU 10.0 (QEMU -> QEMU) and by qmigrate
 * (qmigrate -> qmigrate), interleaved A B A B ..., on this machine, in one run. Reports the
 * median total time, downtime, throughput and each process's peak RSS (VmHWM).
 *   npm run bench -- [--size MiB] [--reps N] [--transport unix|tcp] [--pattern half|zero|random]
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createCipheriv } from 'node:crypto';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { MigrationAddress, MigrationInfo } from '../src/qapi/types.js';
import { QmpClient } from '../src/qmp/client.js';
import { findQemu } from '../test/helpers/qemu.js';

const { values: opt } = parseArgs({
  options: {
    size: { type: 'string', default: '1024' },
    reps: { type: 'string', default: '5' },
    transport: { type: 'string', default: 'unix' },
    pattern: { type: 'string', default: 'half' },
    multifd: { type: 'string', default: '0' },
  },
});
const MiB = Number(opt.size);
const REPS = Number(opt.reps);
const root = fileURLToPath(new URL('..', import.meta.url));
const bin = join(root, 'bin/qmigrate.js');

/** Pages in runs of 256 (1 MiB): random or zero, as the pattern says. */
function writeImage(path: string): void {
  const cipher = createCipheriv('aes-128-ctr', Buffer.alloc(16, 3), Buffer.alloc(16));
  const fd = openSync(path, 'w');
  for (let i = 0; i < MiB; i++) {
    const random = opt.pattern === 'random' || (opt.pattern === 'half' && i % 2 === 0);
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

async function connect(path: string): Promise<QmpClient> {
  for (let i = 0; ; i++) {
    try {
      return await QmpClient.connect(path, { timeout: 1000 });
    } catch (e) {
      if (i > 600) throw e;
      await sleep(25);
    }
  }
}

interface Sample {
  cpuSrc: number;
  cpuDst: number;
  total: number;
  downtime: number;
  transferred: number;
  rssSrc: number;
  rssDst: number;
}

async function once(engine: 'qemu' | 'qmigrate', dir: string, image: string): Promise<Sample> {
  const guest = (img: string) => [
    '-machine',
    'none,memory-backend=m0',
    '-object',
    `memory-backend-file,id=m0,size=${MiB}M,mem-path=${img},share=on`,
    '-m',
    `${MiB}M`,
    '-display',
    'none',
    '-nodefaults',
  ];
  const start = (name: string, img: string, extra: string[]): ChildProcess => {
    const sock = join(dir, `${name}.qmp`);
    const args = [...guest(img), '-qmp', `unix:${sock},server=on,wait=off`, ...extra];
    if (engine === 'qmigrate') return spawn(process.execPath, [bin, 'vm', ...args], { stdio: 'inherit' });
    const q = findQemu('10.0');
    if (!('path' in q)) throw new Error(`QEMU 10.0 not found: ${q.missing}; run npm run setup:qemu`);
    return spawn(q.path, [...q.args, ...args], { env: q.env, stdio: 'inherit' });
  };
  rmSync(join(dir, 'dst.img'), { force: true });
  const srcP = start('src', image, []);
  const dstP = start('dst', join(dir, 'dst.img'), ['-incoming', 'defer']);
  try {
    const src = await connect(join(dir, 'src.qmp'));
    const dst = await connect(join(dir, 'dst.qmp'));
    const addr: MigrationAddress =
      opt.transport === 'tcp'
        ? { transport: 'socket', type: 'inet', host: '127.0.0.1', port: '0' }
        : { transport: 'socket', type: 'unix', path: join(dir, 'mig.sock') };
    await src.migrateSetParameters({ 'max-bandwidth': 0 });
    const channels = Number(opt.multifd);
    if (channels > 0) {
      for (const q of [src, dst]) {
        await q.migrateSetCapabilities({ capabilities: [{ capability: 'multifd', state: true }] });
        await q.migrateSetParameters({ 'multifd-channels': channels });
      }
    }
    await dst.migrateIncoming({ channels: [{ 'channel-type': 'main', addr }] });
    const sa2 = (await dst.queryMigrate())['socket-address']?.[0];
    if (addr.transport === 'socket' && addr.type === 'inet' && sa2?.type === 'inet') addr.port = sa2.port;
    const cpu0 = [cpuSeconds(srcP.pid!), cpuSeconds(dstP.pid!)];
    await src.migrate({ channels: [{ 'channel-type': 'main', addr }] });
    let info: MigrationInfo;
    for (;;) {
      info = await src.queryMigrate();
      if (info.status === 'completed' || info.status === 'failed') break;
      await sleep(5);
    }
    if (info.status !== 'completed') throw new Error(`${engine}: ${info['error-desc']}`);
    for (;;) {
      const d = await dst.queryMigrate();
      if (d.status === 'completed') break;
      if (d.status === 'failed') throw new Error(`${engine} destination: ${d['error-desc']}`);
      await sleep(5);
    }
    const sample = {
      cpuSrc: cpuSeconds(srcP.pid!) - cpu0[0]!,
      cpuDst: cpuSeconds(dstP.pid!) - cpu0[1]!,
      total: Number(info['total-time']),
      downtime: Number(info.downtime),
      transferred: Number(info.ram?.transferred),
      rssSrc: peakRss(srcP.pid!),
      rssDst: peakRss(dstP.pid!),
    };
    await src.close();
    await dst.close();
    return sample;
  } finally {
    srcP.kill('SIGKILL');
    dstP.kill('SIGKILL');
    await Promise.all(
      [srcP, dstP].map((p) => new Promise((r) => (p.exitCode === null ? p.once('exit', r) : r(null)))),
    );
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const base = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
  const dir = mkdtempSync(join(base, 'qmigrate-bench-'));
  try {
    const image = join(dir, 'src.img');
    writeImage(image);
    const runs: Record<'qemu' | 'qmigrate', Sample[]> = { qemu: [], qmigrate: [] };
    // One unrecorded round first: the first migrations after the image is written run up to
    // 3x slower for both engines (fresh tmpfs/anonymous pages), which is noise, not engine.
    for (const e of ['qemu', 'qmigrate'] as const) await once(e, dir, image);
    for (let i = 0; i < REPS; i++) {
      for (const e of ['qemu', 'qmigrate'] as const) {
        const s = await once(e, dir, image);
        runs[e].push(s);
        console.error(
          `${e} #${i + 1}: total ${s.total} ms, downtime ${s.downtime} ms, cpu ${s.cpuSrc.toFixed(2)}/${s.cpuDst.toFixed(2)} s, RSS ${(s.rssSrc / 1048576).toFixed(0)}/${(s.rssDst / 1048576).toFixed(0)} MiB`,
        );
      }
    }
    const row = (e: 'qemu' | 'qmigrate') => {
      const r = runs[e];
      const total = median(r.map((s) => s.total));
      return {
        total,
        downtime: median(r.map((s) => s.downtime)),
        mibps: median(r.map((s) => s.transferred / 1048576 / (s.total / 1000))),
        rssSrc: Math.max(...r.map((s) => s.rssSrc)) / 1048576,
        rssDst: Math.max(...r.map((s) => s.rssDst)) / 1048576,
      };
    };
    const q = row('qemu');
    const m = row('qmigrate');
    const qemuVersion = execFileSync((findQemu('10.0') as { path: string }).path, ['--version'], {
      env: (findQemu('10.0') as { env: NodeJS.ProcessEnv }).env,
      encoding: 'utf8',
    }).split('\n')[0];
    console.log(
      `# ${MiB} MiB guest, ${opt.pattern} pages, ${opt.transport} socket, ${Number(opt.multifd) ? `multifd ${opt.multifd} channels` : 'single channel'}, ${REPS} runs each, interleaved`,
    );
    console.log(
      `# ${cpus().length} cores, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}, ${qemuVersion}`,
    );
    console.log('| engine | total (ms) | downtime (ms) | throughput (MiB/s) | peak RSS src / dst (MiB) |');
    console.log('| --- | --- | --- | --- | --- |');
    for (const [name, r] of [
      ['QEMU 10.0 -> QEMU 10.0', q],
      ['qmigrate -> qmigrate', m],
    ] as const) {
      console.log(
        `| ${name} | ${r.total} | ${r.downtime} | ${r.mibps.toFixed(0)} | ${r.rssSrc.toFixed(0)} / ${r.rssDst.toFixed(0)} |`,
      );
    }
    const rssLimit = 1.2 * MiB + 64;
    console.log(
      `\nratio qmigrate/QEMU total time: ${(m.total / q.total).toFixed(2)} (target <= 0.8); downtime ${m.downtime} vs ${q.downtime} ms (target <=); peak RSS ${Math.max(m.rssSrc, m.rssDst).toFixed(0)} MiB (target <= ${rssLimit.toFixed(0)})`,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
