/**
 * `npm run bench`: the same guests migrated by QEMU 10.0 and by qmigrate on this machine, in
 * one run, interleaved (A B A B ...), and docs/benchmarks.md written from what was measured.
 *   npm run bench -- [--size MiB] [--reps N] [--only REGEX] [--out FILE] [--no-profile] [--no-warmup]
 *   npm run bench:smoke   (64 MiB, one run per row: keeps the harness alive in CI)
 * Sections besides the migration rows: `postcopy` (bench/postcopy.ts) and `analyze`
 * (bench/analyze.ts: reading a saved stream), chosen by --only as the rows' ids are.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, release, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { quantile } from '../test/helpers/monitors.js';
import { findQemu } from '../test/helpers/qemu.js';
import { makePki } from '../test/helpers/tls-certs.js';
import { type AnalyzeResult, analyzeSection, killAnalyzeRuns } from './analyze.js';
import {
  type Engine,
  loadFromFile,
  migrateSocket,
  type Pattern,
  type ProfileLine,
  profiles,
  type Sample,
  saveToFile,
  summarizeProfile,
  type Window,
  writeImage,
} from './harness.js';
import {
  type PostcopyCase,
  type PostcopyEngine,
  type PostcopyMode,
  type PostcopySample,
  postcopyMigration,
} from './postcopy.js';
import { type Bandwidth, socketBandwidth } from './socket-bandwidth.js';

const { values: opt } = parseArgs({
  options: {
    size: { type: 'string' },
    reps: { type: 'string' },
    only: { type: 'string' },
    out: { type: 'string' },
    smoke: { type: 'boolean', default: false },
    'no-profile': { type: 'boolean', default: false },
    'no-warmup': { type: 'boolean', default: false },
    report: { type: 'string' },
  },
});
const root = fileURLToPath(new URL('..', import.meta.url));
const MIB = Number(opt.size ?? (opt.smoke ? 64 : 1024));
const REPS = Number(opt.reps ?? (opt.smoke ? 1 : 3));
const WARMUP = !opt.smoke && !opt['no-warmup'];
const PROFILE = !opt.smoke && !opt['no-profile'];
/** The workload's rate: pages per second (20000 pages = 78 MiB/s dirtied). */
const WORKLOAD = 20000;
/**
 * The postcopy rows: the link (max-bandwidth) well below what either guest dirties, QEMU's
 * default downtime limit, and the time precopy gets before it is called not converging.
 */
const POSTCOPY = {
  bandwidth: 32 << 20,
  downtimeLimitMs: 300,
  precopyTimeoutS: opt.smoke ? 3 : 30,
  workload: WORKLOAD,
};

interface Pair {
  label: string;
  src: Engine;
  dst: Engine;
  /** Runs with the writing workload. */
  workload?: boolean;
  /** The destination's RAM is not preallocated (QEMU's default). */
  lazy?: boolean;
}

interface Row {
  id: string;
  title: string;
  kind: 'socket' | 'save' | 'load';
  pattern: Pattern;
  transport?: 'unix' | 'tcp';
  multifd?: number;
  /** The first pair is the reference the others' ratios are taken against. */
  pairs: Pair[];
  /**
   * Held to targets: single channel (issue 6: 0.8x QEMU's time, downtime, RSS) or multifd
   * (issue 5: 0.8x QEMU's time, faster than one channel). Pairs: QQ, MM, QQlazy.
   */
  targets?: 'single' | 'multifd';
  note?: string;
  /** Measure QMP round trips on both sides while the guest migrates. */
  probe?: boolean;
  /** Over TLS (issue 13: at most 1.0x QEMU's total time), certificates made for the run. */
  tls?: boolean;
}

const QQ: Pair = { label: 'QEMU -> QEMU', src: 'qemu', dst: 'qemu' };
const MM: Pair = { label: 'qmigrate -> qmigrate', src: 'qmigrate', dst: 'qmigrate' };
/** QEMU as it runs by default: its destination faults RAM in while the stream arrives. */
const QQlazy: Pair = { label: 'QEMU -> QEMU, dst not preallocated', src: 'qemu', dst: 'qemu', lazy: true };
const MQ: Pair = { label: 'qmigrate -> QEMU', src: 'qmigrate', dst: 'qemu' };
const QM: Pair = { label: 'QEMU -> qmigrate', src: 'qemu', dst: 'qmigrate' };

function rows(): Row[] {
  const out: Row[] = [];
  for (const transport of ['unix', 'tcp'] as const) {
    for (const pattern of ['zero', 'half', 'random'] as const) {
      out.push({
        id: `${pattern}-${transport}`,
        title: `${pattern}, ${transport}, single channel, idle`,
        kind: 'socket',
        pattern,
        transport,
        pairs: [QQ, MM, QQlazy],
        targets: 'single',
      });
    }
  }
  for (const transport of ['unix', 'tcp'] as const) {
    for (const multifd of [2, 4]) {
      out.push({
        id: `multifd${multifd}-${transport}`,
        title: `half, ${transport}, multifd ${multifd} channels, idle`,
        kind: 'socket',
        pattern: 'half',
        transport,
        multifd,
        pairs: [QQ, MM, QQlazy],
        targets: 'multifd',
      });
    }
  }
  out.push({
    id: 'workload-unix',
    title: `half, unix, single channel, workload writing ${WORKLOAD} pages/s`,
    kind: 'socket',
    pattern: 'half',
    transport: 'unix',
    pairs: [MM, { ...MM, label: 'qmigrate -> qmigrate, workload', workload: true }],
    note: 'QEMU 10.0 cannot run this guest: -machine none has no vCPU, and the Debian build has no qtest accelerator to write guest RAM from outside; the reference is qmigrate idle.',
  });
  out.push({
    id: 'workload-multifd4-tcp',
    title: `half, tcp, multifd 4 channels, workload writing ${WORKLOAD} pages/s`,
    kind: 'socket',
    pattern: 'half',
    transport: 'tcp',
    multifd: 4,
    pairs: [MM, { ...MM, label: 'qmigrate -> qmigrate, workload', workload: true }],
    note: 'As above: the reference is qmigrate idle.',
  });
  for (const [transport, multifd] of [
    ['unix', 0],
    ['tcp', 4],
  ] as const) {
    out.push({
      id: `monitor-${multifd ? `multifd${multifd}-` : ''}${transport}`,
      title: `half, ${transport}, ${multifd ? `multifd ${multifd} channels` : 'single channel'}: QMP round trips during the migration`,
      kind: 'socket',
      pattern: 'half',
      transport,
      multifd,
      pairs: [QQ, MM],
      probe: true,
    });
  }
  for (const multifd of [0, 4]) {
    out.push({
      id: `tls-${multifd ? `multifd${multifd}-` : ''}tcp`,
      title: `half, tcp, ${multifd ? `multifd ${multifd}` : 'single channel'}, TLS`,
      kind: 'socket',
      pattern: 'half',
      transport: 'tcp',
      multifd,
      pairs: [QQ, MM],
      tls: true,
    });
  }
  // A file has one engine on it: the pair's other end is unused.
  const engines: Pair[] = [
    { label: 'QEMU', src: 'qemu', dst: 'qemu' },
    { label: 'qmigrate', src: 'qmigrate', dst: 'qmigrate' },
  ];
  out.push({
    id: 'save-file',
    title: 'half, save to a file (migrate file:)',
    kind: 'save',
    pattern: 'half',
    pairs: engines,
  });
  out.push({
    id: 'load-file',
    title: 'half, load from a file QEMU saved (migrate-incoming file:)',
    kind: 'load',
    pattern: 'half',
    pairs: engines,
  });
  out.push({
    id: 'cross-unix',
    title: 'half, unix, single channel: cross pairs',
    kind: 'socket',
    pattern: 'half',
    transport: 'unix',
    pairs: [QQ, MQ, QM],
  });
  out.push({
    id: 'cross-multifd4-tcp',
    title: 'half, tcp, multifd 4 channels: cross pairs',
    kind: 'socket',
    pattern: 'half',
    transport: 'tcp',
    multifd: 4,
    pairs: [QQ, MQ, QM],
  });
  return out;
}

/** One pair of the postcopy rows and its runs. */
interface PostcopyResult {
  engine: PostcopyEngine;
  mode: PostcopyMode;
  samples: PostcopySample[];
}

const POSTCOPY_ID = 'postcopy';
/** The socket bandwidths measured before the migrations: transport, connections. */
const SOCKETS = [
  ['unix', 1],
  ['unix', 4],
  ['tcp', 1],
  ['tcp', 4],
] as const;
const ANALYZE_ID = 'analyze';

interface Result {
  row: Row;
  samples: Sample[][];
  profile?: { pair: string; lines: { who: string; total: number; lines: ProfileLine[] }[] };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const max = (xs: number[]) => Math.max(...xs);

interface Summary {
  total: number;
  downtime?: number;
  mibps: number;
  cpuSrc?: number;
  cpuDst?: number;
  rssSrc?: number;
  rssDst?: number;
}

function summarize(s: Sample[]): Summary {
  const opt = (f: (x: Sample) => number | undefined, agg = median) =>
    s.every((x) => f(x) !== undefined) ? agg(s.map((x) => f(x)!)) : undefined;
  return {
    total: median(s.map((x) => x.total)),
    downtime: opt((x) => x.downtime),
    mibps: median(s.map((x) => x.bytes / 1048576 / (x.total / 1000))),
    cpuSrc: opt((x) => x.cpuSrc),
    cpuDst: opt((x) => x.cpuDst),
    rssSrc: opt((x) => x.rssSrc, max),
    rssDst: opt((x) => x.rssDst, max),
  };
}

/** The run's certificates (one CA; a dir with QEMU's five files), made on first use. */
let pkiDir: string | undefined;
function tlsCreds(dir: string): string {
  pkiDir ??= makePki(join(dir, 'pki')).both;
  return pkiDir;
}

class Images {
  readonly #dir: string;
  readonly #made = new Set<string>();
  constructor(dir: string) {
    this.#dir = dir;
  }
  /** The image of a pattern, and whether it was just written (its first use is slow). */
  get(pattern: Pattern): { path: string; fresh: boolean } {
    const path = join(this.#dir, `${pattern}.img`);
    const fresh = !this.#made.has(pattern);
    if (fresh) {
      writeImage(path, MIB, pattern);
      this.#made.add(pattern);
    }
    return { path, fresh };
  }
}

async function once(
  row: Row,
  pair: Pair,
  dir: string,
  images: Images,
  profileDir?: string,
): Promise<{ sample: Sample; window: Window }> {
  const image = images.get(row.pattern).path;
  switch (row.kind) {
    case 'socket':
      return migrateSocket(
        {
          src: pair.src,
          dst: pair.dst,
          transport: row.transport!,
          multifd: row.multifd ?? 0,
          workload: pair.workload ? WORKLOAD : 0,
          prealloc: !pair.lazy,
          probe: row.probe,
          tls: row.tls ? tlsCreds(dir) : undefined,
        },
        dir,
        MIB,
        image,
        profileDir,
      );
    case 'save':
      return saveToFile(pair.src, dir, MIB, image, join(dir, 'save.bin'), profileDir);
    case 'load': {
      const file = join(dir, 'qemu-saved.bin');
      if (!existsSync(file)) await saveToFile('qemu', dir, MIB, image, file);
      return loadFromFile(pair.dst, dir, MIB, file, profileDir);
    }
  }
}

const fmt = (v: number | undefined, digits = 0) => (v === undefined ? '–' : v.toFixed(digits));
const mib = (v: number | undefined) => (v === undefined ? '–' : (v / 1048576).toFixed(0));

interface Meta {
  qemuVersion: string;
  started: string;
  command: string;
  mib: number;
  reps: number;
  warmup: boolean;
  machine: string;
}

async function main(): Promise<void> {
  if (opt.report) {
    const saved = JSON.parse(readFileSync(opt.report, 'utf8')) as {
      meta: Meta;
      bandwidth: { name: string; bw: Bandwidth }[];
      results: Result[];
      postcopy?: PostcopyResult[];
      analyze?: AnalyzeResult;
    };
    const doc = report(saved.results, saved.bandwidth, saved.meta, saved.postcopy ?? [], saved.analyze);
    writeFileSync(opt.report.replace(/\.json$/, '.md'), doc);
    console.log(doc);
    return;
  }
  const selected = rows().filter((r) => !opt.only || new RegExp(opt.only).test(r.id));
  const withPostcopy = !opt.only || new RegExp(opt.only).test(POSTCOPY_ID);
  const withAnalyze = !opt.only || new RegExp(opt.only).test(ANALYZE_ID);
  const migrations = selected.length > 0 || withPostcopy;
  if (!migrations && !withAnalyze) throw new Error(`no row matches --only ${opt.only}`);
  const q = findQemu('10.0');
  // The analyze section alone can do without QEMU (qmigrate vm writes its file then, and says so).
  if (!('path' in q) && migrations)
    throw new Error(`QEMU 10.0 not found: ${q.missing}; run npm run setup:qemu`);
  const qemuVersion =
    'path' in q
      ? execFileSync(q.path, [...q.args, '--version'], { env: q.env, encoding: 'utf8' }).split('\n')[0]
      : `no QEMU 10.0 (${q.missing})`;
  const base = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
  const dir = mkdtempSync(join(base, 'qmigrate-bench-'));
  const started = new Date();
  const results: Result[] = [];
  const postcopy: PostcopyResult[] = [];
  let analyze: AnalyzeResult | undefined;
  const bandwidth: { name: string; bw: Bandwidth }[] = [];
  // Ctrl-C or SIGTERM: the temporary directory goes too (its files can be GiBs in /dev/shm).
  const onSignal = (sig: NodeJS.Signals) => {
    killAnalyzeRuns();
    rmSync(dir, { recursive: true, force: true });
    process.exit(sig === 'SIGINT' ? 130 : 143);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    // The sockets' ceiling matters to the migrations only.
    for (const [transport, streams] of migrations ? SOCKETS : []) {
      // The median of REPS runs: a socket's speed varies from run to run as much as a migration's.
      const runs: Bandwidth[] = [];
      for (let i = 0; i < Math.max(REPS, 1); i++)
        runs.push(await socketBandwidth(transport, streams, MIB << 20, dir));
      const bw = [...runs].sort((a, b) => a.ms - b.ms)[Math.floor(runs.length / 2)]!;
      bandwidth.push({ name: `${transport}, ${streams} connection${streams > 1 ? 's' : ''}`, bw });
      console.error(`socket ${transport} x${streams}: ${bw.mibps.toFixed(0)} MiB/s`);
    }
    const images = new Images(dir);
    for (const row of selected) {
      const samples: Sample[][] = row.pairs.map(() => []);
      const fresh = images.get(row.pattern).fresh;
      if (WARMUP || fresh) {
        // An unrecorded round: the first migrations after an image is written run slower for
        // both engines (fresh tmpfs pages), which is noise, not engine.
        for (const pair of row.pairs) await once(row, pair, dir, images);
      }
      for (let i = 0; i < REPS; i++) {
        for (const [k, pair] of row.pairs.entries()) {
          const { sample } = await once(row, pair, dir, images);
          samples[k]!.push(sample);
          console.error(
            `${row.id} ${pair.label} #${i + 1}: ${sample.total} ms, downtime ${fmt(sample.downtime)} ms, cpu ${fmt(sample.cpuSrc, 2)}/${fmt(sample.cpuDst, 2)} s`,
          );
        }
      }
      results.push({ row, samples });
    }
    if (PROFILE) await profileSlowRows(results, bandwidth, dir, images);
    if (withPostcopy) postcopy.push(...(await postcopyRows(dir)));
    if (withAnalyze)
      analyze = await analyzeSection(dir, MIB, REPS, 'path' in q ? undefined : q.missing, (l) =>
        console.error(l),
      );
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    rmSync(dir, { recursive: true, force: true });
  }
  const meta: Meta = {
    qemuVersion: qemuVersion ?? '?',
    started: started.toISOString(),
    command: opt.smoke
      ? 'npm run bench:smoke'
      : `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`,
    mib: MIB,
    reps: REPS,
    warmup: WARMUP,
    machine: `${cpus().length} cores (${cpus()[0]?.model.trim()}), ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Linux ${release()}, Node ${process.version}`,
  };
  const out =
    opt.out ?? (opt.smoke ? join(tmpdir(), 'qmigrate-bench-smoke.md') : join(root, 'docs/benchmarks.md'));
  mkdirSync(join(out, '..'), { recursive: true });
  // The raw samples next to the report: the report can be written again from them (--report).
  writeFileSync(
    `${out.replace(/\.md$/, '')}.json`,
    `${JSON.stringify({ meta, bandwidth, results, postcopy, analyze }, null, 1)}\n`,
  );
  const doc = report(results, bandwidth, meta, postcopy, analyze);
  writeFileSync(out, doc);
  console.log(doc);
  console.error(`written to ${out}`);
  if (opt.smoke) {
    for (const r of results) {
      for (const s of r.samples.flat()) {
        if (!(s.total > 0 && s.bytes > 0))
          throw new Error(`${r.row.id}: implausible sample ${JSON.stringify(s)}`);
      }
    }
    for (const r of postcopy) {
      for (const s of r.samples) {
        // A postcopy run that ran must complete; precopy here must not converge.
        const bad = s.unavailable
          ? false
          : r.mode === 'postcopy'
            ? !s.converged || !(s.total! > 0)
            : s.converged;
        if (bad) throw new Error(`postcopy ${r.engine} ${r.mode}: implausible sample ${JSON.stringify(s)}`);
      }
    }
    for (const t of analyze?.tools ?? []) {
      // Each tool that could run ran every rep (a failed run throws in analyzeSection).
      if (!t.unavailable && (t.runs.length !== REPS || !t.runs.every((r) => r.ms > 0)))
        throw new Error(`analyze ${t.label}: implausible runs ${JSON.stringify(t.runs)}`);
    }
  }
}

/**
 * The postcopy rows, interleaved as the others: for each engine precopy then postcopy, REPS
 * times. A pair that cannot run (its reason in the sample) is not tried again.
 */
async function postcopyRows(dir: string): Promise<PostcopyResult[]> {
  const out: PostcopyResult[] = [];
  for (const engine of ['qemu', 'qmigrate'] as const) {
    for (const mode of ['precopy', 'postcopy'] as const) out.push({ engine, mode, samples: [] });
  }
  for (let i = 0; i < REPS; i++) {
    for (const r of out) {
      if (r.samples[0]?.unavailable) continue;
      const c: PostcopyCase = { engine: r.engine, mode: r.mode, ...POSTCOPY };
      const s = await postcopyMigration(c, dir);
      r.samples.push(s);
      console.error(
        `postcopy ${r.engine} ${r.mode} #${i + 1}: ${s.unavailable ? `not available: ${s.unavailable}` : `${s.converged ? 'completed' : 'did not converge'}, ${fmt(s.total)} ms, downtime ${fmt(s.downtime)} ms, blocked ${fmt(s.blocktime)} ms`}`,
      );
    }
  }
  return out;
}

/** The postcopy section of the report. */
function postcopyReport(results: PostcopyResult[]): string[] {
  if (!results.length) return [];
  const L: string[] = [];
  const p = POSTCOPY;
  L.push('');
  L.push('## Postcopy: a guest that writes faster than the link');
  L.push('');
  L.push(
    `max-bandwidth ${p.bandwidth / 1048576} MiB/s, downtime-limit ${p.downtimeLimitMs} ms, both engines driven by \`runMigration\` (what \`qmigrate migrate\` runs). Precopy gets ${p.precopyTimeoutS} s and is cancelled then (\`--timeout ${p.precopyTimeoutS}\`); postcopy is \`--postcopy\`: the switch once the first pass ended. QEMU 10.0 runs the TCG vCPU guest of test/fixtures/guest/bootblock.asm (128 MiB, it rewrites 99 MiB without pause); qmigrate runs \`-machine none\` with its workload at ${p.workload} pages/s on both sides (the destination's from the switch on). Blocked = the destination's postcopy-blocktime: how long its guest waited on pages it did not have yet. Medians.`,
  );
  L.push('');
  L.push(
    '| engine | mode | result | total (ms) | downtime (ms) | guest blocked (ms) | page requests | sent in postcopy (MiB) |',
  );
  L.push('| --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const r of results) {
    const name =
      r.engine === 'qemu' ? 'QEMU 10.0 -> QEMU 10.0 (vCPU guest)' : 'qmigrate -> qmigrate (workload)';
    const u = r.samples.find((s) => s.unavailable);
    if (u || !r.samples.length) {
      L.push(`| ${name} | ${r.mode} | not available: ${u?.unavailable ?? 'not run'} | | | | | |`);
      continue;
    }
    const conv = r.samples.filter((s) => s.converged).length;
    const med = (f: (s: PostcopySample) => number | undefined) => {
      const xs = r.samples.map(f).filter((x): x is number => x !== undefined);
      return xs.length ? median(xs) : undefined;
    };
    const result =
      conv === r.samples.length
        ? 'completed'
        : conv === 0
          ? `did not converge in ${p.precopyTimeoutS} s`
          : `completed ${conv} of ${r.samples.length}`;
    L.push(
      `| ${name} | ${r.mode} | ${result} | ${conv ? fmt(med((s) => (s.converged ? s.total : undefined))) : '–'} | ${fmt(med((s) => s.downtime))} | ${fmt(med((s) => s.blocktime))} | ${fmt(med((s) => s.requests))} | ${mib(med((s) => s.postcopyBytes))} |`,
    );
  }
  return L;
}

/** The analyze section of the report. */
function analyzeReport(a: AnalyzeResult, reps: number): string[] {
  const mb = (a.fileBytes / 1e6).toFixed(0);
  const fallback = a.fallback
    ? ` **QEMU 10.0 was not available (${a.fallback}), so qmigrate vm wrote the file: \`npm run setup:qemu\` for QEMU's own.**`
    : '';
  const L: string[] = [];
  L.push('');
  L.push('## Reading a saved stream: qmigrate analyze and analyze-migration.py');
  L.push('');
  L.push(
    `The file: a ${a.guestMib} MiB \`-machine none\` guest whose RAM is a third zero pages, a third pages filled with one byte, a third random (test/helpers/guest.ts \`writeMixedImage\`), saved by ${a.writer} with \`migrate\` to \`file:\`: ${a.fileBytes} bytes (${mb} MB).${fallback} Each command read it ${reps} time${reps > 1 ? 's' : ''}, interleaved (A B C D A B C D ...), its standard output to a file; the stream file sits in tmpfs, so no run reads the disk. Time = wall time from spawn to exit (Node's or Python's start included); MB/s = file size / time; peak RSS = ${a.rssBy}. Medians; peak RSS the maximum. The script is QEMU 10.0's own \`scripts/analyze-migration.py\` (\`npm run setup:qemu\` fetches it) under python3; \`-x\` writes each RAM block into its working directory, as \`--dump-ram DIR\` does into DIR.`,
  );
  L.push('');
  L.push('| command | time (ms) | MB/s | peak RSS (MiB) |');
  L.push('| --- | --- | --- | --- |');
  for (const t of a.tools) {
    if (t.unavailable || !t.runs.length) {
      L.push(`| \`${t.command}\` | not run: ${t.unavailable ?? 'no runs'} | | |`);
      continue;
    }
    const ms = median(t.runs.map((r) => r.ms));
    const rss = t.runs.every((r) => r.rss !== undefined) ? max(t.runs.map((r) => r.rss!)) : undefined;
    const mbps = (a.fileBytes / 1e6 / (ms / 1000)).toFixed(0);
    L.push(`| \`${t.command}\` | ${ms.toFixed(0)} | ${mbps} | ${mib(rss)} |`);
  }
  return L;
}

/** One row's line in the targets section. */
function verdict(r: Result, all: Result[], rssLimit: number): string {
  const ref = summarize(r.samples[0]!);
  const m = summarize(r.samples[1]!);
  const lazy = summarize(r.samples[2]!);
  const ratio = m.total / ref.total;
  const miss: string[] = [];
  const met: string[] = [];
  (ratio > 0.8 ? miss : met).push(`time ${ratio.toFixed(2)}x QEMU`);
  if (r.row.targets === 'multifd') {
    const single = all.find(
      (x) => x.row.targets === 'single' && x.row.pattern === 'half' && x.row.transport === r.row.transport,
    );
    if (single) {
      const one = summarize(single.samples[1]!).total;
      (m.total < one ? met : miss).push(`${m.total} ms vs ${one} ms on one channel`);
    }
  } else {
    const rss = Math.max(m.rssSrc ?? 0, m.rssDst ?? 0);
    ((m.downtime ?? 0) > (ref.downtime ?? 0) ? miss : met).push(
      `downtime ${m.downtime} vs ${ref.downtime} ms`,
    );
    (rss > rssLimit ? miss : met).push(`peak RSS ${mib(rss)} MiB`);
  }
  const head = miss.length
    ? `**not met**: ${miss.join('; ')}${met.length ? `; met: ${met.join('; ')}` : ''}`
    : `met: ${met.join('; ')}`;
  return `- ${r.row.title}: ${head}. Against QEMU's default: ${(m.total / lazy.total).toFixed(2)}x.`;
}

/** A TLS row against its goal (issue 13): qmigrate -> qmigrate at most 1.0x QEMU's total time. */
function tlsVerdict(r: Result): string {
  const ref = summarize(r.samples[0]!);
  const m = summarize(r.samples[1]!);
  const ratio = m.total / ref.total;
  const cpu = `CPU s src / dst: qmigrate ${fmt(m.cpuSrc, 2)} / ${fmt(m.cpuDst, 2)}, QEMU ${fmt(ref.cpuSrc, 2)} / ${fmt(ref.cpuDst, 2)}`;
  return `- ${r.row.title}: ${ratio > 1 ? '**not met**' : 'met'}: time ${ratio.toFixed(2)}x QEMU (goal at most 1.0x); ${cpu}.`;
}

/** The bandwidth a row's transport could reach, if measured. */
function ceiling(row: Row, bandwidth: { name: string; bw: Bandwidth }[]): number | undefined {
  if (row.kind !== 'socket') return undefined;
  const streams = row.multifd ? 4 : 1;
  return bandwidth.find((b) => b.name.startsWith(`${row.transport}, ${streams} `))?.bw.mibps;
}

/** Whether qmigrate is slower than the reference, or far (below half) from the socket's ceiling. */
function slow(r: Result, bandwidth: { name: string; bw: Bandwidth }[]): number | undefined {
  const ref = summarize(r.samples[0]!);
  const top = ceiling(r.row, bandwidth);
  for (const [k, pair] of r.row.pairs.entries()) {
    if (pair.src !== 'qmigrate' && pair.dst !== 'qmigrate') continue;
    const s = summarize(r.samples[k]!);
    if (k > 0 && s.total > ref.total) return k;
    if (top && s.mibps < top / 2) return k;
  }
  return undefined;
}

async function profileSlowRows(
  results: Result[],
  bandwidth: { name: string; bw: Bandwidth }[],
  dir: string,
  images: Images,
): Promise<void> {
  for (const r of results) {
    const k = slow(r, bandwidth);
    if (k === undefined) continue;
    const pair = r.row.pairs[k]!;
    const pdir = join(dir, `prof-${r.row.id}`);
    mkdirSync(pdir);
    const { window } = await once(r.row, pair, dir, images, pdir);
    r.profile = {
      pair: pair.label,
      lines: profiles(pdir).map((f) => ({
        who: f.endsWith('src.cpuprofile') ? 'source' : 'destination',
        ...summarizeProfile(f, window),
      })),
    };
    console.error(`profiled ${r.row.id} (${pair.label})`);
  }
}

function report(
  results: Result[],
  bandwidth: { name: string; bw: Bandwidth }[],
  meta: Meta,
  postcopy: PostcopyResult[],
  analyze?: AnalyzeResult,
): string {
  // --only '^analyze$': the section alone, without the migrations' set-up and notes.
  if (!results.length && !bandwidth.length && !postcopy.length && analyze) {
    return [
      "# Benchmarks: reading a saved stream, qmigrate analyze and QEMU 10.0's analyze-migration.py",
      '',
      `Written by \`${meta.command}\` on ${meta.started.slice(0, 10)}; do not edit by hand.`,
      '',
      `Machine: ${meta.machine}, ${meta.qemuVersion}.`,
      ...analyzeReport(analyze, meta.reps),
      '',
    ]
      .join('\n')
      .replaceAll(root, '');
  }
  const MIB = meta.mib;
  const REPS = meta.reps;
  const WARMUP = meta.warmup;
  const rssLimit = (1.2 * MIB + 64) * 1048576;
  const L: string[] = [];
  L.push('# Benchmarks: qmigrate and QEMU 10.0 side by side');
  L.push('');
  L.push(`Written by \`${meta.command}\` on ${meta.started.slice(0, 10)}; do not edit by hand`);
  L.push('(the analysis below comes from `bench/notes.md`).');
  L.push('');
  L.push(`Machine: ${meta.machine}, ${meta.qemuVersion}.`);
  L.push('');
  L.push(
    `Guest: ${MIB} MiB of RAM (\`-machine none\`; the source maps a RAM image with memory-backend-file, the destination has memory-backend-ram with prealloc=on, so both engines have touched its pages before the migration starts, as qmigrate always does on \`-incoming\`; the *not preallocated* pair is QEMU's default, paying those page faults during the migration); zero = all zero, half = 1 MiB runs alternating random and zero, random = all random. Source and destination are processes on this machine, so they share its cores. Each row ran its pairs interleaved (A B A B ...), ${REPS} time${REPS > 1 ? 's' : ''} each${WARMUP ? ', after an unrecorded warm-up round' : ''}; figures are medians, peak RSS the maximum.`,
  );
  L.push('');
  L.push(
    "Total time, downtime and bytes are what the source reports in query-migrate (a load from a file: from `migrate-incoming` to the MIGRATION completed event). Throughput = bytes moved / total time. CPU = user + system seconds of each process between `migrate` and completion (/proc/PID/stat, 10 ms ticks). Peak RSS = VmHWM. Ratio = total time / the first pair's.",
  );
  L.push('');
  L.push('## Socket bandwidth of this machine');
  L.push('');
  L.push(
    `${MIB} MiB from one Node process to another, read straight into a buffer (the ceiling for a Node peer):`,
  );
  L.push('');
  L.push('| socket | time (ms) | MiB/s | CPU s sender / receiver |');
  L.push('| --- | --- | --- | --- |');
  for (const { name, bw } of bandwidth) {
    L.push(
      `| ${name} | ${bw.ms.toFixed(0)} | ${bw.mibps.toFixed(0)} | ${bw.cpuSend.toFixed(2)} / ${bw.cpuRecv.toFixed(2)} |`,
    );
  }
  L.push('');
  L.push('## Migrations');
  L.push('');
  L.push(
    '| row | pair | total (ms) | downtime (ms) | throughput (MiB/s) | CPU s src / dst | peak RSS MiB src / dst | ratio |',
  );
  L.push('| --- | --- | --- | --- | --- | --- | --- | --- |');
  const verdicts: string[] = [];
  for (const r of results) {
    const ref = summarize(r.samples[0]!);
    for (const [k, pair] of r.row.pairs.entries()) {
      const s = summarize(r.samples[k]!);
      const ratio = k === 0 ? '1' : (s.total / ref.total).toFixed(2);
      L.push(
        `| ${k === 0 ? r.row.title : ''} | ${pair.label} | ${s.total} | ${fmt(s.downtime)} | ${s.mibps.toFixed(0)} | ${fmt(s.cpuSrc, 2)} / ${fmt(s.cpuDst, 2)} | ${mib(s.rssSrc)} / ${mib(s.rssDst)} | ${ratio} |`,
      );
    }
    if (r.row.note) L.push(`| | *${r.row.note}* | | | | | | |`);
    if (r.row.targets) verdicts.push(verdict(r, results, rssLimit));
    if (r.row.tls) verdicts.push(tlsVerdict(r));
  }
  const probed = results.filter((r) => r.row.probe);
  if (probed.length) {
    L.push('');
    L.push('## Monitor round trips during a migration');
    L.push('');
    L.push(
      "A second QMP client on each VM sends `query-status` 1 ms after each reply while the guest migrates; round trips in ms over every run of the row. QEMU migrates in a thread apart from its monitor; qmigrate's passes give the event loop back every 5 ms (`src/migration/time-slice.ts`).",
    );
    L.push('');
    L.push('| row | pair | source p50 / p99 / max | destination p50 / p99 / max | round trips |');
    L.push('| --- | --- | --- | --- | --- |');
    for (const r of probed) {
      for (const [k, pair] of r.row.pairs.entries()) {
        const src = r.samples[k]!.flatMap((x) => x.rttSrc ?? []);
        const dst = r.samples[k]!.flatMap((x) => x.rttDst ?? []);
        const q = (xs: number[]) =>
          `${fmt(quantile(xs, 0.5), 1)} / ${fmt(quantile(xs, 0.99), 1)} / ${fmt(quantile(xs, 1), 1)}`;
        L.push(
          `| ${k === 0 ? r.row.title : ''} | ${pair.label} | ${q(src)} | ${q(dst)} | ${src.length} / ${dst.length} |`,
        );
      }
    }
  }
  L.push(...postcopyReport(postcopy));
  L.push('');
  L.push('## Targets');
  L.push('');
  L.push(
    `Single-channel rows (issue 6): qmigrate -> qmigrate at most 0.8x QEMU's total time, downtime at most QEMU's, peak RSS at most 1.2x guest RAM + 64 MiB (${mib(rssLimit)} MiB). Multifd rows (issue 5): at most 0.8x QEMU's time with the same channels, and faster than qmigrate's single channel on the same socket. TLS rows (issue 13): at most 1.0x QEMU's time, both engines with the same certificates (RSA 2048, made by openssl for the run). Each is judged against QEMU with a preallocated destination (the like-for-like reference); the ratio against QEMU as it runs by default follows.`,
  );
  L.push('');
  L.push(...verdicts);
  const profiled = results.filter((r) => r.profile);
  if (profiled.length) {
    L.push('');
    L.push('## Profiles of the rows where qmigrate is slower or below half the socket bandwidth');
    L.push('');
    L.push(
      'One more run under `node --cpu-prof`; self time per function, samples inside the migration only. `(idle)` is time outside JavaScript in the event loop: waiting, but also the socket reads and writes libuv makes between callbacks, so the CPU columns above are the measure of how busy a process was.',
    );
    for (const r of profiled) {
      L.push('');
      L.push(`### ${r.row.title} (${r.profile!.pair})`);
      for (const p of r.profile!.lines) {
        L.push('');
        L.push(`${p.who}: ${p.total.toFixed(0)} ms of samples`);
        L.push('');
        for (const l of p.lines) L.push(`- ${l.ms.toFixed(1)} ms \`${l.what}\``);
      }
    }
  }
  if (analyze) L.push(...analyzeReport(analyze, REPS));
  const notes = join(root, 'bench/notes.md');
  if (existsSync(notes)) {
    L.push('');
    L.push(readFileSync(notes, 'utf8').trim());
  }
  L.push('');
  return L.join('\n').replaceAll(root, '');
}

await main();
