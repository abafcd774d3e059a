// report-file.ts: the --report path checks, the atomic write (no temp file on any path), the
// recorder that writes once, and the command line as a shell would take it back.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { CliFailure, CliUsageError } from '../../src/cli/errors.js';
import { checkReportPath, commandLine, ReportRecorder, writeFileAtomic } from '../../src/cli/report-file.js';
import type { MigrationEventSample } from '../../src/orchestrator/types.js';

function scratch(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'qmigrate-report-file-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('checkReportPath: absolute path back; missing directory, a directory, a file as directory, empty: usage errors', (t) => {
  const dir = scratch(t);
  assert.equal(checkReportPath(join(dir, 'r.html')), join(dir, 'r.html'));
  writeFileSync(join(dir, 'file'), '');
  assert.equal(checkReportPath(join(dir, 'file')), join(dir, 'file'), 'an existing file is replaced');
  for (const [path, re] of [
    [join(dir, 'none', 'r.html'), /the directory .*none does not exist/],
    [dir, /is a directory: give a file name/],
    [join(dir, 'file', 'r.html'), /file is not a directory$/],
    ['', /^--report needs a file name/],
  ] as const) {
    assert.throws(
      () => checkReportPath(path),
      (e: unknown) => e instanceof CliUsageError && re.test(e.message),
    );
  }
});

test('writeFileAtomic: the file replaced whole; a failure is a CliFailure and leaves no temp file', (t) => {
  const dir = scratch(t);
  const file = join(dir, 'r.html');
  writeFileSync(file, 'old');
  writeFileAtomic(file, 'new');
  assert.equal(readFileSync(file, 'utf8'), 'new');
  assert.deepEqual(readdirSync(dir), ['r.html']);
  rmSync(file);
  // The rename fails onto a directory that is not empty.
  writeFileSync(join(dir, 'keep'), '');
  const target = join(dir, 'sub');
  mkdirSync(target);
  writeFileSync(join(target, 'inside'), '');
  assert.throws(
    () => writeFileAtomic(target, 'page'),
    (e: unknown) => e instanceof CliFailure && /^cannot write the report to .*sub: /.test(e.message),
  );
  assert.deepEqual(readdirSync(dir).sort(), ['keep', 'sub']);
});

test('ReportRecorder: writes once, with the samples and events it was given, bounded in memory', (t) => {
  const dir = scratch(t);
  const file = join(dir, 'r.html');
  const rec = new ReportRecorder(file, { command: 'qmigrate migrate', facts: [] });
  for (let ms = 0; ms < 50_000 * 250; ms += 250) {
    rec.add({
      type: 'progress',
      elapsedMs: ms,
      status: 'active',
      pass: 1,
      transferred: ms,
      total: 1,
      remaining: 1,
      throughput: 1,
      dirtyPagesRate: 0,
    });
  }
  rec.add({ type: 'event', side: 'source', elapsedMs: 5, event: 'MIGRATION', data: { status: 'active' } });
  assert.equal(rec.write({ error: 'lost <the> monitor' }), file);
  assert.equal(rec.write({ error: 'again' }), undefined);
  const html = readFileSync(file, 'utf8');
  assert.match(html, /migration did not end with a report: lost &#60;the&#62; monitor/);
  assert.match(html, /<td>source<\/td><td>MIGRATION<\/td><td>active<\/td>/);
  // The x axis reaches the last sample (208 min), kept although older ones were thinned.
  assert.match(html, />200<\/text>/);
  assert.match(html, />min since migrate<\/text>/);
});

test('ReportRecorder: a day of passes several a second keeps bounded events, the first and last listed whole', (t) => {
  const dir = scratch(t);
  const file = join(dir, 'r.html');
  const rec = new ReportRecorder(file, { command: 'qmigrate migrate', facts: [] });
  const pass = (n: number): MigrationEventSample => ({
    type: 'event',
    side: 'source',
    elapsedMs: n * 100,
    event: 'MIGRATION_PASS',
    data: { pass: n },
  });
  rec.add({ type: 'event', side: 'source', elapsedMs: 0, event: 'MIGRATION', data: { status: 'setup' } });
  const passes = 864_000; // a day at 10 passes a second
  for (let n = 1; n <= passes; n++) {
    rec.add(pass(n));
    if (n === 500_000)
      rec.add({
        type: 'event',
        side: 'source',
        elapsedMs: n * 100,
        event: 'MIGRATION',
        data: { status: 'device' },
      });
  }
  assert.ok(rec.held.events <= 20_000 + 400 + 2, `${rec.held.events} events held`);
  assert.equal(rec.write({ error: 'lost' }), file);
  const html = readFileSync(file, 'utf8');
  // The first and the last 200 listed as they came; the count between them is every event.
  assert.match(html, /<td>pass 1<\/td>/);
  assert.match(html, new RegExp(`<td>pass ${passes}</td>`));
  assert.match(html, new RegExp(`<td>pass ${passes - 199}</td>`));
  assert.match(html, new RegExp(`\\.\\.\\. ${passes + 2 - 400} more \\.\\.\\.`));
  assert.ok(html.length < 200_000, `${html.length} bytes`);
  // The device state in the middle survived the thinning: the downtime is marked.
  assert.match(html, /span-downtime/);
});

test('commandLine quotes what a shell would split or expand', () => {
  assert.equal(
    commandLine(['qmigrate', 'migrate', '--from', '/a b', "it's", 'x=1,y']),
    "qmigrate migrate --from '/a b' 'it'\\''s' x=1,y",
  );
});

test('checkReportPath: a socket, a fifo or a device is not replaced by the page; a symlink is written through, kept', async (t) => {
  const dir = scratch(t);
  const sock = join(dir, 'qmp.sock');
  const server = createServer();
  await new Promise<void>((ok) => server.listen(sock, ok));
  t.after(() => server.close());
  execFileSync('mkfifo', [join(dir, 'fifo')]);
  for (const path of [sock, join(dir, 'fifo'), '/dev/null'])
    assert.throws(
      () => checkReportPath(path),
      (e: unknown) => e instanceof CliUsageError && /is not a regular file/.test(e.message),
      path,
    );
  writeFileSync(join(dir, 'target.html'), 'old');
  symlinkSync('target.html', join(dir, 'link.html'));
  assert.equal(checkReportPath(join(dir, 'link.html')), join(dir, 'target.html'));
  symlinkSync(join(dir, 'fifo'), join(dir, 'fifo-link'));
  assert.throws(() => checkReportPath(join(dir, 'fifo-link')), /is not a regular file/);
  symlinkSync('nowhere.html', join(dir, 'dangling.html'));
  assert.throws(
    () => checkReportPath(join(dir, 'dangling.html')),
    (e: unknown) =>
      e instanceof CliUsageError &&
      /is a symbolic link to .*nowhere\.html, which does not exist/.test(e.message),
  );
});
