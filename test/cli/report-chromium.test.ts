// The --report pages of a real `qmigrate demo` and a real `qmigrate migrate` between two
// qmigrate VMs, opened in headless Chromium (Debian's): every chart series is drawn with
// non-zero geometry, the downtime window is marked on each chart, nothing is fetched, and the
// screenshot is not blank (decoded by the browser: the throughput line's blue and the
// downtime band's red are there).
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import type { Page } from 'playwright-core';
import { launchChromium, pngStats, requireChromium } from '../helpers/chromium.js';
import { startQmigrate } from '../helpers/qmigrate.js';
import { startLab } from '../orchestrator/lab.js';

const SERIES = ['throughput', 'dirty-bytes', 'remaining', 'dirty-pages-rate', 'pass'];

function scratch(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'qmigrate-report-chromium-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** What the browser drew: each series path's length and box, the downtime spans, the charts. */
async function geometry(page: Page) {
  return page.evaluate(() => {
    // The browser's own DOM (tsconfig has no DOM lib).
    type Box = { width: number; height: number };
    type El = { getAttribute(n: string): string | null; getBoundingClientRect(): Box };
    type Svg = El & { getBBox(): Box; getTotalLength(): number };
    const doc = (
      globalThis as unknown as { document: { querySelectorAll(s: string): Iterable<El>; title: string } }
    ).document;
    const series = [...doc.querySelectorAll('path.series')].map((p) => {
      const s = p as Svg;
      const box = s.getBBox();
      return {
        id: s.getAttribute('data-series'),
        length: s.getTotalLength(),
        width: box.width,
        height: box.height,
      };
    });
    const downtime = [...doc.querySelectorAll('rect[data-span="downtime"]')].map(
      (r) => r.getBoundingClientRect().width,
    );
    const charts = [...doc.querySelectorAll('svg.chart')].map((c) => c.getBoundingClientRect().height);
    return { series, downtime, charts, title: doc.title };
  });
}

/**
 * Opens the page, checks the charts and takes the screenshot (written beside it); returns the
 * series' geometry for the caller's own checks.
 */
async function openReport(t: TestContext, file: string) {
  const chromium = requireChromium(t);
  if (!chromium) return undefined;
  const browser = await launchChromium(t, chromium);
  const fetched: string[] = [];
  browser.page.on('request', (r) => fetched.push(r.url()));
  await browser.page.goto(pathToFileURL(file).href);
  const g = await geometry(browser.page);
  assert.match(g.title, /^qmigrate: migration completed, \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$/);
  assert.deepEqual(fetched, [pathToFileURL(file).href], 'the page fetches nothing');
  assert.deepEqual(
    g.series.map((s) => s.id),
    SERIES,
  );
  for (const s of g.series) assert.ok(s.length > 0 && s.width > 0, `${s.id}: ${JSON.stringify(s)}`);
  assert.equal(g.charts.length, 4);
  for (const h of g.charts) assert.ok(h > 100, `chart height ${h}`);
  assert.equal(g.downtime.length, 4, 'the downtime window on each chart');
  for (const w of g.downtime) assert.ok(w >= 2, `downtime width ${w}`);
  const png = await browser.page.screenshot({ fullPage: true });
  writeFileSync(file.replace(/\.html$/, '.png'), png);
  await browser.page.goto('about:blank');
  const shot = await pngStats(browser.page, png, {
    throughput: [0x25, 0x63, 0xeb],
    // #dc2626 at 28% over white.
    downtime: [245, 194, 194],
  });
  assert.ok(shot.width >= 1000 && shot.height > 1500, `${shot.width}x${shot.height}`);
  assert.ok(shot.nonBackground > 0.03 * shot.width * shot.height, `${shot.nonBackground} drawn pixels`);
  assert.ok((shot.near.throughput ?? 0) > 200, `throughput blue: ${shot.near.throughput} px`);
  assert.ok((shot.near.downtime ?? 0) > 100, `downtime red: ${shot.near.downtime} px`);
  return g;
}

test('qmigrate demo --report: the page renders in Chromium, every series drawn', async (t) => {
  const dir = scratch(t);
  const file = join(dir, 'demo.html');
  const run = startQmigrate(t, ['demo', '--size', '64', '--rate', '8000', '--report', file]);
  assert.equal(await run.exit(60_000), 0, run.stdout + run.stderr);
  assert.match(run.stderr, new RegExp(`^qmigrate: report written to ${file}$`, 'm'));
  assert.deepEqual(readdirSync(dir), ['demo.html']);
  // The demo starts the destination's guest after its check (-S until then): the summary and
  // the page tell where the guest is when the demo ends, not the paused moment before.
  assert.match(run.stdout, /^ {2}the guest runs on the destination$/m, run.stdout);
  assert.doesNotMatch(run.stdout, /'paused'/);
  const html = readFileSync(file, 'utf8');
  assert.match(html, /the guest runs on the destination/);
  assert.match(html, /<th>Destination&#39;s run state<\/th><td>running<\/td>/);
  await openReport(t, file);
});

test('qmigrate migrate --report between two qmigrate VMs: passes, a downtime window, lines that rise and fall', async (t) => {
  const lab = await startLab(t, 'qmigrate', 'qmigrate', { srcMiB: 64, workloadRate: 2000 });
  if (!lab) return;
  const dir = scratch(t);
  const file = join(dir, 'migrate.html');
  const from = lab.plan.from.kind === 'unix' ? lab.plan.from.path : '';
  const to = lab.plan.to.kind === 'unix' ? lab.plan.to.path : '';
  const args = ['--from', from, '--to', to, '--unix', join(lab.dir, 'mig.sock'), '--max-bandwidth', '48M'];
  const run = startQmigrate(t, ['migrate', ...args, '--report', file]);
  assert.equal(await run.exit(60_000), 0, run.stdout + run.stderr);
  assert.deepEqual(readdirSync(dir), ['migrate.html']);
  const g = await openReport(t, file);
  if (!g) return;
  // More than a dot: the throughput and remaining lines span a height.
  for (const id of ['throughput', 'remaining', 'pass'])
    assert.ok((g.series.find((s) => s.id === id)?.height ?? 0) > 5, `${id}: ${JSON.stringify(g.series)}`);
});
