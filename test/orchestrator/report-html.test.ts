// The --report page from fixed samples, events and reports: every series and mark is there,
// every outside text is escaped (a QEMU error-desc may hold markup), nothing is fetched, a
// run with one sample or none still says what happened, and an hour of samples makes a page
// of bounded size.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { downsample, escapeHtml, niceStep, tickLabel } from '../../src/orchestrator/report-chart.js';
import { MAX_EVENTS, MAX_POINTS, renderReportHtml } from '../../src/orchestrator/report-html.js';
import type { MigrationEventSample, MigrationReport, ProgressSample } from '../../src/orchestrator/types.js';

const MiB = 2 ** 20;

function sample(ms: number, o: Partial<ProgressSample> = {}): ProgressSample {
  return {
    type: 'progress',
    elapsedMs: ms,
    status: 'active',
    pass: 1,
    transferred: ms * 200_000,
    total: 512 * MiB,
    remaining: Math.max(0, 512 * MiB - ms * 200_000),
    throughput: 200 * MiB,
    dirtyPagesRate: 20_000,
    ...o,
  };
}

function event(
  ms: number,
  side: 'source' | 'destination',
  data: Record<string, unknown>,
): MigrationEventSample {
  return { type: 'event', side, elapsedMs: ms, event: 'pass' in data ? 'MIGRATION_PASS' : 'MIGRATION', data };
}

const completed: MigrationReport = {
  type: 'report',
  status: 'completed',
  totalTimeMs: 1676,
  setupTimeMs: 3,
  downtimeMs: 101,
  transferred: 353_134_681,
  throughput: 210_700_884,
  passes: 4,
  pages: { normal: 85_877, duplicate: 76_576 },
  sourceRunState: 'postmigrate',
  destinationRunState: 'running',
};

/** A precopy run as a qmigrate pair gives it: samples every 250 ms, both sides' events. */
function precopyRun() {
  const samples = [0, 250, 500, 750, 1000, 1250, 1500].map((ms) => sample(ms, { pass: ms < 1140 ? 1 : 2 }));
  samples.push(sample(1686, { status: 'completed', pass: 4, remaining: 0, dirtyPagesRate: 0 }));
  const events = [
    event(2, 'source', { status: 'setup' }),
    event(4, 'source', { pass: 1 }),
    event(4, 'source', { status: 'active' }),
    event(1140, 'source', { pass: 2 }),
    event(1578, 'source', { pass: 3 }),
    event(1578, 'source', { status: 'device' }),
    event(1578, 'source', { pass: 4 }),
    event(1676, 'source', { status: 'completed' }),
    event(1680, 'destination', { status: 'completed' }),
  ];
  return { samples, events };
}

const page = (o: Partial<Parameters<typeof renderReportHtml>[0]> = {}) =>
  renderReportHtml({
    command: 'qmigrate migrate --from src.qmp --to dst.qmp --unix mig.sock --report r.html',
    facts: [{ name: 'source', value: 'src.qmp' }],
    startedAt: new Date('2026-11-30T01:02:03.456Z'),
    samples: [],
    events: [],
    ...o,
  });

/** The `d` of each series path, by its data-series. */
function seriesPaths(html: string): Map<string, string> {
  return new Map(
    [...html.matchAll(/<path class="series[^"]*" data-series="([^"]+)" d="([^"]*)"/g)].map((m) => [
      m[1]!,
      m[2]!,
    ]),
  );
}

test('a completed precopy: every series, the downtime window from device to the destination completing, pass starts, the report table', () => {
  const html = page({ ...precopyRun(), report: completed });
  assert.match(html, /^<!DOCTYPE html>\n<html lang="en">/);
  assert.match(html, /<\/html>\n$/);
  const paths = seriesPaths(html);
  assert.deepEqual([...paths.keys()], ['throughput', 'dirty-bytes', 'remaining', 'dirty-pages-rate', 'pass']);
  for (const [id, d] of paths) assert.ok(d.split(/[MLHV]/).length > 3, `${id}: ${d}`);
  // The downtime span on each of the four charts: device at 1.578 s to the destination at 1.680 s.
  const spans = [...html.matchAll(/<rect class="span span-downtime"[^>]*><title>([^<]*)</g)];
  assert.equal(spans.length, 4);
  assert.match(
    spans[0]![1]!,
    /^downtime: from the source stopping its guest to the destination completing \(QEMU reports 101 ms\)$/,
  );
  assert.match(html, />downtime 101 ms</);
  // Passes 3 and 4 begin together (one marker); pass 2 on its own.
  assert.match(html, /class="marker-label"[^>]*>pass 2</);
  assert.match(html, /class="marker-label"[^>]*>pass 3-4</);
  assert.doesNotMatch(html, /span-postcopy/);
  for (const unit of ['MiB/s', 'MiB', 'pages/s', 's since migrate'])
    assert.ok(html.includes(`>${unit}</text>`), unit);
  assert.match(html, /dirty bytes\/s \(dirty-pages-rate x 4096 B\)/);
  assert.match(html, /<th>Status<\/th><td><span class="status status-completed">completed<\/span>/);
  assert.match(html, /<th>Downtime<\/th><td>101 ms</);
  assert.match(html, /<th>Transferred<\/th><td>336\.8 MiB \(353134681 bytes\)/);
  assert.match(html, /<th>Pages<\/th><td>85877 normal, 76576 zero/);
  assert.match(html, /<th>Destination&#39;s run state<\/th><td>running/);
  assert.match(html, /migration completed in 1676 ms \(setup 3 ms, downtime 101 ms\)/);
  assert.match(html, /2026-11-30 01:02:03 UTC/);
  assert.match(html, /qmigrate migrate --from src\.qmp --to dst\.qmp --unix mig\.sock --report r\.html/);
});

test('self-contained: no script, nothing to fetch (no src, href, url() or @import)', () => {
  const html = page({ ...precopyRun(), report: completed });
  assert.doesNotMatch(html, /<script/i);
  assert.doesNotMatch(html, /\ssrc=|\shref=|url\(|@import/i);
  // The one URL is SVG's namespace name, which nothing fetches.
  assert.deepEqual(
    [...html.matchAll(/https?:\/\/[^"\s]+/g)]
      .map((m) => m[0])
      .sort()
      .at(-1),
    'http://www.w3.org/2000/svg',
  );
});

test('every outside text is escaped: error-desc, warnings, the command, event data, facts', () => {
  const evil = '<script>alert(1)</script><img src=x onerror="alert(2)">&\'';
  const html = page({
    command: `qmigrate migrate --from '${evil}'`,
    facts: [{ name: evil, value: evil }],
    samples: [sample(0), sample(250, { status: 'failed' })],
    events: [event(10, 'source', { status: evil }), event(240, 'source', { status: 'failed' })],
    report: {
      ...completed,
      status: 'failed',
      reason: evil,
      warnings: [evil],
      sourceRunState: evil,
      destinationRunState: evil,
    },
  });
  assert.doesNotMatch(html, /<script|<img|onerror="/i);
  assert.ok(
    html.includes(
      '&#60;script&#62;alert(1)&#60;/script&#62;&#60;img src=x onerror=&#34;alert(2)&#34;&#62;&#38;&#39;',
    ),
  );
  assert.equal(escapeHtml(`<a href="x">'&'</a>`), '&#60;a href=&#34;x&#34;&#62;&#39;&#38;&#39;&#60;/a&#62;');
});

test('a failed run with a single sample still draws each series and says what happened', () => {
  const html = page({
    samples: [sample(40, { status: 'failed', remaining: 100 * MiB })],
    events: [event(2, 'source', { status: 'setup' }), event(38, 'source', { status: 'failed' })],
    report: {
      type: 'report',
      status: 'failed',
      reason: 'Unable to write to socket: Broken pipe',
      sourceRunState: 'running',
      destinationRunState: 'unreachable',
    },
  });
  assert.match(
    html,
    /<div class="outcome status-failed"><p class="headline">migration failed: Unable to write to socket: Broken pipe/,
  );
  assert.match(html, /the source&#39;s guest is still running/);
  const paths = seriesPaths(html);
  assert.equal(paths.size, 5);
  // One point: a short line and a dot, so the browser draws something.
  assert.match(paths.get('throughput')!, /^M[\d.]+ [\d.]+h3$/);
  assert.match(html, /<circle /);
  assert.doesNotMatch(html, /span-downtime/);
});

test('a run that ended before its first sample: no series, the error, and why the charts are empty', () => {
  const html = page({
    error:
      'the preflight refused the migration (nothing moved): the destination is not waiting in -incoming defer',
  });
  assert.equal(seriesPaths(html).size, 0);
  assert.match(html, /migration did not end with a report: the preflight refused the migration/);
  assert.match(html, /No progress sample was taken/);
  assert.match(html, /No MIGRATION event was seen/);
  assert.match(html, /<title>qmigrate: migration report, 2026-11-30 01:02:03 UTC<\/title>/);
});

test('postcopy: the phase is marked from postcopy-active to completed, the downtime at the switch', () => {
  const samples = [
    sample(0),
    sample(500, { pass: 2 }),
    sample(1000, { status: 'postcopy-active', pass: 2, dirtyPagesRate: 0 }),
  ];
  samples.push(sample(3000, { status: 'completed', pass: 2, remaining: 0, dirtyPagesRate: 0 }));
  const html = page({
    samples,
    events: [
      event(4, 'source', { status: 'active' }),
      event(520, 'source', { pass: 2 }),
      event(800, 'source', { status: 'postcopy-active' }),
      event(2900, 'source', { status: 'completed' }),
    ],
    report: {
      ...completed,
      downtimeMs: 12,
      totalTimeMs: 2900,
      postcopy: { startedBy: 'passes', startedAtMs: 790, bytes: 99 * MiB, requests: 516 },
    },
  });
  const postcopy = /<rect class="span span-postcopy"[^>]* x="([\d.]+)"[^>]* width="([\d.]+)"/.exec(html);
  assert.ok(postcopy, 'postcopy span');
  const downtime = /<rect class="span span-downtime"[^>]* x="([\d.]+)"/.exec(html);
  assert.equal(downtime?.[1], postcopy[1], 'the downtime starts at the switch');
  assert.match(html, /downtime: the switch to postcopy \(QEMU reports 12 ms\)/);
  assert.match(html, />postcopy</);
  assert.match(
    html,
    /<th>Postcopy<\/th><td>switched after precopy passes that did not converge at 790 ms, 99\.0 MiB sent in postcopy, 516 page requests/,
  );
});

test('an hour of samples every 500 ms and a pass every second: a bounded page, at most MAX_POINTS per series', () => {
  const samples: ProgressSample[] = [];
  const events: MigrationEventSample[] = [];
  for (let ms = 0; ms <= 3_600_000; ms += 500) {
    samples.push(
      sample(ms, {
        pass: Math.floor(ms / 1000) + 1,
        throughput: (100 + (ms % 7000) / 100) * MiB,
        remaining: 64 * MiB,
      }),
    );
    if (ms % 1000 === 0) events.push(event(ms, 'source', { pass: Math.floor(ms / 1000) + 1 }));
  }
  const html = page({
    samples,
    events,
    report: { ...completed, status: 'cancelled', totalTimeMs: 3_600_000 },
  });
  assert.ok(html.length < 250_000, `${html.length} characters`);
  for (const [id, d] of seriesPaths(html)) {
    const points = d.match(/[MLHV]/g)?.length ?? 0;
    assert.ok(points <= 2 * MAX_POINTS + 1, `${id}: ${points}`);
  }
  // The first and last events listed, the rest counted; 3600 pass markers would be a wall: none.
  assert.match(html, new RegExp(`\\.\\.\\. ${events.length - MAX_EVENTS} more \\.\\.\\.`));
  assert.doesNotMatch(html, /class="marker"/);
});

test("downsample keeps the first and last points and each bucket's lowest and highest, in time order", () => {
  const points = Array.from({ length: 1000 }, (_, i): [number, number] => [
    i,
    i === 500 ? 1e6 : i === 501 ? -5 : i % 10,
  ]);
  const out = downsample(points, 100);
  assert.ok(out.length <= 100, `${out.length}`);
  assert.deepEqual(out[0], [0, 0]);
  assert.deepEqual(out.at(-1), [999, 9]);
  assert.ok(out.some((p) => p[1] === 1e6) && out.some((p) => p[1] === -5), 'the spike and the dip stay');
  assert.deepEqual(
    out.map((p) => p[0]),
    [...out.map((p) => p[0])].sort((a, b) => a - b),
  );
  assert.deepEqual(downsample(points.slice(0, 10), 100), points.slice(0, 10));
});

test('axis ticks: round steps, readable labels', () => {
  assert.equal(niceStep(1.686, 10), 0.2);
  assert.equal(niceStep(400, 4), 100);
  assert.equal(niceStep(3, 4, true), 1);
  assert.equal(tickLabel(0.4, 0.2), '0.4');
  assert.equal(tickLabel(15_000, 5000), '15k');
  assert.equal(tickLabel(2_500_000, 500_000), '2.5M');
  assert.equal(tickLabel(600, 200), '600');
});

test('a sample without RAM counters (setup, cancelled, failed: query-migrate has no ram) is not drawn as zeros', () => {
  // A cancelled run as the orchestrator samples it: setup with no ram, two active samples,
  // then cancelled with no ram. Nothing was sent after 1 s: remaining did not drop to 0.
  const none = { transferred: 0, total: 0, remaining: 0, throughput: 0, dirtyPagesRate: 0, pass: 0 };
  const samples = [
    sample(3, { status: 'setup', ...none }),
    sample(250, { remaining: 60 * MiB, throughput: 2 * MiB }),
    sample(1000, { remaining: 58 * MiB, throughput: 2 * MiB }),
    sample(1010, { status: 'cancelled', ...none }),
  ];
  const html = page({
    samples,
    events: [event(1005, 'source', { status: 'cancelled' })],
    report: {
      type: 'report',
      status: 'cancelled',
      reason: 'cancelled by the user',
      sourceRunState: 'running',
    },
  });
  const paths = seriesPaths(html);
  // The remaining line: the two samples with RAM counters, nothing else.
  const remaining = paths.get('remaining')!;
  assert.match(remaining, /^M[\d.]+ [\d.]+L[\d.]+ [\d.]+$/, remaining);
  const [x0, , x1] = remaining.slice(1).split(/[ L]/).map(Number);
  // Every series spans the same samples: from the first with RAM to the last with RAM.
  for (const [id, d] of paths) {
    const xs = [...d.matchAll(/[MLH]([\d.]+)/g)].map((m) => Number(m[1]));
    assert.equal(Math.min(...xs), x0, `${id}: ${d}`);
    assert.equal(Math.max(...xs), x1, `${id}: ${d}`);
  }
});

test('a run cancelled in setup: its samples have no RAM counters, the charts are empty and say why', () => {
  const none = { transferred: 0, total: 0, remaining: 0, throughput: 0, dirtyPagesRate: 0, pass: 0 };
  const html = page({
    samples: [sample(3, { status: 'setup', ...none }), sample(9, { status: 'cancelled', ...none })],
  });
  assert.equal(seriesPaths(html).size, 0);
  assert.match(html, /No progress sample had RAM counters/);
});

test("--on-timeout pause: the guest paused from the timeout to the switchover is marked, not only QEMU's downtime", () => {
  const { samples, events } = precopyRun();
  const html = page({
    samples,
    events,
    report: { ...completed, endedBy: 'timeout-pause', pausedAtMs: 600 },
  });
  // From 0.6 s to the source stopping for the switchover at 1.578 s: 978 ms, on each chart.
  const spans = [...html.matchAll(/<rect class="span span-paused"[^>]*><title>([^<]*)</g)];
  assert.equal(spans.length, 4);
  assert.match(spans[0]![1]!, /^the source&#39;s guest paused by --on-timeout pause/);
  assert.match(html, />guest paused 978 ms</);
  assert.match(
    html,
    /<th>Guest paused<\/th><td>978 ms, from 0\.6 s \(--on-timeout pause\) to the switchover/,
  );
  assert.doesNotMatch(page({ samples, events, report: completed }), /span-paused/);
});
