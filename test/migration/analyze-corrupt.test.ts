// Truncated and corrupted copies of real streams through the analyser: each gives a result or
// a StreamError with a byte offset inside the input (checkAnalyze, the fuzz target's check),
// never another throw, a hang or an allocation out of proportion. Every truncation of the
// small stream; of the QEMU samples every one in their framing (header, configuration, RAM
// START, RAM END, device sections, EOF), every 7th in the VM description, one in every 4999
// of the pages between; then random byte corruptions (fast-check).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { analyzeBuffer } from '../../src/migration/stream/analyze.js';
import { analyzeBases, type Base, checkAnalyze } from '../fuzz/targets/migration-analyze.js';

const [dev, qemu10, qemu72zero] = analyzeBases().map((b) => b) as [Base, Base, Base];

test('every truncation of the small stream with every field kind: a clean error at an offset', async () => {
  const data = dev.bytes;
  assert.equal(await checkAnalyze(data), undefined);
  for (let n = 0; n < data.length; n++) {
    const at = await checkAnalyze(data.subarray(0, n));
    assert.ok(at !== undefined && at <= n, `a cut at ${n} of ${data.length}: failed at ${at}`);
  }
});

test('truncations of the QEMU 10.0 and 7.2 samples: their framing byte by byte, their pages sampled', async () => {
  for (const data of [qemu10.bytes, qemu72zero.bytes]) {
    assert.equal(await checkAnalyze(data), undefined);
    // Cut right after EOF, the stream is whole but for its VM description, which is optional.
    const whole = await analyzeBuffer(data);
    const complete = whole.eof + 1;
    const cuts = new Set<number>();
    // Header, configuration, the RAM START and the first records, byte by byte.
    for (let n = 0; n < 200; n++) cuts.add(n);
    // RAM END, the device sections and EOF byte by byte, the VM description every 7th byte.
    const devices = whole.sections.find((s) => s.kind === 'end')!.offset;
    for (let n = devices - 20; n <= complete + 5; n++) cuts.add(n);
    for (let n = complete + 5; n < data.length; n += 7) cuts.add(n);
    // The pages between, sampled.
    for (let n = 200; n < devices; n += 4999) cuts.add(n);
    for (const n of cuts) {
      const at = await checkAnalyze(data.subarray(0, n));
      assert.ok(
        at === undefined ? n === complete : at <= n,
        `a cut at ${n} of ${data.length}: failed at ${at}`,
      );
    }
  }
});

test('random byte corruptions of the three streams: a result or a clean error', async () => {
  const bases = [dev.bytes, qemu10.bytes, qemu72zero.bytes];
  await fc.assert(
    fc.asyncProperty(
      fc.nat(2),
      fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }),
      async (k, hits) => {
        const data = Buffer.from(bases[k]!);
        for (const [at, v] of hits) data[at % data.length] = v;
        await checkAnalyze(data);
      },
    ),
    { seed: 0x616e61, numRuns: 100 },
  );
});

/** A ram section of one 1 PiB block and `n` zero-page records, each in its own 256 MiB region. */
function scattered(n: number): Buffer {
  const parts: Buffer[] = [Buffer.from('QEVM\0\0\0\x03', 'latin1')];
  const u8 = (...x: number[]) => parts.push(Buffer.from(x));
  const be32 = (v: number) => parts.push(Buffer.from([v >>> 24, (v >>> 16) & 255, (v >>> 8) & 255, v & 255]));
  const be64 = (v: bigint) => {
    const t = Buffer.alloc(8);
    t.writeBigUInt64BE(v);
    parts.push(t);
  };
  const cstr = (s: string) => parts.push(Buffer.from([s.length]), Buffer.from(s, 'latin1'));
  u8(1);
  be32(1);
  cstr('ram');
  be32(0);
  be32(4);
  const len = 1n << 50n;
  be64(len | 0x04n); // MEM_SIZE
  cstr('m');
  be64(len);
  be64(0x02n); // ZERO, block named
  cstr('m');
  u8(0);
  for (let i = 1n; i < BigInt(n); i++) {
    be64((i << 28n) | 0x22n); // ZERO | CONTINUE, 256 MiB further on
    u8(0);
  }
  be64(0x10n); // EOS
  u8(0x7e);
  be32(1);
  u8(0);
  return Buffer.concat(parts);
}

test('zero-page records spread one per 256 MiB of a huge block: refused early, not 64 KiB of map per 9 bytes', async () => {
  const data = scattered(100_000);
  const rss = process.memoryUsage().rss;
  await assert.rejects(analyzeBuffer(data), (e: Error & { offset?: number }) => {
    assert.match(e.message, /^page records spread over \d+ separate 256 MiB regions of RAM/u);
    assert.ok(e.offset !== undefined && e.offset < 20_000, `at ${e.offset}`);
    return true;
  });
  assert.ok(process.memoryUsage().rss - rss < 200 << 20, 'the map stayed small');
  // A few such records are fine (a sparse but small map).
  const small = await analyzeBuffer(scattered(100));
  assert.equal(small.ram?.blocks[0]?.zero, 100);
});

test('a VM description with nested arrays of zero-size fields: refused at a bound, not looped until the heap runs out', async () => {
  const data = qemu10.bytes;
  const whole = await analyzeBuffer(data);
  const at = whole.vmdescription!.offset;
  const zeroSized = { name: 'b', type: 'uint8', size: 0, array_len: 1 << 20 };
  const desc = {
    devices: [
      {
        name: 'timer',
        instance_id: 0,
        fields: [{ name: 'a', type: 'struct', size: 0, array_len: 1 << 20, struct: { fields: [zeroSized] } }],
      },
    ],
  };
  const json = Buffer.from(JSON.stringify(desc));
  const len = Buffer.alloc(4);
  len.writeUInt32BE(json.length);
  const crafted = Buffer.concat([data.subarray(0, at + 1), len, json]);
  const timer = whole.sections.find((s) => s.idstr === 'timer')!;
  await assert.rejects(analyzeBuffer(crafted), (e: Error & { offset?: number; section?: string }) => {
    assert.equal(e.message, 'more than 1048576 values in one section by the VM description');
    assert.equal(e.section, 'timer');
    assert.ok(e.offset! > timer.offset && e.offset! < timer.offset + timer.length, `at ${e.offset}`);
    return true;
  });
});
