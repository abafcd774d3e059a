/**
 * The `analyze` section of `npm run bench`: one real stream file (QEMU 10.0 `-machine none`
 * saved with `migrate file:`), read by `qmigrate analyze` (with and without --dump-ram) and by
 * QEMU 10.0's own scripts/analyze-migration.py (`-f`, `-x`): wall time and the child's peak RSS.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readSync,
  rmSync,
  statSync,
} from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeMixedImage } from '../test/helpers/guest.js';
import { saveToFile } from './harness.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const bin = join(root, 'bin/qmigrate.js');
const SCRIPT = join(root, '.qemu/10.0-src/scripts/analyze-migration.py');
const GNU_TIME = '/usr/bin/time';
/** A run that takes longer is killed and fails the section (the 1 GiB runs take seconds). */
const RUN_TIMEOUT_MS = 10 * 60_000;

/** One run: wall time in ms, the child's peak RSS in bytes (undefined when not measurable). */
export interface AnalyzeRun {
  ms: number;
  rss?: number;
}

export interface AnalyzeTool {
  label: string;
  /** The command as a user types it (FILE, DIR for the paths). */
  command: string;
  runs: AnalyzeRun[];
  /** Why the tool did not run at all. */
  unavailable?: string;
}

export interface AnalyzeResult {
  /** Who wrote the file: QEMU 10.0, or qmigrate vm when QEMU 10.0 is absent (and why). */
  writer: string;
  fallback?: string;
  guestMib: number;
  fileBytes: number;
  /** How peak RSS was measured. */
  rssBy: string;
  tools: AnalyzeTool[];
}

/** The commands running now (with GNU time, its pid): killed by killAnalyzeRuns. */
const running = new Set<ChildProcess>();

/** Kills what the section is running (and what GNU time started): for a signal handler. */
export function killAnalyzeRuns(): void {
  for (const c of running) kill(c);
}

function kill(c: ChildProcess): void {
  if (c.exitCode !== null || c.signalCode !== null) return;
  for (const pid of childrenOf(c.pid!)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
  c.kill('SIGKILL');
}

/** Children of a process (Linux /proc): the commands GNU time runs. */
function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

/** VmHWM of a live process, bytes (0 once it is gone). */
function vmHwm(pid: number): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/**
 * Runs `cmd` in `cwd` with stdout and stderr to files in `work`, under GNU time when it is
 * there (its %M is the child's peak RSS from wait4), else sampling the child's VmHWM.
 * Killed (with what GNU time started) after RUN_TIMEOUT_MS.
 * @throws {Error} when the command fails or times out, with the end of its stderr.
 */
async function timed(cmd: string[], cwd: string, work: string): Promise<AnalyzeRun> {
  const out = join(work, 'stdout');
  const err = join(work, 'stderr');
  const rssFile = join(work, 'rss');
  rmSync(rssFile, { force: true });
  const gnu = existsSync(GNU_TIME);
  const argv = gnu ? [GNU_TIME, '-f', '%M', '-o', rssFile, '--', ...cmd] : cmd;
  const fds = [openSync(out, 'w'), openSync(err, 'w')];
  let child: ChildProcess;
  const t0 = process.hrtime.bigint();
  try {
    child = spawn(argv[0]!, argv.slice(1), { cwd, stdio: ['ignore', fds[0]!, fds[1]!] });
  } finally {
    for (const fd of fds) closeSync(fd);
  }
  let sampled = 0;
  const sampler = gnu ? undefined : setInterval(() => (sampled = Math.max(sampled, vmHwm(child.pid!))), 10);
  running.add(child);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    kill(child);
  }, RUN_TIMEOUT_MS);
  try {
    const code = await new Promise<number | null>((res, rej) => {
      child.once('error', rej);
      child.once('exit', (c) => res(c));
    });
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    if (code !== 0 || timedOut) {
      const tail = readFileSync(err, 'utf8').trim().split('\n').slice(-3).join(' | ');
      throw new Error(`${cmd.join(' ')}: ${timedOut ? 'timed out' : `exit ${code}`}: ${tail}`);
    }
    const rss = gnu ? Number(readFileSync(rssFile, 'utf8').trim().split('\n').pop()) * 1024 : sampled;
    return { ms, rss: rss > 0 ? rss : undefined };
  } finally {
    clearTimeout(timer);
    if (sampler) clearInterval(sampler);
    kill(child);
    running.delete(child);
  }
}

/** Why QEMU 10.0's analyze-migration.py cannot run here, or undefined when it can. */
function scriptMissing(): string | undefined {
  if (!existsSync(SCRIPT)) return 'scripts/analyze-migration.py of QEMU 10.0 not found (npm run setup:qemu)';
  try {
    execFileSync('python3', ['--version'], { stdio: 'ignore', timeout: 10_000 });
    return undefined;
  } catch {
    return 'python3 not found';
  }
}

interface ToolSpec {
  tool: AnalyzeTool;
  /** The argv for the stream file `file`, output dir `out` (the run's cwd, emptied after). */
  argv: (file: string, out: string) => string[];
  /** Throws when the run's output is not what it should be. */
  check: (out: string, work: string) => void;
}

/**
 * Checks that a RAM dump holds the guest's RAM, read 16 MiB at a time.
 * @throws {Error} when it is missing, of another size, or differs.
 */
function sameContent(path: string, image: string): void {
  if (!existsSync(path)) throw new Error(`${path} was not written`);
  const [n, want] = [statSync(path).size, statSync(image).size];
  if (n !== want) throw new Error(`${path}: ${n} bytes, the guest has ${want}`);
  const [a, b] = [openSync(path, 'r'), openSync(image, 'r')];
  const [x, y] = [Buffer.alloc(16 << 20), Buffer.alloc(16 << 20)];
  try {
    for (let pos = 0; ; pos += x.length) {
      const got = readSync(a, x, 0, x.length, pos);
      readSync(b, y, 0, y.length, pos);
      if (got === 0) return;
      if (!x.subarray(0, got).equals(y.subarray(0, got)))
        throw new Error(`${path} differs from the guest's RAM in the 16 MiB at ${pos}`);
    }
  } finally {
    closeSync(a);
    closeSync(b);
  }
}

/** The tools; `image` is the guest's RAM, what a RAM dump must equal. */
function toolSpecs(mib: number, image: string): ToolSpec[] {
  const bytes = mib << 20;
  // A size alone proves little: the script sizes its file before it reads a page.
  const dumped = (path: string) => sameContent(path, image);
  const missing = scriptMissing();
  return [
    {
      tool: { label: 'qmigrate analyze', command: 'qmigrate analyze FILE', runs: [] },
      argv: (f) => [process.execPath, bin, 'analyze', f],
      check: (_out, work) => {
        const a = JSON.parse(readFileSync(join(work, 'stdout'), 'utf8')) as {
          ram?: { 'total-bytes': number };
        };
        if (a.ram?.['total-bytes'] !== bytes)
          throw new Error(`qmigrate analyze: RAM ${a.ram?.['total-bytes']}`);
      },
    },
    {
      tool: {
        label: 'qmigrate analyze --dump-ram',
        command: 'qmigrate analyze FILE --dump-ram DIR',
        runs: [],
      },
      argv: (f, out) => [process.execPath, bin, 'analyze', f, '--dump-ram', join(out, 'dump')],
      check: (out) => dumped(join(out, 'dump', 'm0')),
    },
    {
      tool: {
        label: 'analyze-migration.py (QEMU 10.0)',
        command: 'python3 analyze-migration.py -f FILE',
        runs: [],
        unavailable: missing,
      },
      argv: (f) => ['python3', SCRIPT, '-f', f],
      check: (_out, work) => {
        const s = JSON.parse(readFileSync(join(work, 'stdout'), 'utf8')) as Record<string, unknown>;
        if (!Object.keys(s).some((k) => k.startsWith('ram (')))
          throw new Error('analyze-migration.py: no ram');
      },
    },
    {
      tool: {
        label: 'analyze-migration.py -x (QEMU 10.0)',
        command: 'python3 analyze-migration.py -x -f FILE (in DIR)',
        runs: [],
        unavailable: missing,
      },
      argv: (f) => ['python3', SCRIPT, '-x', '-f', f],
      check: (out) => dumped(join(out, 'm0')),
    },
  ];
}

/**
 * The section: the stream file written in a directory of its own under `dir`, then each tool
 * on it `reps` times, interleaved (A B C D A B C D ...). Everything it wrote is removed on
 * every path.
 * @param qemuMissing why QEMU 10.0 cannot run, or undefined: then qmigrate vm writes the file.
 * @throws {Error} when a tool fails on the file or its output is wrong.
 */
export async function analyzeSection(
  dir: string,
  mib: number,
  reps: number,
  qemuMissing: string | undefined,
  log: (line: string) => void,
): Promise<AnalyzeResult> {
  const sub = mkdtempSync(join(dir, 'analyze-'));
  try {
    const image = join(sub, 'ram.img');
    writeMixedImage(image, mib << 20);
    const file = join(sub, 'saved.mig');
    const engine = qemuMissing ? 'qmigrate' : 'qemu';
    await saveToFile(engine, sub, mib, image, file);
    const fileBytes = statSync(file).size;
    log(`analyze: ${fileBytes} bytes written by ${engine}`);
    const specs = toolSpecs(mib, image);
    const work = join(sub, 'work');
    mkdirSync(work);
    for (let i = 0; i < reps; i++) {
      for (const s of specs) {
        if (s.tool.unavailable) continue;
        const out = join(sub, 'out');
        mkdirSync(out);
        try {
          const run = await timed(s.argv(file, out), out, work);
          s.check(out, work);
          s.tool.runs.push(run);
          log(
            `analyze ${s.tool.label} #${i + 1}: ${run.ms.toFixed(0)} ms, peak RSS ${((run.rss ?? 0) / 1048576).toFixed(0)} MiB`,
          );
        } finally {
          rmSync(out, { recursive: true, force: true });
        }
      }
    }
    return {
      writer: qemuMissing ? 'qmigrate vm' : 'QEMU 10.0',
      fallback: qemuMissing,
      guestMib: mib,
      fileBytes,
      rssBy: existsSync(GNU_TIME)
        ? 'GNU time (%M: maxrss from wait4)'
        : "the child's VmHWM, sampled every 10 ms",
      tools: specs.map((s) => s.tool),
    };
  } finally {
    rmSync(sub, { recursive: true, force: true });
  }
}
