/**
 * `npm run faults`: the fault matrix (issue 14). Every row (pair x transport x fault, rows.ts)
 * runs N reps; each rep's promises are checked and the results written to docs/reliability.md
 * and .json (or --out). Exits 1 when any rep broke a promise or a required row could not run.
 *   npm run faults -- [--reps N] [--only REGEX] [--out FILE.md] [--list] [--size MiB]
 *   npm run faults -- --report FILE.json   (writes FILE.md again from a run's JSON)
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, release, tmpdir, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { PAGE, writeMixedImage } from '../test/helpers/guest.js';
import { findQemu } from '../test/helpers/qemu.js';
import { makePki } from '../test/helpers/tls-certs.js';
import { allRows, type Env, QEMU_OWN, type Rep, type Row, RowRun } from './rows.js';

const USAGE = `usage: npm run faults -- [--reps N] [--only REGEX] [--out FILE.md] [--list] [--size MiB]
       npm run faults -- --report FILE.json`;

function options() {
  try {
    return parseArgs({
      options: {
        reps: { type: 'string', default: '1' },
        only: { type: 'string' },
        out: { type: 'string' },
        list: { type: 'boolean', default: false },
        size: { type: 'string', default: '32' },
        report: { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }).values;
  } catch (e) {
    // parseArgs' own message names the bad option; one line, no stack.
    console.error(`faults: ${(e as Error).message}\n${USAGE}`);
    process.exit(2);
  }
}
const opt = options();
if (opt.help) {
  console.log(USAGE);
  process.exit(0);
}
const root = fileURLToPath(new URL('..', import.meta.url));

/** What one row measured over its reps. */
interface RowResult {
  id: string;
  group: Row['group'];
  pair: string;
  transport: string;
  fault: string;
  reps: number;
  outcomes: Record<string, number>;
  /** Promises qmigrate broke (or the matrix could not check): these fail the run. */
  violations: { rep: number; what: string }[];
  /** What QEMU 10.0 itself did wrong as a peer (a hang, a crash, a wrong end): reported only. */
  qemuOwn: { rep: number; what: string }[];
  worstMs: number;
  fdDrift?: number;
  rssDriftKiB?: number;
  skipped?: string;
}

/**
 * fd and RSS drift of the kept process: last minus first sample after the warm-up rep (rep 0),
 * over the samples of one process (a source that was replaced starts the count again).
 */
function drift(reps: Rep[]): { fd?: number; rss?: number } {
  const s = reps.slice(1).map((r) => r.sample);
  const last = s.at(-1);
  if (!last) return {};
  let first = last;
  for (let k = s.length - 1; k >= 0 && s[k]?.pid === last.pid; k--) first = s[k]!;
  if (first === last && s.length > 1 && s.at(-2)?.pid !== last.pid) return {};
  return { fd: last.fds - first.fds, rss: Math.round((last.rss - first.rss) / 1024) };
}

async function runRow(row: Row, env: Env, reps: number): Promise<RowResult> {
  const pair = `${row.src} -> ${row.dst ?? (row.group === 'exec' ? 'exec child' : 'listener')}`;
  const res: RowResult = {
    id: row.id,
    group: row.group,
    pair,
    transport: row.transport,
    fault: row.fault,
    reps: 0,
    outcomes: {},
    violations: [],
    qemuOwn: [],
    worstMs: 0,
  };
  const needsQemu = row.src === 'qemu' || row.dst === 'qemu';
  if (needsQemu && !('path' in findQemu('10.0'))) {
    const why = 'QEMU 10.0 not found (npm run setup:qemu)';
    if (process.env.QMIGRATE_REQUIRE_QEMU === '1') res.violations.push({ rep: -1, what: why });
    else process.stderr.write(`*** SKIPPED ${row.id}: ${why} ***\n`);
    res.skipped = why;
    return res;
  }
  const run = new RowRun(row, env);
  const done: Rep[] = [];
  try {
    await run.setup();
    for (let i = 0; i < reps; i++) {
      const r = await run.rep(i);
      done.push(r);
      res.reps++;
      res.outcomes[r.outcome] = (res.outcomes[r.outcome] ?? 0) + 1;
      res.worstMs = Math.max(res.worstMs, r.ms);
      for (const what of r.violations) {
        if (what.startsWith(QEMU_OWN)) res.qemuOwn.push({ rep: i, what: what.slice(QEMU_OWN.length) });
        else res.violations.push({ rep: i, what });
      }
    }
  } catch (e) {
    res.violations.push({ rep: -1, what: `row set-up failed: ${(e as Error).message}` });
  } finally {
    await run.end();
  }
  const d = drift(done);
  res.fdDrift = d.fd;
  res.rssDriftKiB = d.rss;
  // A descriptor more per rep, over enough reps to tell, is a leak.
  if (d.fd !== undefined && done.length >= 10 && d.fd > 2) {
    const leak = { rep: -1, what: `fd leak: ${d.fd} more open fds after ${done.length - 1} reps` };
    // The kept process is the source: a QEMU 10.0 source's leak is QEMU's own.
    (row.src === 'qemu' ? res.qemuOwn : res.violations).push(leak);
  }
  return res;
}

function git(args: string[]): string {
  try {
    return execFileSync('git', args, { cwd: root, encoding: 'utf8' }).trim();
  } catch {
    return '?';
  }
}

function qemuVersion(): string {
  const q = findQemu('10.0');
  if (!('path' in q)) return `missing (${q.missing})`;
  const out = execFileSync(q.path, [...q.args, '--version'], { env: q.env, encoding: 'utf8' });
  return out.split('\n')[0]?.trim() ?? '?';
}

interface Meta {
  command: string;
  date: string;
  commit: string;
  machine: string;
  qemu: string;
  reps: number;
  guestMiB: number;
  wallS: number;
}

const GROUP_TITLES: Record<Row['group'], string> = {
  socket: 'Socket faults: destination or source killed, connection cut, destination stalled',
  cancel: '`migrate_cancel` in every state',
  qmp: 'QMP faults the migration survives',
  exec: 'The exec child dying',
  file: 'A saved stream truncated or corrupted at seeded offsets',
};

function outcomes(o: Record<string, number>): string {
  return Object.entries(o)
    .map(([k, n]) => `${k} ${n}`)
    .join(', ');
}

function violationsCell(r: RowResult, list: { rep: number; what: string }[]): string {
  if (r.skipped && list.length === 0) return `skipped: ${r.skipped}`;
  if (list.length === 0) return '0';
  const first = list[0]!;
  const text = `${list.length}: ${first.rep >= 0 ? `rep ${first.rep}: ` : ''}${first.what}`;
  return text.replaceAll('|', '\\|').replaceAll('\n', ' ').slice(0, 240);
}

function report(results: RowResult[], meta: Meta): string {
  const broken = results.filter((r) => r.violations.length > 0).length;
  const qemuRows = results.filter((r) => r.qemuOwn.length > 0).length;
  const totalReps = results.reduce((a, r) => a + r.reps, 0);
  const lines = [
    '# Reliability: the fault matrix',
    '',
    'Written by `npm run faults` (faults/matrix.ts) from what it measured; do not edit by hand.',
    'Each row is a pair x transport x fault; each rep starts a fresh destination against a source',
    "kept alive for the row, injects the fault, and checks every promise: the source's final state,",
    'its run state `running` and its RAM digest (pmemsave, SHA-256) unchanged, the destination never',
    'running the guest (no `RESUME`, run state not `running`) unless the migration completed, no',
    'process exiting by a signal or an unexpected code, a bound on every wait (over it: `hang`).',
    'Drift: open fds and RSS of the kept source, last rep minus rep 1 (rep 0 is the warm-up).',
    '',
    `- Command: \`${meta.command}\``,
    `- Date: ${meta.date}; wall time ${meta.wallS} s`,
    `- Commit: ${meta.commit}`,
    `- Machine: ${meta.machine}`,
    `- QEMU: ${meta.qemu}`,
    `- Guest: ${meta.guestMiB} MiB of mixed pages (test/helpers/guest.ts writeMixedImage), idle`,
    `- Reps per row: ${meta.reps}; rows: ${results.length}; reps run: ${totalReps}; rows with violations: ${broken}; rows where QEMU 10.0 itself misbehaved: ${qemuRows}`,
    '',
  ];
  for (const group of Object.keys(GROUP_TITLES) as Row['group'][]) {
    const rows = results.filter((r) => r.group === group);
    if (!rows.length) continue;
    lines.push(`## ${GROUP_TITLES[group]}`, '');
    lines.push(
      "| Row | Pair | Reps | Outcomes | Violations | QEMU 10.0's own | Worst ms | fd drift | RSS drift KiB |",
    );
    lines.push('| --- | --- | --: | --- | --- | --- | --: | --: | --: |');
    for (const r of rows) {
      const id = `${r.transport} ${r.fault}`;
      lines.push(
        `| ${id} | ${r.pair} | ${r.reps} | ${outcomes(r.outcomes) || '–'} | ${violationsCell(r, r.violations)} | ${violationsCell(r, r.qemuOwn)} | ${r.worstMs} | ${r.fdDrift ?? '–'} | ${r.rssDriftKiB ?? '–'} |`,
      );
    }
    lines.push('');
  }
  lines.push(...NOTES, '');
  return lines.join('\n');
}

const NOTES = [
  '## How each fault is made',
  '',
  '- `dst-kill-N`, `src-kill`, `cut-close`, `cut-reset`, `stall-cancel`: a proxy of the matrix (faults/proxy.ts) sits between source and destination (tcp and unix; every multifd channel and the TLS session go through it), counts the bytes the source sent over all its connections, and at N% (else 50%) of the expected stream (the non-zero pages of the guest) stops forwarding and SIGKILLs the destination or the source, ends both connections (FIN), resets them (`resetAndDestroy`, RST), or stops reading the source and then sends `migrate_cancel`.',
  "- `stall-timeout`: the destination process is stopped (SIGSTOP: it reads nothing, its monitor is silent) once 10% of the stream went at 32 MiB/s, and the orchestrator's timeout ends it: `runMigration` (the library call under `qmigrate migrate --timeout 1 --on-timeout cancel`). QEMU's engine has no bound of its own on a peer that stops reading, and neither has qmigrate's: the timeout is the orchestrator's.",
  '- `cancel-setup`: a tcp listener whose accept queue is full (test/helpers/blackhole.ts), so the connect hangs in SYN-SENT; `cancel-active`: at 64 MiB/s, cancelled once `active`; `cancel-pre-switchover`: the `pause-before-switchover` capability; `cancel-device`: a listener that reads the whole stream and never answers on the return path, after `migrate-continue`; `cancel-cancelling`: a second `migrate_cancel` pipelined behind the first while the destination stalls.',
  '- `race-migrate`: two `migrate` pipelined on one monitor; `incoming-twice`: `migrate-incoming` sent twice to the destination; `client-gone-*`: a second QMP client sends `migrate` (or `query-migrate` during a migration) and closes before the reply. These migrations complete; the source is then started again with `cont` for the next rep.',
  "- The socket rows run with the `return-path` capability on both sides. Without it a source completes as soon as the end of the stream is in its socket, QEMU 10.0 as well: a destination killed at 90% (the rest of the stream waiting in the kernel buffers of the proxy's connection) then leaves the guest paused on the source (`postmigrate`) and running nowhere; a first run without it showed that for tcp and multifd `dst-kill-90` with qmigrate and QEMU 10.0 as the source alike. With a return path the source waits for the destination's SHUT.",
  "- A unix socket has no reset: `cut-reset` over unix closes the proxy's sockets with unread data (the peer gets ECONNRESET or EPIPE on its next write); `cut-close` closes them (a FIN to the destination, then a reset for the source's next write).",
  "- `QEMU 10.0's own`: what a QEMU 10.0 peer did that breaks the same promises (its monitor silent for seconds, a hang, a cancel that ended `failed`): reported, not counted against qmigrate and not failing the run. An error nobody is named in is QEMU's when only QEMU's monitors stop answering (2 s).",
  "- QEMU 10.0 as seen while building the matrix (this machine): a source whose tcp peer stops reading mid-stream can stop answering its monitor for over 10 s (`query-migrate` unanswered; not every time: once 0.2 s at worst); over TLS its `migrate_cancel` then gets no reply in 10 s; a source whose return path ends while its writes are blocked stays `active` with `error-desc` set (`Channel error: Input/output error`) for as long as the peer holds the socket, where qmigrate now fails at once (test/migration/return-path-eof-stall.test.ts); a cancel while the peer stalls sometimes ends `failed`. A second `migrate` is refused with `There's a migration process in progress` and a second `migrate-incoming` with `The incoming migration has already been started` (qmigrate: the same texts). A `migrate` from a client that closes at once is sometimes run and sometimes dropped (monitor/qmp.c empties a closed client's request queue); qmigrate runs every request it has read.",
  '- `exec-child-*`: `exec` to `/bin/sh -c "head -c HALF > /dev/null"` (exits after half the stream) or to one that then stops reading and is SIGKILLed there.',
  "- `file` rows: the source kind saves the guest once (`file:`), each rep loads a copy truncated at a seeded offset (rep i uses seed i) or with three seeded bytes XORed, with `exit-on-error: false`. A corrupted byte inside page data is a valid stream (the format has no checksum, as QEMU's), so `completed` is allowed there; a truncated stream must fail.",
];

async function main(): Promise<void> {
  if (opt.report) {
    const { meta, rows } = JSON.parse(readFileSync(opt.report, 'utf8')) as { meta: Meta; rows: RowResult[] };
    writeFileSync(opt.report.replace(/\.json$/, '.md'), report(rows, meta));
    return;
  }
  let only: RegExp | undefined;
  try {
    only = opt.only === undefined ? undefined : new RegExp(opt.only);
  } catch (e) {
    console.error(`faults: --only: ${(e as Error).message}`);
    process.exit(2);
  }
  const rows = allRows().filter((r) => !only || only.test(r.id));
  if (opt.list) {
    process.stdout.on('error', () => {}); // a closed pipe (`| head`) ends the listing, quietly
    for (const r of rows) process.stdout.write(`${r.id}\n`);
    return;
  }
  const reps = Number(opt.reps);
  const mib = Number(opt.size);
  if (!Number.isInteger(reps) || reps < 1 || !(mib > 0)) {
    console.error(`faults: --reps must be a positive integer and --size a number of MiB > 0\n${USAGE}`);
    process.exit(2);
  }
  const dir = mkdtempSync(join(process.env.QMIGRATE_FAULTS_TMP ?? tmpdir(), 'qmigrate-faults-'));
  const cleanup = () => rmSync(dir, { recursive: true, force: true });
  // Also when an exception escapes an event handler: no scratch directory is left behind.
  process.once('exit', cleanup);
  for (const [sig, code] of [
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const) {
    process.once(sig, () => {
      cleanup();
      process.exit(code); // the 'exit' handler of peers.ts kills every VM still running
    });
  }
  try {
    const image = join(dir, 'guest.img');
    writeMixedImage(image, mib << 20, 7);
    const digest = createHash('sha256').update(readFileSync(image)).digest('hex');
    const nonZero = (mib << 20) / PAGE - Math.ceil((mib << 20) / PAGE / 3);
    const pki = makePki(join(dir, 'pki'));
    const env: Env = { dir, mib, image, digest, streamBytes: nonZero * PAGE, pki };
    const t0 = Date.now();
    // Taken before the rows run: what ran, whatever happens to the checkout meanwhile.
    const commit = `${git(['rev-parse', '--short', 'HEAD'])}${git(['status', '--porcelain', '--untracked-files=no']) ? ' (with local changes)' : ''}`;
    const results: RowResult[] = [];
    for (const row of rows) {
      const r = await runRow(row, env, reps);
      results.push(r);
      const mark = `${r.violations.length ? `VIOLATIONS ${r.violations.length}` : 'ok'}${r.qemuOwn.length ? ` (QEMU 10.0's own: ${r.qemuOwn.length})` : ''}`;
      process.stderr.write(`${row.id}: ${outcomes(r.outcomes)} worst ${r.worstMs} ms ${mark}\n`);
      for (const v of [...r.violations, ...r.qemuOwn].slice(0, 3))
        process.stderr.write(`    rep ${v.rep}: ${v.what}\n`);
    }
    const meta: Meta = {
      command: `npm run faults -- ${process.argv.slice(2).join(' ')}`.trim(),
      date: new Date().toISOString(),
      commit,
      machine: `${cpus().length} cores (${cpus()[0]?.model.trim()}), ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Linux ${release()}, Node ${process.version}`,
      qemu: qemuVersion(),
      reps,
      guestMiB: mib,
      wallS: Math.round((Date.now() - t0) / 1000),
    };
    const out = opt.out ?? join(root, 'docs/reliability.md');
    mkdirSync(dirname(out), { recursive: true });
    writeFileSync(out, report(results, meta));
    writeFileSync(out.replace(/\.md$/, '.json'), `${JSON.stringify({ meta, rows: results }, null, 2)}\n`);
    const bad = results.filter((r) => r.violations.length > 0);
    process.stderr.write(`wrote ${out}; ${bad.length} of ${results.length} rows with violations\n`);
    process.exitCode = bad.length ? 1 : 0;
  } finally {
    cleanup();
  }
}

await main();
