// What the stream fuzz targets (test/fuzz/targets/migration-*.ts) found, kept as fixed
// examples: each was a broken promise of the loader before its fix.
import { test } from 'node:test';
import { checkStream, mutateStream, streamBase } from '../fuzz/targets/migration-stream.js';

test('a section name with control bytes is quoted escaped in the error (fuzz seed 84256686)', async () => {
  const base = streamBase(1);
  const data = mutateStream(base, [
    { kind: 'delete', at: 1327116332, n: 16 },
    { kind: 'insert', at: 22, bytes: Uint8Array.from([218, 208, 110, 218, 123, 13]) },
  ]);
  await checkStream(data, base);
});
