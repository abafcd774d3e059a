// qmigrate analyze against QEMU 10.0's own scripts/analyze-migration.py on the same files: a
// QEMU 10.0 -machine none stream (the sample) and fresh -machine pc ones (TCG, 30 device
// sections) from QEMU 10.0 (file:) and 7.2 (exec:). The script's `-f` state (section names and ids, RAM block sizes, every device
// field it prints) equals qmigrate's analysis in the script's format, and the RAM files its
// `-x` writes equal --dump-ram's byte for byte (and pc.ram equals the guest's, by pmemsave).
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { RamDumper, ramFileName } from '../../src/cli/commands/analyze.js';
import { analyzeFile, analyzeStream, type StreamAnalysis } from '../../src/migration/stream/analyze.js';
import { pyView, requireScript, runScript } from '../helpers/analyze-py.js';
import { type RunningQemu, requireQemu, startQemu } from '../helpers/qemu.js';

const PAGE = 4096;
const ZERO = Buffer.alloc(PAGE);
const SAMPLE = fileURLToPath(new URL('../fixtures/samples/qemu10-none-16M-pattern.mig', import.meta.url));

/** A file's bytes in the 64 KiB pieces a pipe gives. */
function* chunks(data: Buffer): Generator<Buffer> {
  for (let at = 0; at < data.length; at += 65536) yield data.subarray(at, at + 65536);
}

/** Waits for `q`'s migration to complete (15 s at most); a failed one fails the test. */
async function migrated(q: RunningQemu): Promise<void> {
  for (let i = 0; ; i++) {
    const r = (await q.qmp.execute('query-migrate')) as { return: { status: string } };
    if (r.return.status === 'completed') return;
    assert.ok(r.return.status !== 'failed' && i < 300, `migration ${r.return.status}`);
    await new Promise((res) => setTimeout(res, 50));
  }
}

function tempDir(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'qmigrate-analyze-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Analyses `file` with --dump-ram into `dir`/ours. */
async function analyzeAndDump(file: string, dir: string): Promise<StreamAnalysis> {
  const dumper = new RamDumper(join(dir, 'ours'));
  try {
    return await analyzeFile(file, dumper);
  } finally {
    dumper.close(false);
  }
}

/** Both tools on `file`: the state documents equal, and each RAM block's file equal. */
async function compareWithScript(file: string, dir: string): Promise<StreamAnalysis> {
  const ours = await analyzeAndDump(file, dir);
  const state = JSON.parse(await runScript(['-f', file], dir));
  assert.deepEqual(Object.keys(pyView(ours)), Object.keys(state), 'the same sections, in order');
  assert.deepEqual(pyView(ours), state);
  const x = join(dir, 'x');
  mkdirSync(x);
  const listed = (await runScript(['-x', '-f', file], x)).trim().split('\n');
  for (const b of ours.ram!.blocks) {
    assert.ok(listed.includes(b.name), `the script extracted ${b.name}`);
    const theirs = readFileSync(join(x, b.name));
    const mine = readFileSync(join(dir, 'ours', ramFileName(b.name)));
    assert.equal(mine.length, b.length);
    // The script's -x never writes a ZERO record (it only skips its fill byte), so a page the
    // running guest cleared after it was sent with data keeps the old data there; a
    // destination, and --dump-ram, zero it. Any other difference is a failure.
    const differ: number[] = [];
    for (let p = 0; p * PAGE < mine.length; p++) {
      const page = mine.subarray(p * PAGE, (p + 1) * PAGE);
      if (!page.equals(theirs.subarray(p * PAGE, (p + 1) * PAGE)) && !page.equals(ZERO)) differ.push(p);
    }
    assert.deepEqual(differ, [], `RAM block ${b.name}: pages where --dump-ram differs from the script's -x`);
  }
  return ours;
}

test('QEMU 10.0 -machine none file: qmigrate analyze agrees with analyze-migration.py', async (t) => {
  if (!requireScript(t)) return;
  const a = await compareWithScript(SAMPLE, tempDir(t));
  assert.deepEqual(
    a.sections.map((s) => `${s.kind} ${s.idstr} ${s['section-id']}`),
    ['start ram 1', 'part ram 1', 'end ram 1', 'full timer 0', 'full globalstate 3'],
  );
});

test('a stream with OPEN_RETURN_PATH and PING: analyze-migration.py 10.0 raises, qmigrate analyze reads it', async (t) => {
  if (!requireScript(t)) return;
  const file = fileURLToPath(
    new URL('../fixtures/samples/qemu10-none-16M-multifd2-rp/conn0.c2s', import.meta.url),
  );
  await assert.rejects(runScript(['-f', file], tempDir(t)), /Unknown QEMU_VM_COMMAND: 1/);
  const a = await analyzeFile(file);
  assert.deepEqual(
    a.commands.map((c) => c.name),
    ['OPEN_RETURN_PATH', 'PING', 'SWITCHOVER_START'],
  );
});

for (const [version, uri] of [
  ['10.0', (f: string) => `file:${f}`],
  ['7.2', (f: string) => `exec:cat > ${f}`],
] as const) {
  test(`QEMU ${version} -machine pc (TCG) stream: every device field as analyze-migration.py reads it, RAM as pmemsave`, async (t) => {
    if (!requireScript(t)) return;
    const bin = requireQemu(t, version);
    if (!bin) return;
    const dir = tempDir(t);
    const q = await startQemu(bin, [], ['-machine', 'pc', '-accel', 'tcg', '-m', '32M']);
    t.after(() => q.stop());
    const file = join(dir, 'pc.mig');
    assert.deepEqual(await q.qmp.execute('migrate', { uri: uri(file) }), { return: {} });
    await migrated(q);
    // The source's guest stays stopped (postmigrate): its RAM is what the stream carried.
    const mem = join(dir, 'pmem');
    assert.deepEqual(await q.qmp.execute('pmemsave', { val: 0, size: 32 << 20, filename: mem }), {
      return: {},
    });
    const a = await compareWithScript(file, dir);
    assert.ok(a.devices.length >= 25, `${a.devices.length} device sections`);
    assert.equal(a.configuration?.['machine-type'], `pc-i440fx-${version}`);
    assert.equal(a.devices.find((d) => d.idstr === 'globalstate')?.meaning?.runstate, 'running');
    // From a pipe, where the VM description cannot be looked up first, every device the same.
    const piped = await analyzeStream(Readable.from(chunks(readFileSync(file))));
    assert.deepEqual(piped.devices, a.devices);
    const ram = readFileSync(join(dir, 'ours', 'pc.ram'));
    const phys = readFileSync(mem);
    // 0xa0000-0xfffff is the VGA window and the BIOS shadow in the physical view, not pc.ram.
    assert.ok(ram.subarray(0, 0xa0000).equals(phys.subarray(0, 0xa0000)), 'pc.ram below 640 KiB');
    assert.ok(ram.subarray(0x100000).equals(phys.subarray(0x100000)), 'pc.ram above 1 MiB');
  });
}

test('QEMU 10.0 mapped-ram file: qmigrate analyze reads it, analyze-migration.py 10.0 fails on it', async (t) => {
  if (!requireScript(t)) return;
  const bin = requireQemu(t, '10.0');
  if (!bin) return;
  const dir = tempDir(t);
  const q = await startQemu(bin, [], ['-machine', 'pc', '-accel', 'tcg', '-m', '32M']);
  t.after(() => q.stop());
  const caps = [{ capability: 'mapped-ram', state: true }];
  assert.deepEqual(await q.qmp.execute('migrate-set-capabilities', { capabilities: caps }), { return: {} });
  const file = join(dir, 'mapped.mig');
  assert.deepEqual(await q.qmp.execute('migrate', { uri: `file:${file}` }), { return: {} });
  await migrated(q);
  const mem = join(dir, 'pmem');
  assert.deepEqual(await q.qmp.execute('pmemsave', { val: 0, size: 32 << 20, filename: mem }), {
    return: {},
  });
  const a = await analyzeAndDump(file, dir);
  assert.deepEqual(a.configuration?.capabilities, ['mapped-ram']);
  const ram = readFileSync(join(dir, 'ours', 'pc.ram'));
  const phys = readFileSync(mem);
  assert.ok(ram.subarray(0, 0xa0000).equals(phys.subarray(0, 0xa0000)), 'pc.ram below 640 KiB');
  assert.ok(ram.subarray(0x100000).equals(phys.subarray(0x100000)), 'pc.ram above 1 MiB');
  assert.ok(a.ram!.blocks.every((b) => b['mapped-ram'] !== undefined));
  assert.ok(a.devices.length >= 25);
  // The script's mapped-ram path reads a block name with a string length (10.0.2).
  await assert.rejects(runScript(['-f', file], dir), /Traceback/);
});
