/**
 * How a migration driven between two monitors looks to a person: the live line for a
 * terminal, the plain line for a log, the final report, and a smoothed ETA. Pure functions
 * over the shapes in types.ts; the numbers are QEMU's query-migrate counters
 * (qapi/migration.json MigrationStats), as `info migrate` in QEMU's migration-hmp-cmds.c
 * prints them, but on one line.
 */
import type { MigrationReport, ProgressSample } from './types.js';

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'] as const;

/** Bytes in IEC units with one decimal (`412.0 MiB`, `1.0 GiB`); plain bytes below 1 KiB. */
export function formatBytes(bytes: number): string {
  let v = bytes;
  let u = 0;
  // 1023.96 MiB would print as "1024.0 MiB": move up while the rounded value reaches 1024.
  while (u < UNITS.length - 1 && Math.round(v * 10) / 10 >= 1024) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${Math.round(v)} B` : `${v.toFixed(1)} ${UNITS[u]}`;
}

/** A rate of bytes per second in MiB/s with one decimal (`112.3 MiB/s`). */
export function formatThroughput(bytesPerS: number): string {
  return `${(bytesPerS / 2 ** 20).toFixed(1)} MiB/s`;
}

/** Whole seconds as `mm:ss` (`h:mm:ss` from an hour on); `--:--` when undefined. */
export function formatEta(seconds: number | undefined): string {
  if (seconds === undefined || !Number.isFinite(seconds) || seconds < 0) return '--:--';
  const s = Math.ceil(seconds);
  const two = (n: number) => String(n).padStart(2, '0');
  const h = Math.floor(s / 3600);
  const mmss = `${two(Math.floor((s % 3600) / 60))}:${two(s % 60)}`;
  return h > 0 ? `${h}:${mmss}` : mmss;
}

/** Milliseconds as `850 ms` below 10 s, else seconds with one decimal (`12.3 s`). */
export function formatMs(ms: number): string {
  return ms < 10_000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

/**
 * The bytes: sent of the guest's RAM during the first pass (`412.0 MiB / 1.0 GiB`); from the
 * second on, when more than the RAM has been sent, what was sent and what is dirty again
 * (`1.2 GiB sent, 12.0 MiB dirty`), which is what decides the end.
 */
function bytesText(sample: ProgressSample): string {
  if (sample.pass <= 1 && sample.transferred <= sample.total) {
    return `${formatBytes(sample.transferred)} / ${formatBytes(sample.total)}`;
  }
  // In postcopy nothing is dirtied any more: what remains are the pages not sent yet.
  if (sample.status.startsWith('postcopy'))
    return `${formatBytes(sample.transferred)} sent, ${formatBytes(sample.remaining)} to go`;
  return `${formatBytes(sample.transferred)} sent, ${formatBytes(sample.remaining)} dirty`;
}

/** The percent shown: floored, so 100% appears only once nothing remains. */
function percentText(sample: ProgressSample): string {
  return sample.percent === undefined ? '--%' : `${Math.floor(sample.percent)}%`;
}

/**
 * The fields of a progress line in display order, each with its rank: 0 is kept longest.
 * The status and percent say whether it works at all, the ETA when it ends, the bytes how
 * far; the rest explains why it is slow.
 */
function fields(sample: ProgressSample): { text: string; rank: number }[] {
  const f = [
    { text: `${sample.status} ${percentText(sample)}`, rank: 0 },
    { text: bytesText(sample), rank: 2 },
    { text: formatThroughput(sample.throughput), rank: 3 },
    { text: `dirty ${Math.round(sample.dirtyPagesRate)} pages/s`, rank: 5 },
    { text: `pass ${sample.pass}`, rank: 4 },
  ];
  if (sample.expectedDowntimeMs !== undefined) {
    f.push({ text: `downtime ~${formatMs(sample.expectedDowntimeMs)}`, rank: 6 });
  }
  if (sample.postcopyRequests !== undefined)
    f.push({ text: `${sample.postcopyRequests} page requests`, rank: 3 });
  f.push({ text: `ETA ${formatEta(sample.etaS)}`, rank: 1 });
  return f;
}

/**
 * One line for a terminal, e.g.
 * `active 40%  412.0 MiB / 1.0 GiB  112.3 MiB/s  dirty 1200 pages/s  pass 3  downtime ~300 ms  ETA 00:06`.
 * Fits `width` columns: the least important fields go first (expected downtime, dirty rate,
 * pass, throughput, bytes, ETA); what still does not fit is cut.
 * @param width columns of the terminal (default 80).
 */
export function formatProgressLine(sample: ProgressSample, { width = 80 }: { width?: number } = {}): string {
  const all = fields(sample);
  for (let keep = 6; keep >= 0; keep--) {
    const line = all
      .filter((f) => f.rank <= keep)
      .map((f) => f.text)
      .join('  ');
    if (line.length <= width || keep === 0) return line.slice(0, Math.max(0, width));
  }
  return '';
}

/**
 * The same for a log, one a second when the output is not a terminal: every field, a stable
 * order, the time since `migrate` instead of a clock, e.g.
 * `[12.0 s] active 40%, 412.0 MiB / 1.0 GiB, 112.3 MiB/s, dirty 1200 pages/s, pass 3, expected downtime 300 ms, ETA 00:06`.
 */
export function formatPlainLine(sample: ProgressSample): string {
  const parts = [
    `${sample.status} ${percentText(sample)}`,
    bytesText(sample),
    formatThroughput(sample.throughput),
    `dirty ${Math.round(sample.dirtyPagesRate)} pages/s`,
    `pass ${sample.pass}`,
  ];
  if (sample.expectedDowntimeMs !== undefined) {
    parts.push(`expected downtime ${formatMs(sample.expectedDowntimeMs)}`);
  }
  if (sample.postcopyRequests !== undefined) {
    parts.push(
      `postcopy ${formatBytes(sample.postcopyBytes ?? 0)}, ${sample.postcopyRequests} page requests`,
    );
  }
  parts.push(`ETA ${formatEta(sample.etaS)}`);
  return `[${(sample.elapsedMs / 1000).toFixed(1)} s] ${parts.join(', ')}`;
}

/** Why qmigrate ended it, in words; undefined when QEMU did. */
function endedByText(report: MigrationReport): string | undefined {
  // Not 'cancelled': postcopy cannot be, the report's reason says what happened.
  if (report.status === 'postcopy-active' || report.status === 'postcopy-paused') return undefined;
  switch (report.endedBy) {
    case 'timeout-cancel':
      return 'the timeout passed and the migration was cancelled (--on-timeout cancel)';
    case 'timeout-pause':
      return "the timeout passed and the source's guest was paused so the migration could converge (--on-timeout pause)";
    case 'interrupt':
      return 'interrupted: the migration was cancelled';
    default:
      return undefined;
  }
}

/** What happened to the guest, which is what the person asking cares about most. */
function guestLine(report: MigrationReport): string {
  if (report.status === 'postcopy-paused')
    return `the guest is on the destination (run state '${report.destinationRunState}'), blocked on missing pages until the migration is resumed`;
  if (report.status === 'postcopy-active')
    return `the guest runs on the destination (run state '${report.destinationRunState}'); the source still sends it pages`;
  if (report.status === 'completed') {
    const dst = report.destinationRunState;
    if (dst === undefined) return 'the guest is on the destination';
    return dst === 'running'
      ? 'the guest runs on the destination'
      : `the guest is on the destination, whose run state is '${dst}'`;
  }
  return report.sourceRunState === 'running'
    ? "the source's guest is still running"
    : `the source's guest is NOT running: its run state is '${report.sourceRunState}'`;
}

/** The counters line: bytes, throughput, passes and pages, as far as they are known. */
function countersLine(report: MigrationReport): string | undefined {
  const parts: string[] = [];
  if (report.transferred !== undefined) {
    parts.push(
      report.throughput === undefined
        ? `${formatBytes(report.transferred)} sent`
        : `${formatBytes(report.transferred)} sent at ${formatThroughput(report.throughput)}`,
    );
  }
  if (report.passes !== undefined) parts.push(`${report.passes} ${report.passes === 1 ? 'pass' : 'passes'}`);
  if (report.pages) parts.push(`pages: ${report.pages.normal} normal, ${report.pages.duplicate} zero`);
  return parts.length ? parts.join(', ') : undefined;
}

const STARTED_BY = {
  passes: 'after precopy passes that did not converge',
  timeout: 'at the timeout (--on-timeout postcopy)',
  request: 'on request',
  resume: 'resumed after a pause',
} as const;

/**
 * The postcopy line, e.g. `postcopy: switched after precopy passes that did not converge at
 * 8.0 s, 99.4 MiB sent in postcopy, 516 page requests, guest blocked 14.1 s on missing pages`.
 */
export function postcopyLine(report: MigrationReport): string | undefined {
  const p = report.postcopy;
  if (!p) return undefined;
  let head =
    p.startedBy === 'resume'
      ? `postcopy ${STARTED_BY.resume}`
      : `postcopy: switched ${STARTED_BY[p.startedBy]}`;
  if (p.startedAtMs !== undefined) head += ` at ${formatMs(p.startedAtMs)}`;
  const parts = [head];
  if (p.bytes !== undefined) parts.push(`${formatBytes(p.bytes)} sent in postcopy`);
  if (p.requests !== undefined) parts.push(`${p.requests} page requests`);
  if (p.blocktimeMs !== undefined) parts.push(`guest blocked ${formatMs(p.blocktimeMs)} on missing pages`);
  return parts.join(', ');
}

/**
 * The final report as lines of text: the outcome and times, the counters, then where the
 * guest is, and the orchestrator's warnings last. A migration that did not complete says why
 * and that the source's guest is still running (or loudly, that it is not), e.g.
 *
 *     migration completed in 12.3 s (setup 5 ms, downtime 1 ms)
 *       1.0 GiB sent at 83.2 MiB/s, 4 passes, pages: 262144 normal, 0 zero
 *       the guest runs on the destination
 */
export function formatReport(report: MigrationReport): string[] {
  const times: string[] = [];
  if (report.setupTimeMs !== undefined) times.push(`setup ${formatMs(report.setupTimeMs)}`);
  if (report.downtimeMs !== undefined) times.push(`downtime ${formatMs(report.downtimeMs)}`);
  let head = `migration ${report.status}`;
  if (report.totalTimeMs !== undefined) {
    head += ` ${report.status === 'completed' ? 'in' : 'after'} ${formatMs(report.totalTimeMs)}`;
  }
  if (times.length) head += ` (${times.join(', ')})`;
  const endedBy = endedByText(report);
  const why = endedBy ?? report.reason;
  if (report.status !== 'completed' && why) head += `: ${why}`;
  const lines = [head];
  if (report.status === 'completed' && report.endedBy === 'timeout-pause') lines.push(`  ${endedBy}`);
  // The reason below the headline only when the headline said what ended it instead (in
  // postcopy, which nothing cancels, the headline has the reason itself).
  if (report.status !== 'completed' && report.reason && endedBy) lines.push(`  ${report.reason}`);
  const counters = countersLine(report);
  if (counters) lines.push(`  ${counters}`);
  const postcopy = postcopyLine(report);
  if (postcopy) lines.push(`  ${postcopy}`);
  lines.push(`  ${guestLine(report)}`);
  for (const w of report.warnings ?? []) lines.push(`  warning: ${w}`);
  return lines;
}

/** QEMU's target page on x86 (TARGET_PAGE_SIZE): dirty rates are in pages of it. */
export const PAGE_SIZE = 4096;

/** Seconds of samples (decayed) the ETA needs before it says anything. */
const MIN_SEEN_S = 1;

/**
 * A smoothed ETA: time-weighted averages of throughput and dirty rate (each sample weighs the
 * seconds since the one before, and older ones fade with a time constant of `tauS`), and the
 * bytes still dirty divided by what each second gains on them (throughput minus dirty rate x
 * page size). Undefined while that gain is not positive, i.e. while the migration does not
 * converge. The first sample, taken as `migrate` starts, covers no time: its burst into the
 * socket's buffers counts for nothing, and there is no ETA before about a second has been
 * seen. The orchestrator's own `etaS` is from one sample only;
 * the CLI shows this one so the line does not jump.
 */
export class EtaEstimator {
  #weight = 0;
  #throughput = 0;
  #dirty = 0;
  #lastMs = 0;
  readonly #tauS: number;
  readonly #pageSize: number;

  constructor({ tauS = 3, pageSize = PAGE_SIZE }: { tauS?: number; pageSize?: number } = {}) {
    this.#tauS = tauS;
    this.#pageSize = pageSize;
  }

  /** Takes a sample and returns the ETA in seconds after it; undefined if not converging. */
  update(sample: ProgressSample): number | undefined {
    const dt = Math.max(0, (sample.elapsedMs - this.#lastMs) / 1000);
    this.#lastMs = Math.max(this.#lastMs, sample.elapsedMs);
    const fade = Math.exp(-dt / this.#tauS);
    this.#weight = this.#weight * fade + dt;
    this.#throughput = this.#throughput * fade + dt * sample.throughput;
    this.#dirty = this.#dirty * fade + dt * sample.dirtyPagesRate;
    if (sample.status === 'completed') return 0;
    // A migration that is ending otherwise has no ETA (not 00:00 for a cancelled one).
    if (['cancelling', 'cancelled', 'failed'].includes(sample.status)) return undefined;
    // Nothing moved since the last sample (a stalled peer): the faded average stays above 0
    // and the ETA would grow without end (120482:16:54 after a minute), so none is shown.
    if (sample.throughput === 0 && sample.remaining > 0) return undefined;
    // Before a second has been seen (set-up, the first window) a rate says little: an ETA of
    // hours from 67 bytes in half a second would mislead more than none.
    if (this.#weight < MIN_SEEN_S) return undefined;
    const gain = (this.#throughput - this.#dirty * this.#pageSize) / this.#weight;
    if (!(gain > 0)) return undefined;
    return sample.remaining / gain;
  }
}
