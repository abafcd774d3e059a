// The postcopy wire formats of src/migration/stream/postcopy.ts: discard ranges from a bitmap
// and their grouping (12 a command, as QEMU's MAX_DISCARDS_PER_COMMAND), the RAM_DISCARD
// payload both ways, and the received bitmap (little-endian, 8-byte rounded, end mark).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  bitmapRanges,
  decodeRamDiscard,
  encodeRamDiscard,
  encodeRamDiscards,
  encodeRecvBitmap,
  readRecvBitmap,
  recvBitmapSize,
} from '../../src/migration/stream/postcopy.js';
import { QemuFileReader } from '../../src/migration/stream/qemu-file.js';
import { QapiError } from '../../src/qapi/errors.js';

const bitmapOf = (bits: boolean[]) => {
  const bm = new Uint32Array(Math.ceil(bits.length / 32) || 1);
  bits.forEach((b, p) => {
    if (b) bm[p >>> 5]! |= 1 << (p & 31);
  });
  return bm;
};

function reader(b: Buffer): QemuFileReader {
  const r = new QemuFileReader({ resume() {} });
  r.push(b);
  r.end();
  return r;
}

test('bitmapRanges: one range per run of set bits, in bytes', () => {
  fc.assert(
    fc.property(fc.array(fc.boolean(), { maxLength: 300 }), (bits) => {
      const ranges = bitmapRanges(bitmapOf(bits), bits.length, 4096);
      const back = new Array(bits.length).fill(false);
      let prevEnd = -1;
      for (const r of ranges) {
        assert.ok(r.length > 0 && r.start > prevEnd, 'ordered, non-empty, not touching');
        for (let a = r.start; a < r.start + r.length; a += 4096) back[a / 4096] = true;
        prevEnd = r.start + r.length;
      }
      assert.deepEqual(back, bits);
    }),
  );
  const full = new Uint32Array(4).fill(0xffffffff);
  assert.deepEqual(bitmapRanges(full, 100, 4096), [{ start: 0, length: 100 * 4096 }]);
});

test('RAM_DISCARD: 12 ranges a command; the payload as QEMU writes it, read back', () => {
  const ranges = Array.from({ length: 25 }, (_, i) => ({ start: i * 8192, length: 4096 }));
  const cmds = encodeRamDiscards('pc.ram', ranges);
  assert.deepEqual(
    cmds.map((c) => (c.length - 3 - 6) / 16),
    [12, 12, 1],
  );
  assert.deepEqual(encodeRamDiscards('m0', []), []);
  const one = encodeRamDiscard('m0', [{ start: 0x1000, length: 0x3000 }]);
  assert.equal(one.toString('hex'), `00026d3000${'0000000000001000'}${'0000000000003000'}`);
  assert.deepEqual(decodeRamDiscard(cmds[2]!), { idstr: 'pc.ram', ranges: ranges.slice(24) });
  assert.throws(() => decodeRamDiscard(Buffer.alloc(5)), /CMD_POSTCOPY_RAM_DISCARD invalid length \(5\)/);
});

test('received bitmap: size rounded to 8 bytes, little-endian, end mark; QEMU texts when wrong', async () => {
  for (const pages of [1, 63, 64, 65, 4096, 4100]) {
    const bits = Array.from({ length: pages }, (_, i) => (i * 7) % 3 === 0);
    const wire = encodeRecvBitmap(bitmapOf(bits), pages);
    assert.equal(Number(wire.readBigUInt64BE(0)), recvBitmapSize(pages));
    assert.equal(recvBitmapSize(pages) % 8, 0);
    assert.equal(wire[8]! & 1, 1, 'page 0 is bit 0 of the first byte');
    const got = await readRecvBitmap(reader(wire), 'm0', pages);
    assert.deepEqual(got, bitmapOf(bits).subarray(0, Math.ceil(pages / 32)));
  }
  const good = encodeRecvBitmap(new Uint32Array(2), 64);
  const badSize = Buffer.from(good);
  badSize.writeBigUInt64BE(16n, 0);
  await assert.rejects(readRecvBitmap(reader(badSize), 'm0', 64), {
    message: "ramblock 'm0' bitmap size mismatch (0x10 != 0x8)",
  });
  const badEnd = Buffer.from(good);
  badEnd.writeBigUInt64BE(1n, 16);
  await assert.rejects(readRecvBitmap(reader(badEnd), 'm0', 64), (e) => {
    assert.ok(e instanceof QapiError);
    return e.message === "ramblock 'm0' end mark incorrect: 0x1";
  });
  await assert.rejects(readRecvBitmap(reader(good.subarray(0, 12)), 'm0', 64), {
    message: "read bitmap failed for ramblock 'm0': (size 0x8, got: 0x4)",
  });
});
