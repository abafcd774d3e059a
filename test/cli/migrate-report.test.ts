// `--report FILE.html` of qmigrate migrate and demo: a path that cannot be written is a usage
// error (exit 2) before any monitor is reached; the page is written at the end of a run that
// timed out, was interrupted (Ctrl-C), lost its destination or paused in postcopy, atomically (no temp file left
// beside it), and stderr says where; a page that cannot be written at the end fails the run.
// (The completed runs, opened in Chromium: report-chromium.test.ts.)
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { cuttableSource } from '../helpers/cut-link.js';
import { waitMigrationStatus } from '../helpers/peers.js';
import { runQmigrate, startQmigrate } from '../helpers/qmigrate.js';
import { type Lab, startLab } from '../orchestrator/lab.js';

/** A source that dirties its 16 MiB faster than 2 MiB/s can carry: it never converges. */
const SLOW = { srcMiB: 16, workloadRate: 20_000 };

function scratch(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'qmigrate-report-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const monitors = (lab: Lab) => [
  '--from',
  lab.plan.from.kind === 'unix' ? lab.plan.from.path : '',
  '--to',
  lab.plan.to.kind === 'unix' ? lab.plan.to.path : '',
  '--unix',
  join(lab.dir, 'mig.sock'),
];

/** Waits until `ok()` holds, polling, at most `ms`. */
async function until(ok: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`not within ${ms} ms: ${what}`);
    await sleep(20);
  }
}

test('usage errors before anything moves: a missing directory, a directory, --dry-run, a file or exec demo', async (t) => {
  const dir = scratch(t);
  // Monitors nobody listens on: reaching for them would be exit 3, not 2.
  const nowhere = ['--from', join(dir, 'a.qmp'), '--to', join(dir, 'b.qmp'), '--unix', join(dir, 'm.sock')];
  const cases: [string[], RegExp][] = [
    [
      ['migrate', ...nowhere, '--report', join(dir, 'no/such/r.html')],
      /^qmigrate: --report .*no\/such\/r\.html: the directory .*no\/such does not exist \(create it first\)$/m,
    ],
    [
      ['migrate', ...nowhere, '--report', dir],
      /^qmigrate: --report .* is a directory: give a file name, e\.g\. --report .*\/migration\.html$/m,
    ],
    [
      ['migrate', ...nowhere, '--report', join(dir, 'r.html'), '--dry-run'],
      /^error: option '--report <file\.html>' cannot be used with option '--dry-run'$/m,
    ],
    [
      ['demo', '--transport', 'file', '--report', join(dir, 'r.html')],
      /^qmigrate: --report draws what the orchestrator samples, which follows socket migrations: use --transport unix or tcp, not file$/m,
    ],
    [
      [
        'migrate',
        ...nowhere.slice(0, 4),
        '--uri',
        `file:${join(dir, 'r.html')}`,
        '--report',
        join(dir, 'r.html'),
      ],
      /^qmigrate: --report .*r\.html is where the migration stream goes: give the page a name of its own$/m,
    ],
    [
      ['migrate', ...nowhere, '--report', join(dir, 'm.sock')],
      /^qmigrate: --report .*m\.sock is where the migration stream goes: give the page a name of its own$/m,
    ],
    [
      ['migrate', ...nowhere, '--report', join(dir, 'a.qmp')],
      /^qmigrate: --report .*a\.qmp is --from's monitor: give the page a name of its own$/m,
    ],
    [
      ['demo', '--report', join(dir, 'no/r.html')],
      /^qmigrate: --report .*: the directory .* does not exist/m,
    ],
  ];
  const runs = await Promise.all(cases.map(([args]) => runQmigrate(args)));
  for (const [i, r] of runs.entries()) {
    assert.equal(r.code, 2, `${cases[i]![0].join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, cases[i]![1]);
    assert.match(r.stderr, /\(run qmigrate (migrate|demo) --help for usage\)/);
  }
  assert.deepEqual(readdirSync(dir), [], 'nothing written');
});

test('timeout (exit 4): the page says cancelled at the timeout, with its samples; no temp file is left', async (t) => {
  const lab = await startLab(t, 'qmigrate', 'qmigrate', SLOW);
  if (!lab) return;
  const dir = scratch(t);
  const file = join(dir, 'timeout.html');
  const args = [...monitors(lab), '--max-bandwidth', '2M', '--timeout', '1', '--report', file];
  const run = startQmigrate(t, ['migrate', ...args]);
  assert.equal(await run.exit(30_000), 4, run.stderr);
  assert.match(run.stderr, new RegExp(`^qmigrate: report written to ${file}$`, 'm'));
  assert.deepEqual(readdirSync(dir), ['timeout.html']);
  const html = readFileSync(file, 'utf8');
  assert.match(html, /<span class="status status-cancelled">cancelled<\/span>/);
  assert.match(html, /<th>Ended by<\/th><td>the --timeout passed: cancelled \(--on-timeout cancel\)/);
  assert.match(html, /data-series="throughput" d="M[^"]+[LHV][^"]+"/);
  assert.match(html, /timeout<\/th><td><code>1 s, then cancel<\/code>/);
});

test('Ctrl-C (exit 130): the migration is cancelled and the page still written', async (t) => {
  const lab = await startLab(t, 'qmigrate', 'qmigrate', SLOW);
  if (!lab) return;
  const dir = scratch(t);
  const file = join(dir, 'interrupted.html');
  const run = startQmigrate(t, ['migrate', ...monitors(lab), '--max-bandwidth', '2M', '--report', file]);
  await until(() => /active [1-9]\d*%/.test(run.stdout), 20_000, 'progress');
  run.child.kill('SIGINT');
  assert.equal(await run.exit(30_000), 130, run.stderr);
  assert.match(run.stderr, /^qmigrate: report written to /m);
  assert.deepEqual(readdirSync(dir), ['interrupted.html']);
  const html = readFileSync(file, 'utf8');
  assert.match(html, /<span class="status status-cancelled">cancelled<\/span>/);
  assert.match(html, /interrupted \(a signal\): cancelled/);
  assert.equal((await lab.src.qmp.queryStatus()).status, 'running');
});

test('the destination killed mid-way (exit 1): the page says failed and why', async (t) => {
  const lab = await startLab(t, 'qmigrate', 'qmigrate', SLOW);
  if (!lab) return;
  const dir = scratch(t);
  const file = join(dir, 'failed.html');
  const run = startQmigrate(t, ['migrate', ...monitors(lab), '--max-bandwidth', '2M', '--report', file]);
  await until(() => /active [1-9]\d*%/.test(run.stdout), 20_000, 'progress');
  lab.dst.child.kill('SIGKILL');
  assert.equal(await run.exit(30_000), 1, run.stderr);
  const html = readFileSync(file, 'utf8');
  assert.match(html, /<div class="outcome status-failed"><p class="headline">migration failed/);
  assert.match(html, /<th>Reason<\/th><td>[^<]+/);
  assert.match(html, /<th>Source&#39;s run state<\/th><td>running/);
});

test('a page that cannot be written at the end: one error line, exit 1 although the migration completed, no temp file', async (t) => {
  const lab = await startLab(t, 'qmigrate', 'qmigrate', SLOW);
  if (!lab) return;
  const dir = scratch(t);
  const file = join(dir, 'r.html');
  // --on-timeout pause: the guest is paused at 1 s, so the migration completes (exit 0 unless the page fails).
  const args = [...monitors(lab), '--max-bandwidth', '8M', '--timeout', '1', '--on-timeout', 'pause'];
  const run = startQmigrate(t, ['migrate', ...args, '--report', file]);
  await until(() => /active/.test(run.stdout), 20_000, 'progress');
  // The path was a file name when checked; a directory by the end: the rename fails.
  mkdirSync(file);
  assert.equal(await run.exit(30_000), 1, run.stderr);
  assert.match(run.stdout, /^migration completed/m);
  assert.match(run.stderr, new RegExp(`^qmigrate: cannot write the report to ${file}: .+$`, 'm'));
  assert.doesNotMatch(run.stderr, /report written/);
  assert.deepEqual(readdirSync(dir), ['r.html']);
  assert.deepEqual(readdirSync(file), []);
});

test('QEMU 10.0 -> QEMU 10.0: its events mark the downtime window (device on the source to completed on the destination)', async (t) => {
  const lab = await startLab(t, '10.0', '10.0', { srcMiB: 64 });
  if (!lab) return;
  const dir = scratch(t);
  const file = join(dir, 'qemu.html');
  const run = startQmigrate(t, ['migrate', ...monitors(lab), '--max-bandwidth', '64M', '--report', file]);
  assert.equal(await run.exit(60_000), 0, run.stdout + run.stderr);
  const html = readFileSync(file, 'utf8');
  // QEMU 10.0's own MIGRATION events, in its order: the source stops its guest in 'device'.
  const events = [
    ...html.matchAll(/<tr><td class="num">[\d.]+<\/td><td>(\w+)<\/td><td>MIGRATION<\/td><td>([\w-]+)<\/td>/g),
  ]
    .map((m) => `${m[1]} ${m[2]}`)
    .filter((e) => e.startsWith('source'));
  assert.deepEqual(events, ['source setup', 'source active', 'source device', 'source completed']);
  assert.match(html, /destination<\/td><td>MIGRATION<\/td><td>completed/);
  const span = /<rect class="span span-downtime"[^>]*><title>([^<]*)</.exec(html);
  assert.match(
    span?.[1] ?? '',
    /^downtime: from the source stopping its guest to the destination completing \(QEMU reports \d+ ms\)$/,
  );
  assert.match(html, /<th>Status<\/th><td><span class="status status-completed">completed/);
});

test('postcopy paused on a cut link (exit 5): the page marks the postcopy phase and the switch', async (t) => {
  const workload = ['-object', 'qmigrate-workload,id=w0,rate=3000'];
  const lab = await startLab(t, 'qmigrate', 'qmigrate', {
    srcMiB: 32,
    workloadRate: 3000,
    dstExtra: workload,
  });
  if (!lab) return;
  const path = (e: { kind: string; path?: string }) => e.path ?? '';
  // The source's `migrate` goes through a proxy the test stops once postcopy is under way.
  const link = await cuttableSource(t, lab.dir, path(lab.plan.from));
  const dir = scratch(t);
  const file = join(dir, 'paused.html');
  const args = ['--from', link.from, '--to', path(lab.plan.to), '--unix', join(lab.dir, 'm.sock')];
  const slow = ['--max-bandwidth', '4M', '--parameter', 'max-postcopy-bandwidth=2M', '--postcopy'];
  const run = startQmigrate(t, ['migrate', ...args, ...slow, '--report', file]);
  await waitMigrationStatus(lab.src.qmp, 'postcopy-active', 30_000);
  await link.cut();
  assert.equal(await run.exit(60_000), 5, run.stdout + run.stderr);
  assert.match(run.stderr, /^qmigrate: report written to /m);
  const html = readFileSync(file, 'utf8');
  assert.match(html, /<span class="status status-postcopy-paused">postcopy-paused<\/span>/);
  assert.match(html, /<rect class="span span-postcopy"/);
  assert.match(html, /downtime: the switch to postcopy \(QEMU reports \d+ ms\)/);
  assert.match(html, /<th>Postcopy<\/th><td>switched after precopy passes that did not converge/);
  assert.match(html, /<td>source<\/td><td>MIGRATION<\/td><td>postcopy-paused<\/td>/);
});
