/**
 * One migration as a self-contained HTML page (`qmigrate migrate --report FILE.html`, and the
 * demo's): charts over time of throughput and dirty bytes, remaining bytes, the dirty-page
 * rate and the pass, with the downtime window and the postcopy phase marked on each, then the
 * final report, the events and the command. Inline CSS and SVG only: no script, no network,
 * no font to fetch. The counters are QEMU's query-migrate (qapi/migration.json MigrationStats).
 */

import {
  formatBytes,
  formatMs,
  formatReport,
  formatThroughput,
  PAGE_SIZE,
  postcopyLine,
} from './progress.js';
import { type ChartMarker, type ChartSpan, downsample, escapeHtml, renderChart } from './report-chart.js';
import type { MigrationEventSample, MigrationReport, ProgressSample } from './types.js';

/** What the page shows: the run's samples and events as they came, and how it ended. */
export interface ReportPageInput {
  /** The command as run, e.g. `qmigrate migrate --from ... --to ...`. */
  command: string;
  /** Named facts of the run shown under the title (the monitors, the stream's address). */
  facts?: { name: string; value: string }[];
  /** When the run started (shown as the page's date; x = 0 is when `migrate` was sent). */
  startedAt: Date;
  samples: readonly ProgressSample[];
  events: readonly MigrationEventSample[];
  /** Events left out of `events` before it came here (a recorder bounding a long run's). */
  eventsDropped?: number;
  /** The final report; undefined when the run ended without one (see `error`). */
  report?: MigrationReport;
  /** How the run ended when it has no report: a monitor lost, a preflight refusal, an interrupt. */
  error?: string;
  /** Bytes per page, for the dirty bytes (default: x86's 4096). */
  pageSize?: number;
}

/** Points drawn per series at most: a one-hour migration makes a page of bounded size. */
export const MAX_POINTS = 800;
/** Events listed at most (the first and the last ones). */
export const MAX_EVENTS = 400;
/** Characters kept of one text put in the page (a reason, a warning). */
const MAX_TEXT = 8000;

const MiB = 2 ** 20;

const COLOR = {
  throughput: '#2563eb',
  dirty: '#ea580c',
  remaining: '#7c3aed',
  pass: '#334155',
  downtime: '#dc2626',
  postcopy: '#0891b2',
  paused: '#64748b',
};

/** Escapes, and shortens what would swell the page (a QEMU error-desc is any length). */
function text(s: string): string {
  return escapeHtml(
    s.length > MAX_TEXT ? `${s.slice(0, MAX_TEXT)}... (${s.length - MAX_TEXT} more characters)` : s,
  );
}

/** The times that shape the charts, in seconds since `migrate`. */
interface Timeline {
  endS: number;
  /** The source's guest stopped by --on-timeout pause, to the switchover. */
  paused?: ChartSpan;
  downtime?: ChartSpan;
  postcopy?: ChartSpan;
  passes: ChartMarker[];
}

/** The first event of `side` whose status is one of `statuses`, in seconds. */
function statusAt(
  events: readonly MigrationEventSample[],
  side: string,
  statuses: string[],
): number | undefined {
  const e = events.find(
    (e) => e.side === side && e.event === 'MIGRATION' && statuses.includes(String(e.data.status)),
  );
  return e === undefined ? undefined : e.elapsedMs / 1000;
}

/**
 * The downtime window: from the source stopping its guest (QEMU's migration_completion in
 * migration/migration.c stops the VM, then moves to `pre-switchover` or `device`: the first
 * MIGRATION event of those) to the destination's `completed` (its guest may run). QEMU's own
 * downtime ends earlier, where the source completes; the tag says the reported figure.
 * Without those events: the reported downtime, ending where the source completed. In
 * postcopy the guest starts on the destination at the switch: the reported downtime from the
 * source's `postcopy-active`.
 */
function downtimeSpan(input: ReportPageInput, postcopyAt: number | undefined): ChartSpan | undefined {
  const ev = input.events;
  const reported = input.report?.downtimeMs;
  const said = reported === undefined ? '' : ` (QEMU reports ${formatMs(reported)})`;
  const span = (startS: number, endS: number, what: string): ChartSpan => ({
    id: 'downtime',
    startS,
    endS: Math.max(startS, endS),
    color: COLOR.downtime,
    opacity: 0.28,
    label: `downtime: ${what}${said}`,
    tag: `downtime ${formatMs(reported ?? Math.max(0, endS - startS) * 1000)}`,
    tagSide: postcopyAt === undefined ? undefined : 'left',
  });
  if (postcopyAt !== undefined) {
    return span(postcopyAt, postcopyAt + (reported ?? 0) / 1000, 'the switch to postcopy');
  }
  const stop = statusAt(ev, 'source', ['pre-switchover', 'device']);
  const srcDone = statusAt(ev, 'source', ['completed']);
  const dstDone = statusAt(ev, 'destination', ['completed']);
  if (stop !== undefined) {
    const end = dstDone ?? srcDone ?? stop + (reported ?? 0) / 1000;
    return span(stop, end, 'from the source stopping its guest to the destination completing');
  }
  const end = srcDone ?? (input.report?.totalTimeMs ?? 0) / 1000;
  if (reported === undefined || input.report?.status !== 'completed') return undefined;
  return span(end - reported / 1000, end, 'the reported downtime, ending where the source completed');
}

/** Where the passes begin: MIGRATION_PASS events, else the samples' dirty-sync-count. */
function passMarkers(input: ReportPageInput, endS: number): ChartMarker[] {
  // Passes closer than 1% of the chart share one marker ('pass 3-4'): labels would overlap.
  const merged: ChartMarker[] = [];
  for (const m of passStarts(input)) {
    const last = merged[merged.length - 1];
    if (last && m.atS - last.atS < endS / 100) {
      last.label = `${last.label.replace(/-\d+$/, '')}-${m.label.replace('pass ', '')}`;
    } else merged.push({ ...m });
  }
  return merged;
}

/** Each pass after the first as it began, before markers close together are merged. */
function passStarts(input: ReportPageInput): ChartMarker[] {
  const fromEvents = input.events
    .filter((e) => e.side === 'source' && e.event === 'MIGRATION_PASS' && typeof e.data.pass === 'number')
    .map((e) => ({ atS: e.elapsedMs / 1000, label: `pass ${e.data.pass}` }));
  if (fromEvents.length > 0) return fromEvents.filter((m) => m.label !== 'pass 1');
  const out: ChartMarker[] = [];
  let last = 1;
  for (const s of input.samples) {
    if (s.pass > last) out.push({ atS: s.elapsedMs / 1000, label: `pass ${s.pass}` });
    last = Math.max(last, s.pass);
  }
  return out;
}

/** The x axis's end, the spans and the pass markers. */
function timelineOf(input: ReportPageInput): Timeline {
  // A reduce, not Math.max(...): a day of samples is more arguments than a call takes.
  const last = (items: readonly { elapsedMs: number }[]) =>
    items.reduce((m, i) => Math.max(m, i.elapsedMs), 0);
  const endS = Math.max(100, last(input.samples), last(input.events), input.report?.totalTimeMs ?? 0) / 1000;
  const pcSample = input.samples.find((s) => s.status.startsWith('postcopy'));
  const pcStartS =
    statusAt(input.events, 'source', ['postcopy-active']) ??
    (pcSample === undefined ? undefined : pcSample.elapsedMs / 1000);
  const pcEnd = statusAt(input.events, 'source', ['completed', 'failed', 'postcopy-paused']) ?? endS;
  const postcopy: ChartSpan | undefined =
    pcStartS === undefined
      ? undefined
      : {
          id: 'postcopy',
          startS: pcStartS,
          endS: Math.max(pcStartS, pcEnd),
          color: COLOR.postcopy,
          opacity: 0.12,
          label: 'postcopy: the guest runs on the destination, which pulls the pages it lacks',
          tag: 'postcopy',
          tagSide: 'right',
        };
  return {
    endS,
    paused: pausedSpan(input, endS),
    downtime: downtimeSpan(input, pcStartS),
    postcopy,
    passes: passMarkers(input, endS),
  };
}

/**
 * Where --on-timeout pause kept the source's guest stopped: from the policy's `stop` to the
 * switchover (the source's `device`), or to the end when it never got there. QEMU's downtime
 * counts from the switchover only: the guest did not run for this whole span.
 */
function pausedSpan(input: ReportPageInput, endS: number): ChartSpan | undefined {
  const at = input.report?.pausedAtMs;
  if (at === undefined) return undefined;
  const startS = at / 1000;
  const stop = statusAt(input.events, 'source', ['pre-switchover', 'device']);
  const untilS = Math.max(startS, stop ?? endS);
  return {
    id: 'paused',
    startS,
    endS: untilS,
    color: COLOR.paused,
    opacity: 0.14,
    label: `the source's guest paused by --on-timeout pause, ${stop === undefined ? 'to the end' : 'to the switchover'}: it did not run, though QEMU's downtime counts from the switchover only`,
    tag: `guest paused ${formatMs((untilS - startS) * 1000)}`,
    tagSide: 'left',
  };
}

/**
 * The samples with RAM counters. query-migrate has none in setup, cancelled or failed (QEMU
 * fills them only once the migration is active), and the orchestrator's sample then says 0
 * for each: drawn, they would show the remaining bytes dropping to nothing as a run is
 * cancelled.
 */
function withRam(samples: readonly ProgressSample[]): ProgressSample[] {
  return samples.filter((s) => s.total > 0);
}

/** The points of one counter of the samples, in seconds and the chart's unit. */
function pointsOf(
  samples: readonly ProgressSample[],
  value: (s: ProgressSample) => number,
): [number, number][] {
  return downsample(
    samples.map((s): [number, number] => [s.elapsedMs / 1000, value(s)]),
    MAX_POINTS,
  );
}

/**
 * The pass over time: the samples' dirty-sync-count and the source's MIGRATION_PASS events
 * (which come as a pass begins, between two samples), never going back.
 */
function passPoints(input: ReportPageInput): [number, number][] {
  const all = [
    ...withRam(input.samples).map((s): [number, number] => [s.elapsedMs / 1000, s.pass]),
    ...input.events
      .filter((e) => e.side === 'source' && e.event === 'MIGRATION_PASS' && typeof e.data.pass === 'number')
      .map((e): [number, number] => [e.elapsedMs / 1000, e.data.pass as number]),
  ].sort((a, b) => a[0] - b[0]);
  let high = 0;
  const points = all.map(([t, p]): [number, number] => {
    high = Math.max(high, p);
    return [t, high];
  });
  return downsample(points, MAX_POINTS);
}

/** A chart with its title, what it shows, its legend and the SVG. */
function chartBlock(title: string, about: string, svg: string, legend: [string, string, string][]): string {
  const items = legend
    .map(
      ([cls, color, name]) =>
        `<span class="key"><i class="swatch ${cls}" style="background:${escapeHtml(color)}"></i>${escapeHtml(name)}</span>`,
    )
    .join('');
  return `<section class="chart-block"><h2>${escapeHtml(title)}</h2><p class="about">${about}</p><div class="legend">${items}</div>${svg}</section>`;
}

/** The marks every chart's legend ends with: downtime, postcopy, passes, as far as they exist. */
function markLegend(tl: Timeline): [string, string, string][] {
  const out: [string, string, string][] = [];
  if (tl.paused) out.push(['band', COLOR.paused, 'guest paused (--on-timeout pause)']);
  if (tl.downtime) out.push(['band', COLOR.downtime, 'downtime']);
  if (tl.postcopy) out.push(['band', COLOR.postcopy, 'postcopy']);
  if (tl.passes.length) out.push(['marker', '#94a3b8', 'a pass begins']);
  return out;
}

/** The name of the dirty bytes series, which says how they are counted. */
const dirtyName = (page: number) => `dirty bytes/s (dirty-pages-rate x ${page} B)`;

/** The four charts' SVGs over the same time axis, with the same spans and markers. */
function chartSvgs(input: ReportPageInput, tl: Timeline) {
  const page = input.pageSize ?? PAGE_SIZE;
  const common = {
    endS: tl.endS,
    spans: [tl.paused, tl.postcopy, tl.downtime].filter((s) => s !== undefined),
    markers: tl.passes,
  };
  const s = withRam(input.samples);
  const rate = renderChart({
    ...common,
    id: 'throughput',
    unit: 'MiB/s',
    clipPeaks: true,
    series: [
      {
        id: 'throughput',
        name: 'throughput',
        color: COLOR.throughput,
        step: 'before',
        points: pointsOf(s, (x) => x.throughput / MiB),
      },
      {
        id: 'dirty-bytes',
        name: dirtyName(page),
        color: COLOR.dirty,
        step: 'after',
        points: pointsOf(s, (x) => (x.dirtyPagesRate * page) / MiB),
      },
    ],
  });
  const remaining = renderChart({
    ...common,
    id: 'remaining',
    unit: 'MiB',
    series: [
      {
        id: 'remaining',
        name: 'remaining',
        color: COLOR.remaining,
        points: pointsOf(s, (x) => x.remaining / MiB),
      },
    ],
  });
  const dirtyRate = renderChart({
    ...common,
    id: 'dirty-pages-rate',
    unit: 'pages/s',
    integer: true,
    series: [
      {
        id: 'dirty-pages-rate',
        name: 'dirty-pages-rate',
        color: COLOR.dirty,
        step: 'after',
        points: pointsOf(s, (x) => x.dirtyPagesRate),
      },
    ],
  });
  const pass = renderChart({
    ...common,
    id: 'pass',
    unit: 'pass',
    height: 140,
    integer: true,
    series: [{ id: 'pass', name: 'pass', color: COLOR.pass, step: 'after', points: passPoints(input) }],
  });
  return { rate, remaining, dirtyRate, pass };
}

/** The four charts over time, each with its title, what it shows and its legend. */
function charts(input: ReportPageInput, tl: Timeline): string {
  const page = input.pageSize ?? PAGE_SIZE;
  const { rate, remaining, dirtyRate, pass } = chartSvgs(input, tl);
  const marks = markLegend(tl);
  return [
    chartBlock(
      'Throughput and dirty bytes',
      `Bytes sent per second, averaged between two samples, against the bytes the guest dirties per second (QEMU's <code>dirty-pages-rate</code> times the ${page}-byte page). Precopy converges while the blue line is above the orange one.`,
      rate,
      [['line', COLOR.throughput, 'throughput'], ['line', COLOR.dirty, dirtyName(page)], ...marks],
    ),
    chartBlock(
      'Remaining',
      "QEMU's <code>ram.remaining</code>: the bytes still to send, the whole RAM at first, then what the guest dirtied during the last pass.",
      remaining,
      [['line', COLOR.remaining, 'remaining'], ...marks],
    ),
    chartBlock(
      'Dirty-page rate',
      "QEMU's <code>dirty-pages-rate</code>: pages the guest dirties per second, measured at each dirty-bitmap sync (0 in postcopy: the source's guest is stopped).",
      dirtyRate,
      [['line', COLOR.dirty, 'dirty-pages-rate'], ...marks],
    ),
    chartBlock(
      'Pass',
      "QEMU's <code>dirty-sync-count</code>: each pass sends what the guest dirtied during the one before.",
      pass,
      [['line', COLOR.pass, 'pass'], ...marks],
    ),
  ].join('');
}

/** A two-column table row; `value` is HTML already escaped. */
const row = (name: string, value: string) => `<tr><th>${escapeHtml(name)}</th><td>${value}</td></tr>`;

/** Why it ended as it did, in words, when qmigrate ended it. */
const ENDED_BY: Record<NonNullable<MigrationReport['endedBy']>, string> = {
  'timeout-cancel': 'the --timeout passed: cancelled (--on-timeout cancel)',
  'timeout-pause': "the --timeout passed: the source's guest was paused so it converged (--on-timeout pause)",
  interrupt: 'interrupted (a signal): cancelled',
};

/** The final report as a table: status, times, bytes, passes, pages, run states, warnings. */
function reportTable(r: MigrationReport, paused: ChartSpan | undefined): string {
  const rows = [
    row('Status', `<span class="status status-${escapeHtml(r.status)}">${escapeHtml(r.status)}</span>`),
  ];
  if (r.reason !== undefined) rows.push(row('Reason', text(r.reason)));
  if (r.endedBy !== undefined) rows.push(row('Ended by', escapeHtml(ENDED_BY[r.endedBy] ?? r.endedBy)));
  const ms = (v: number | undefined) =>
    v === undefined ? '-' : v < 10_000 ? escapeHtml(formatMs(v)) : `${escapeHtml(formatMs(v))} (${v} ms)`;
  rows.push(
    row('Total time', ms(r.totalTimeMs)),
    row('Setup time', ms(r.setupTimeMs)),
    row('Downtime', ms(r.downtimeMs)),
  );
  if (paused) {
    const until = paused.label.includes('to the switchover') ? 'to the switchover' : 'to the end';
    const long = formatMs((paused.endS - paused.startS) * 1000);
    rows.push(
      row(
        'Guest paused',
        escapeHtml(
          `${long}, from ${paused.startS.toFixed(1)} s (--on-timeout pause) ${until}, before QEMU's downtime`,
        ),
      ),
    );
  }
  if (r.transferred !== undefined)
    rows.push(row('Transferred', `${escapeHtml(formatBytes(r.transferred))} (${r.transferred} bytes)`));
  if (r.throughput !== undefined)
    rows.push(row('Throughput (average)', escapeHtml(formatThroughput(r.throughput))));
  if (r.passes !== undefined) rows.push(row('Passes', String(r.passes)));
  if (r.pages) rows.push(row('Pages', `${r.pages.normal} normal, ${r.pages.duplicate} zero`));
  const post = postcopyLine(r);
  if (post) rows.push(row('Postcopy', text(post.replace(/^postcopy:? /, ''))));
  rows.push(row("Source's run state", text(r.sourceRunState)));
  if (r.destinationRunState !== undefined)
    rows.push(row("Destination's run state", text(r.destinationRunState)));
  for (const w of r.warnings ?? []) rows.push(row('Warning', `<span class="warning">${text(w)}</span>`));
  return `<table class="report">${rows.join('')}</table>`;
}

/** The events as they came, both sides; the first and last ones when there are too many. */
function eventsTable(events: readonly MigrationEventSample[], dropped = 0): string {
  if (events.length === 0) return '<p class="about">No MIGRATION event was seen.</p>';
  const half = MAX_EVENTS / 2;
  const shown =
    events.length > MAX_EVENTS ? [...events.slice(0, half), undefined, ...events.slice(-half)] : events;
  const rows = shown.map((e) => {
    if (e === undefined)
      return `<tr><td colspan="4">... ${events.length - MAX_EVENTS + dropped} more ...</td></tr>`;
    const what =
      typeof e.data.status === 'string'
        ? e.data.status
        : typeof e.data.pass === 'number'
          ? `pass ${e.data.pass}`
          : '';
    return `<tr><td class="num">${(e.elapsedMs / 1000).toFixed(3)}</td><td>${escapeHtml(e.side)}</td><td>${escapeHtml(e.event)}</td><td>${text(what)}</td></tr>`;
  });
  return `<table class="events"><thead><tr><th>s</th><th>side</th><th>event</th><th>status / pass</th></tr></thead><tbody>${rows.join('')}</tbody></table>`;
}

/** The headline: how it ended (the first line qmigrate prints), colored by outcome. */
function headline(input: ReportPageInput): string {
  const r = input.report;
  const status = r?.status ?? 'failed';
  const line = r
    ? (formatReport(r)[0] ?? status)
    : `migration did not end with a report: ${input.error ?? 'no reason known'}`;
  const guest = r
    ? formatReport(r)
        .slice(1)
        .map((l) => `<li>${text(l.trim())}</li>`)
        .join('')
    : '';
  return `<div class="outcome status-${escapeHtml(status)}"><p class="headline">${text(line)}</p>${guest ? `<ul>${guest}</ul>` : ''}</div>`;
}

/** What happened when there is nothing to draw (a run that ended before its first sample). */
function noSamples(input: ReportPageInput): string {
  if (input.samples.length === 0)
    return '<p class="note">No progress sample was taken: the migration ended (or never started) before the first query-migrate, so the charts are empty.</p>';
  return withRam(input.samples).length > 0
    ? ''
    : '<p class="note">No progress sample had RAM counters: the migration ended before it was active (query-migrate has none in setup), so the charts are empty.</p>';
}

const CSS = `
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#0f172a;background:#f8fafc;margin:0;padding:24px}
main{max-width:1000px;margin:0 auto}
h1{font-size:22px;margin:0 0 4px}h2{font-size:16px;margin:0 0 2px}
.meta{color:#475569;margin:0 0 14px}.meta code{color:#0f172a}
.facts{border-collapse:collapse;margin:0 0 14px}.facts th{text-align:left;color:#475569;font-weight:500;padding:1px 12px 1px 0}
.outcome{border-left:6px solid #64748b;background:#fff;padding:10px 14px;margin:0 0 18px;border-radius:4px;box-shadow:0 1px 2px #0001}
.outcome.status-completed{border-color:#16a34a}.outcome.status-failed{border-color:#dc2626}
.outcome.status-cancelled,.outcome.status-postcopy-paused,.outcome.status-postcopy-active{border-color:#d97706}
.headline{font-size:16px;font-weight:600;margin:0}.outcome ul{margin:4px 0 0;padding-left:18px;color:#334155}
.chart-block{background:#fff;border-radius:6px;box-shadow:0 1px 2px #0001;padding:12px 14px 6px;margin:0 0 16px}
.about{color:#475569;margin:0 0 6px;font-size:13px}
.legend{display:flex;flex-wrap:wrap;gap:4px 16px;font-size:12px;color:#334155;margin:0 0 2px}
.key{display:inline-flex;align-items:center;gap:6px}.swatch{display:inline-block;width:16px;height:3px}
.swatch.band{height:12px;opacity:.45}.swatch.marker{width:0;height:12px;border-left:2px dashed #94a3b8;background:none!important}
svg.chart{display:block;max-width:100%;height:auto;font-size:11px}
.grid{stroke:#e2e8f0;stroke-width:1}.axis{stroke:#94a3b8;stroke-width:1}
.tick{fill:#64748b}.unit{fill:#334155;font-weight:600}
.marker{stroke:#94a3b8;stroke-width:1;stroke-dasharray:4 3}.marker-label{fill:#64748b;font-size:10px}
table.report,table.events{border-collapse:collapse;background:#fff;box-shadow:0 1px 2px #0001;border-radius:6px;margin:0 0 16px}
table.report th{text-align:left;font-weight:500;color:#475569;padding:4px 16px 4px 12px;vertical-align:top;white-space:nowrap}
table.report td{padding:4px 12px 4px 0;word-break:break-word}
table.events{font-size:12px}table.events th,table.events td{padding:2px 10px;text-align:left}table.events .num{text-align:right;font-variant-numeric:tabular-nums}
.status{font-weight:600}.status-completed .status,.status.status-completed{color:#15803d}.status.status-failed{color:#b91c1c}
.warning{color:#b45309}.note{background:#fef3c7;padding:8px 12px;border-radius:4px}
pre{white-space:pre-wrap;word-break:break-all;background:#f1f5f9;padding:8px 12px;border-radius:4px}
`;

/**
 * The page. Every text that came from outside (QEMU's error-desc, the command line, event
 * data) is escaped; a page for a run that failed before its first sample still says what
 * happened. Its size is bounded whatever the run's length (MAX_POINTS per series, MAX_EVENTS).
 */
export function renderReportHtml(input: ReportPageInput): string {
  const tl = timelineOf(input);
  const when = input.startedAt
    .toISOString()
    .replace('T', ' ')
    .replace(/\.\d+Z$/, ' UTC');
  const facts = (input.facts ?? []).map((f) => row(f.name, `<code>${text(f.value)}</code>`)).join('');
  return [
    '<!DOCTYPE html>',
    '<html lang="en"><head><meta charset="utf-8">',
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    `<title>qmigrate: migration ${escapeHtml(input.report?.status ?? 'report')}, ${escapeHtml(when)}</title>`,
    `<style>${CSS}</style></head><body><main>`,
    '<h1>A picture of a migration</h1>',
    `<p class="meta">${escapeHtml(when)} &middot; <code>${text(input.command)}</code></p>`,
    facts ? `<table class="facts">${facts}</table>` : '',
    headline(input),
    noSamples(input),
    charts(input, tl),
    '<h2>Final report</h2>',
    input.report ? reportTable(input.report, tl.paused) : `<pre>${text(input.error ?? 'no report')}</pre>`,
    '<h2>Events</h2>',
    '<p class="about">MIGRATION and MIGRATION_PASS events of both sides, in seconds since <code>migrate</code> was sent.</p>',
    eventsTable(input.events, input.eventsDropped),
    '</main></body></html>',
    '',
  ].join('\n');
}
