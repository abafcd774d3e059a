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
