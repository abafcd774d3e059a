// What the stream fuzz targets (test/fuzz/targets/migration-*.ts) found, kept as fixed
// examples: each was a broken promise of the loader before its fix.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { channelBase, checkChannel } from '../fuzz/targets/migration-multifd.js';
import { checkStream, mutateStream, streamBase } from '../fuzz/targets/migration-stream.js';

test('a section name with control bytes is quoted escaped in the error (fuzz seed 84256686)', async () => {
  const base = streamBase(1);
  const data = mutateStream(base, [
    { kind: 'delete', at: 1327116332, n: 16 },
    { kind: 'insert', at: 22, bytes: Uint8Array.from([218, 208, 110, 218, 123, 13]) },
  ]);
  await checkStream(data, base);
});

test('every base of the stream target loads as it is (the mutations start from valid streams)', async () => {
  for (const k of [0, 1, 2, 3]) {
    const base = streamBase(k);
    for (const piece of [1 << 20, 4096])
      assert.equal(await checkStream(base.bytes, base, piece), undefined, `base ${k}`);
  }
});

test('every base of the multifd target is read whole, to its last SYNC', async () => {
  for (const [k, syncs] of [
    [0, 2],
    [1, 0],
  ] as const) {
    const base = channelBase(k);
    const out = await checkChannel(base.bytes, base, 4096);
    assert.equal(out.error, undefined, `base ${k}: ${out.error}`);
    if (syncs) assert.equal(out.syncs, syncs);
    else assert.ok(out.syncs > 0, `base ${k}: no SYNC`);
  }
});
