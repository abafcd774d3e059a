// `qmigrate analyze` as a user runs it: one JSON document on stdout (compact, or indented with
// --pretty), the same from standard input, --dump-ram files inside DIR only, a broken stream
// as one line with byte offset and section and exit 1 (its dump files removed), a closed
// output as exit 141, and --help with examples.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ramFileName } from '../../src/cli/commands/analyze.js';
import { analyzeBases } from '../fuzz/targets/migration-analyze.js';
import { startQmigrate } from '../helpers/qmigrate.js';

const entry = fileURLToPath(new URL('../../src/cli/bin.ts', import.meta.url));
const SAMPLE = fileURLToPath(new URL('../fixtures/samples/qemu10-none-16M-pattern.mig', import.meta.url));

function run(args: string[], input?: Buffer) {
  return spawnSync(process.execPath, ['--import', 'tsx', entry, 'analyze', ...args], {
    encoding: 'utf8',
    input,
    maxBuffer: 64 << 20,
  });
}

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'qmigrate-analyze-cli-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('analyze FILE: one JSON document; --pretty the same indented; - reads a pipe', () => {
  const r = run([SAMPLE]);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, '');
  assert.equal(r.stdout.split('\n').length, 2, 'one line and its newline');
  const doc = JSON.parse(r.stdout);
  assert.equal(doc.size, 1086305);
  assert.deepEqual(doc.ram.blocks[0], {
    name: 'm0',
    length: 16 << 20,
    normal: 256,
    zero: 3840,
    'distinct-pages': 4096,
    records: 4096,
  });
  assert.equal(doc.vmdescription.json.devices[1].name, 'globalstate');
  const pretty = run([SAMPLE, '--pretty']);
  assert.equal(pretty.status, 0);
  assert.match(pretty.stdout, /^{\n {2}"size": 1086305,\n/);
  assert.deepEqual(JSON.parse(pretty.stdout), doc);
  const piped = run(['-'], readFileSync(SAMPLE));
  assert.equal(piped.status, 0, piped.stderr);
  assert.deepEqual(JSON.parse(piped.stdout), doc);
});

test('--dump-ram DIR: each block a file of its size, the guest pattern in it', (t) => {
  const dir = join(tempDir(t), 'new', 'dir');
  const r = run([SAMPLE, '--dump-ram', dir]);
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(readdirSync(dir), ['m0']);
  const want = Buffer.alloc(16 << 20);
  for (let p = 0; p < 4096; p += 16) want.fill((p * 7 + 1) & 0xff, p * 4096, (p + 1) * 4096);
  assert.ok(readFileSync(join(dir, 'm0')).equals(want));
});

test('block names become safe file names inside DIR, never a path out of it', (t) => {
  assert.equal(ramFileName('/rom@etc/acpi/tables'), '%2From@etc%2Facpi%2Ftables');
  assert.equal(ramFileName('pc.ram'), 'pc.ram');
  assert.equal(ramFileName('..'), '%2E.');
  assert.equal(ramFileName('.'), '%2E');
  assert.equal(ramFileName(''), '%');
  assert.equal(ramFileName('a%2F'), 'a%252F');
  // The small stream's block `m0` renamed `..` (same length): written as DIR/%2E.
  const base = analyzeBases()[0]!.bytes;
  const at = base.indexOf(Buffer.from('\x02m0', 'latin1'));
  const evil = Buffer.from(base.toString('latin1').replaceAll('\x02m0', '\x02..'), 'latin1');
  assert.ok(at > 0);
  const dir = tempDir(t);
  const file = join(dir, 'evil.mig');
  writeFileSync(file, evil);
  const r = run([file, '--dump-ram', join(dir, 'out')]);
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(readdirSync(join(dir, 'out')), ['%2E.']);
  assert.deepEqual(readdirSync(dir).sort(), ['evil.mig', 'out']);
});

test('a truncated stream: one line with offset and section, exit 1, no stack, no dump left', (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'cut.mig');
  writeFileSync(file, readFileSync(SAMPLE).subarray(0, 1000));
  const r = run([file, '--dump-ram', join(dir, 'ram')]);
  assert.equal(r.status, 1);
  assert.equal(r.stdout, '');
  assert.equal(
    r.stderr,
    `qmigrate analyze: ${file}: at byte 82 (section ram): stream ended early: a page needs 4096 bytes, only 918 left\n`,
  );
  assert.equal(
    existsSync(join(dir, 'ram')),
    false,
    'the partial block file and the directory made for it are removed',
  );
  const missing = run([join(dir, 'nope.mig')]);
  assert.equal(missing.status, 1);
  assert.equal(
    missing.stderr,
    `qmigrate analyze: ${join(dir, 'nope.mig')}: cannot open ${join(dir, 'nope.mig')}: No such file or directory\n`,
  );
  const notStream = run([entry]);
  assert.equal(notStream.status, 1);
  assert.match(
    notStream.stderr,
    /^qmigrate analyze: .*: at byte 0: not a migration stream: magic 0x[0-9a-f]{8} \(want 0x5145564d, "QEVM"\)\n$/,
  );
});

test('an output closed before the document is written: exit 141, no stack trace', async () => {
  const child = spawn(process.execPath, ['--import', 'tsx', entry, 'analyze', SAMPLE, '--pretty'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout.destroy();
  let stderr = '';
  child.stderr.on('data', (d) => {
    stderr += d;
  });
  const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
  assert.equal(code, 141, stderr);
  assert.doesNotMatch(stderr, /^\s+at /m);
});

test('Ctrl-C while a pipe is read: exit 130, the dump files it had started removed', async (t) => {
  const dir = join(tempDir(t), 'ram');
  const run = startQmigrate(t, ['analyze', '-', '--dump-ram', dir]);
  // The block list and a few pages, then nothing: the analysis waits for more.
  run.child.stdin?.write(readFileSync(SAMPLE).subarray(0, 20_000));
  for (let i = 0; i < 300 && !existsSync(join(dir, 'm0')); i++) await new Promise((r) => setTimeout(r, 50));
  assert.ok(existsSync(join(dir, 'm0')), 'the block file was made');
  run.child.kill('SIGINT');
  assert.equal(await run.exit(15_000), 130);
  assert.equal(existsSync(dir), false, 'the block files and the directory made for them are removed');
});

test('a FIFO as FILE: read once, through one open (a second open waited for a writer gone with EPIPE)', async (t) => {
  const fifo = join(tempDir(t), 'vm.fifo');
  assert.equal(spawnSync('mkfifo', [fifo]).status, 0);
  const run = startQmigrate(t, ['analyze', fifo]);
  // As `cat vm.mig > vm.fifo`: the writer opens and writes at once.
  const writer = await open(fifo, 'w');
  await writer.writeFile(readFileSync(SAMPLE)).catch(() => undefined);
  await writer.close();
  assert.equal(await run.exit(15_000), 0, run.stderr);
  assert.equal(JSON.parse(run.stdout).size, 1086305);
});

test('a corrupt ram version and a section name with control characters: the true offset, one plain line', (t) => {
  const dir = tempDir(t);
  const version = readFileSync(SAMPLE);
  version[30] = 0xff; // the first byte of the ram START's version_id (bytes 30-33)
  writeFileSync(join(dir, 'v.mig'), version);
  const r = run([join(dir, 'v.mig')]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /: at byte 30 \(section ram\): ram: version 4278190084 \(want 4\)\n$/);
  // The timer section's name (5 bytes from 1085299) becomes "t\n\x1b[1".
  const name = readFileSync(SAMPLE);
  Buffer.from('t\n\x1b[1', 'latin1').copy(name, 1085300);
  writeFileSync(join(dir, 'n.mig'), name);
  const n = run([join(dir, 'n.mig')]);
  assert.equal(n.status, 1);
  assert.equal(n.stderr.split('\n').length, 2, n.stderr);
  assert.ok(!n.stderr.includes('\x1b'), 'no raw escape');
  assert.match(n.stderr, /\(section t\\x0a\\x1b\[1\)/);
});

test('--dump-ram: files 0600; a symlink in DIR is refused, its target untouched', (t) => {
  const dir = tempDir(t);
  const fresh = join(dir, 'fresh');
  assert.equal(run([SAMPLE, '--dump-ram', fresh]).status, 0);
  assert.equal(statSync(join(fresh, 'm0')).mode & 0o777, 0o600);
  const victim = join(dir, 'victim');
  writeFileSync(victim, 'precious');
  const ram = join(dir, 'ram');
  mkdirSync(ram);
  symlinkSync(victim, join(ram, 'm0'));
  const r = run([SAMPLE, '--dump-ram', ram]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /cannot open .*m0: Too many levels of symbolic links\n$/);
  assert.equal(readFileSync(victim, 'utf8'), 'precious');
});

test('--dump-ram naming a file: the error names --dump-ram and says it is not a directory, not the stream', (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'notadir');
  writeFileSync(file, 'precious');
  const r = run([SAMPLE, '--dump-ram', file]);
  assert.equal(r.status, 1);
  assert.equal(r.stdout, '');
  assert.equal(r.stderr, `qmigrate analyze: --dump-ram ${file}: not a directory\n`);
  assert.equal(readFileSync(file, 'utf8'), 'precious');
});

test('--dump-ram with a stream that cannot be read: the directories it made are removed', (t) => {
  const dir = tempDir(t);
  const r = run([join(dir, 'missing.mig'), '--dump-ram', join(dir, 'a', 'b')]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /missing\.mig: cannot open .*No such file or directory\n$/);
  assert.equal(existsSync(join(dir, 'a')), false);
  const kept = join(dir, 'kept');
  mkdirSync(kept);
  assert.equal(run([join(dir, 'missing.mig'), '--dump-ram', kept]).status, 1);
  assert.equal(existsSync(kept), true);
});

test('a FIFO nobody writes to: Ctrl-C ends the wait for a writer (exit 130)', async (t) => {
  const fifo = join(tempDir(t), 'vm.fifo');
  assert.equal(spawnSync('mkfifo', [fifo]).status, 0);
  const run = startQmigrate(t, ['analyze', fifo]);
  // Started and waiting in open(): tsx's start takes about a second here.
  await new Promise((r) => setTimeout(r, 3000));
  run.child.kill('SIGINT');
  assert.equal(await run.exit(15_000), 130);
});

test('analyze --help: what it prints, and examples', () => {
  const r = spawnSync(process.execPath, ['--import', 'tsx', entry, 'analyze', '--help'], {
    encoding: 'utf8',
  });
  assert.equal(r.status, 0);
  assert.match(r.stdout, /^Usage: qmigrate analyze \[options\] <file>/);
  assert.match(r.stdout, /--dump-ram <dir>/);
  assert.match(r.stdout, /Examples:\n {2}qmigrate analyze vm\.mig --pretty\n/);
  assert.ok(!existsSync('vm.mig'));
});
