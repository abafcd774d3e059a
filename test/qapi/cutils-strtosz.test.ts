// qemu_strtosz as file: offsets use it; values and errnos as QEMU's util/cutils.c gives them.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { EINVAL, ERANGE, strtosz } from '../../src/qapi/cutils.js';

const ok = (text: string, value: bigint) => assert.deepEqual(strtosz(text), { ok: true, value }, text);
const bad = (text: string, errno: string) => assert.deepEqual(strtosz(text), { ok: false, errno }, text);

test('decimal, hex and suffixes', () => {
  ok('0', 0n);
  ok('4096', 4096n);
  ok('0x1000', 4096n);
  ok('0X1f', 31n);
  ok('1K', 1024n);
  ok('1k', 1024n);
  ok('2M', 2n << 20n);
  ok('1G', 1n << 30n);
  ok('1E', 1n << 60n);
  ok('5B', 5n);
  ok(' 7', 7n);
  ok('+7', 7n);
  ok('18446744073709551615', (1n << 64n) - 1n);
});

test('fractions need a suffix and round half up', () => {
  ok('1.5K', 1536n);
  ok('1.5M', 1572864n);
  ok('.5K', 512n);
  ok('1.', 1n);
  ok('1.0', 1n);
  ok('0.0001K', 0n);
  ok('0.0005K', 1n);
  bad('1.5', EINVAL);
  bad('1.5B', EINVAL);
});

test('errors as QEMU reports them', () => {
  bad('', EINVAL);
  bad('abc', EINVAL);
  bad('0x', EINVAL);
  bad('0x10M', EINVAL);
  bad('0x1.8', EINVAL);
  bad('1e3', EINVAL);
  bad('1,offset=2', EINVAL);
  bad('-1', ERANGE);
  bad('-.5K', ERANGE);
  bad('16E', ERANGE);
  bad('99999999999999999999', ERANGE);
  bad('0x10000000000000000', ERANGE);
});

test('every uint64 reads back from decimal and hex', () => {
  fc.assert(
    fc.property(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), (n) => {
      assert.deepEqual(strtosz(n.toString()), { ok: true, value: n });
      assert.deepEqual(strtosz(`0x${n.toString(16)}`), { ok: true, value: n });
    }),
  );
});
