// Streams saved by each engine, analysed: a guest whose RAM is a known image (every third page
// zero, every third filled, every third random) migrates to a file with qmigrate vm and QEMU
// 10.0 (file:, and file: with mapped-ram, whose pages sit at fixed file offsets) and QEMU 7.2
// (exec:cat > F); the analysis names every page once and --dump-ram gives the image back
// byte for byte.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { RamDumper } from '../../src/cli/commands/analyze.js';
import { analyzeFile, type StreamAnalysis } from '../../src/migration/stream/analyze.js';
import { writeMixedImage } from '../helpers/guest.js';
import { type PeerKind, startPeer, waitMigration } from '../helpers/peers.js';

const MIB = 16;
const PAGES = (MIB << 20) / 4096;
const ZERO = Buffer.alloc(4096);

/** The image's all-zero pages (a third, and the filled ones whose fill byte is 0). */
function zeroPages(image: string): number {
  const ram = readFileSync(image);
  let n = 0;
  for (let p = 0; p < PAGES; p++) if (ram.subarray(p * 4096, (p + 1) * 4096).equals(ZERO)) n++;
  return n;
}

/** Saves the guest of a `kind` peer to a file through `uri(file)`, with `caps` on. */
async function saved(
  t: TestContext,
  kind: PeerKind,
  uri: (file: string) => string,
  caps: string[] = [],
): Promise<{ dir: string; image: string; file: string } | undefined> {
  const dir = mkdtempSync(join(tmpdir(), 'qmigrate-analyze-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const image = join(dir, 'ram.img');
  writeMixedImage(image, MIB << 20);
  const src = await startPeer(t, kind, dir, 'src', image, MIB);
  if (!src) return undefined;
  if (caps.length)
    await src.qmp.migrateSetCapabilities({
      capabilities: caps.map((c) => ({ capability: c as 'events', state: true })),
    });
  const file = join(dir, 'saved.mig');
  await src.qmp.migrate({ uri: uri(file) });
  const info = await waitMigration(src.qmp, 60_000);
  assert.equal(info.status, 'completed', info['error-desc']);
  await src.stop();
  return { dir, image, file };
}

/** Analyses with --dump-ram and checks the block is the image, each page given once. */
async function check(s: { dir: string; image: string; file: string }): Promise<StreamAnalysis> {
  const dumper = new RamDumper(join(s.dir, 'dump'));
  let a: StreamAnalysis;
  try {
    a = await analyzeFile(s.file, dumper);
  } finally {
    dumper.close(false);
  }
  assert.equal(a.ram?.blocks.length, 1);
  const block = a.ram!.blocks[0]!;
  assert.equal(block.name, 'm0');
  assert.equal(block.length, MIB << 20);
  assert.ok(
    readFileSync(join(s.dir, 'dump', 'm0')).equals(readFileSync(s.image)),
    'the dump is the guest RAM',
  );
  assert.equal(a.devices.find((d) => d.idstr === 'globalstate')?.meaning?.runstate, 'running');
  return a;
}

test('qmigrate vm -> file: analysed, its RAM dumped byte for byte', async (t) => {
  const s = await saved(t, 'qmigrate', (f) => `file:${f}`);
  const a = await check(s!);
  const b = a.ram!.blocks[0]!;
  assert.equal(b['distinct-pages'], PAGES);
  assert.equal(b.zero + b.normal, b.records);
  assert.deepEqual(
    a.sections.map((x) => `${x.kind} ${x.idstr}`).filter((x, i, all) => all.indexOf(x) === i),
    ['start ram', 'part ram', 'end ram', 'full timer', 'full globalstate'],
  );
  assert.deepEqual(
    a.commands.map((c) => c.name),
    ['SWITCHOVER_START'],
  );
});

test('QEMU 10.0 -> file: analysed, its RAM dumped byte for byte', async (t) => {
  const s = await saved(t, '10.0', (f) => `file:${f}`);
  if (!s) return;
  const a = await check(s);
  // A static guest: every page once, the zero ones as ZERO records.
  const zero = zeroPages(s.image);
  assert.deepEqual(
    { ...a.ram!.blocks[0]!, name: undefined },
    {
      name: undefined,
      length: MIB << 20,
      normal: PAGES - zero,
      zero,
      'distinct-pages': PAGES,
      records: PAGES,
    },
  );
});

test('QEMU 10.0 -> file: with mapped-ram: the pages at their file offsets, dumped byte for byte', async (t) => {
  const s = await saved(t, '10.0', (f) => `file:${f}`, ['mapped-ram']);
  if (!s) return;
  const a = await check(s);
  assert.deepEqual(a.configuration?.capabilities, ['mapped-ram']);
  const b = a.ram!.blocks[0]!;
  // mapped-ram leaves zero pages out (their bitmap bit clear): holes that read as zeros.
  assert.equal(b.normal, PAGES - zeroPages(s.image));
  assert.equal(b.zero, 0);
  assert.ok(b['mapped-ram'] && b['mapped-ram']['pages-offset'] % 4096 === 0);
});

test('QEMU 7.2 -> exec:cat > F: analysed, its RAM dumped byte for byte', async (t) => {
  const s = await saved(t, '7.2', (f) => `exec:cat > ${f}`);
  if (!s) return;
  const a = await check(s);
  assert.deepEqual(a.commands, []);
  assert.equal(a.ram!.blocks[0]!.records, PAGES);
});
