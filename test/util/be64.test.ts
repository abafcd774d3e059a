// 64-bit big-endian fields as numbers (src/util/be64.ts), the one helper the stream writer and
// reader, the RAM records and the multifd packets use: exact below 2^53, the bytes Buffer's
// own BigInt codec writes, a refusal for what a number cannot hold, never a wrong smaller
// value when a corrupt stream has one of 2^53 or more.
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import fc from 'fast-check';
import { InternalError } from '../../src/errors.js';
import { QemuFileReader, QemuFileWriter } from '../../src/migration/stream/qemu-file.js';
import { readBe64, writeBe64 } from '../../src/util/be64.js';

const bigBytes = (v: bigint) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(v);
  return b;
};

test('every u64 below 2^53 is written as its big-endian bytes and read back exactly', () => {
  fc.assert(
    fc.property(fc.maxSafeNat(), fc.nat(16), (v, at) => {
      const b = Buffer.alloc(at + 8, 0xaa);
      writeBe64(b, at, v);
      assert.deepEqual(b.subarray(at), bigBytes(BigInt(v)));
      assert.ok(
        b.subarray(0, at).every((x) => x === 0xaa),
        'bytes before the field untouched',
      );
      assert.equal(readBe64(b, at), v);
    }),
  );
  for (const v of [0, 1, 0xffffffff, 0x100000000, 0x1_0000_0001, Number.MAX_SAFE_INTEGER]) {
    const b = Buffer.alloc(8);
    writeBe64(b, 0, v);
    assert.equal(readBe64(b, 0), v);
    assert.deepEqual(b, bigBytes(BigInt(v)));
  }
});

test('a value a number cannot hold exactly is refused, the buffer left as it was', () => {
  for (const v of [-1, 2 ** 53, 2 ** 64, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
    const b = Buffer.alloc(8, 0x55);
    assert.throws(
      () => writeBe64(b, 0, v),
      (e: unknown) => e instanceof InternalError && e.code === 'INTERNAL',
      String(v),
    );
    assert.ok(
      b.every((x) => x === 0x55),
      String(v),
    );
  }
});

test('a field of 2^53 or more reads as at least 2^53, so bound checks still refuse it', () => {
  fc.assert(
    fc.property(fc.bigInt({ min: 2n ** 53n, max: 2n ** 64n - 1n }), (v) => {
      assert.ok(readBe64(bigBytes(v), 0) >= 2 ** 53);
    }),
  );
});

test('the stream writer and reader carry be64 through the helper, across chunk boundaries', async () => {
  const chunks: Buffer[] = [];
  const out = new Writable({
    write(c, _e, cb) {
      chunks.push(c);
      cb();
    },
  });
  const w = new QemuFileWriter(out);
  const values = [0, 0x1234_5678_9abc, Number.MAX_SAFE_INTEGER, 2 ** 32, 0x10 /* RAM EOS */];
  for (const v of values) w.be64(v);
  assert.throws(() => w.be64(2 ** 53), /not a u64/);
  await w.end();
  const bytes = Buffer.concat(chunks);
  assert.deepEqual(bytes, Buffer.concat(values.map((v) => bigBytes(BigInt(v)))));
  // Fed 3 bytes at a time, so that most fields straddle two chunks.
  const r = new QemuFileReader({ resume() {} });
  for (let i = 0; i < bytes.length; i += 3) r.push(bytes.subarray(i, i + 3));
  r.end();
  for (const v of values) {
    await r.need(8);
    assert.equal(r.be64(), v);
  }
  assert.equal(await r.atEnd(), true);
});
