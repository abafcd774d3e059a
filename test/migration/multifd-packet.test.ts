// The multifd records' codec (src/migration/stream/multifd-packet.ts) against QEMU 10.0's own
// bytes: every init packet and packet header of a captured QEMU 10.0 -> 10.0 migration
// decodes to the fields multifd.h names and encodes back to the same bytes; the field
// offsets are multifd.h's (MultiFDInit_t, MultiFDPacket_t), checked byte by byte.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  decodeMultifdHeader,
  decodeMultifdInit,
  encodeMultifdHeader,
  encodeMultifdInit,
  MULTIFD_FLAG_SYNC,
  MULTIFD_HEADER,
  MULTIFD_INIT_SIZE,
  MULTIFD_PAGES,
} from '../../src/migration/stream/multifd-packet.js';

const PAGE = 4096;
const sample = (name: string) =>
  readFileSync(
    fileURLToPath(new URL(`../fixtures/samples/qemu10-none-16M-multifd2-rp/${name}`, import.meta.url)),
  );

/** The headers of a captured multifd channel, each with where it starts. */
function headers(channel: Buffer): { at: number; bytes: Buffer }[] {
  const out: { at: number; bytes: Buffer }[] = [];
  for (let at = MULTIFD_INIT_SIZE; at < channel.length; ) {
    const bytes = channel.subarray(at, at + MULTIFD_HEADER);
    out.push({ at, bytes });
    at += MULTIFD_HEADER + decodeMultifdHeader(bytes).nextPacketSize;
  }
  return out;
}

for (const [id, name] of [
  [0, 'conn1.c2s'],
  [1, 'conn2.c2s'],
] as const) {
  test(`QEMU 10.0's multifd channel ${id}: every record decodes and encodes back byte for byte`, () => {
    const channel = sample(name);
    const init = decodeMultifdInit(channel);
    assert.deepEqual(
      { ...init, uuid: init.uuid.toString('hex') },
      { magic: 0x11223344, version: 1, uuid: '0'.repeat(32), id },
    );
    assert.deepEqual(encodeMultifdInit(init), channel.subarray(0, MULTIFD_INIT_SIZE));
    assert.deepEqual(encodeMultifdInit({ id }), channel.subarray(0, MULTIFD_INIT_SIZE));

    const all = headers(channel);
    let pages = 0;
    let syncs = 0;
    for (const { at, bytes } of all) {
      const h = decodeMultifdHeader(bytes);
      assert.deepEqual(encodeMultifdHeader(h), bytes, `header at ${at}`);
      assert.equal(h.nextPacketSize, h.normalPages * PAGE);
      if (h.flags & MULTIFD_FLAG_SYNC) {
        syncs++;
        // QEMU 10.0's SYNC packet is the sender's: no pages, no block, nothing allocated.
        assert.deepEqual(encodeMultifdHeader({ flags: MULTIFD_FLAG_SYNC, packetNum: h.packetNum }), bytes);
        continue;
      }
      assert.equal(h.ramblock, 'm0');
      assert.equal(h.pagesAlloc, MULTIFD_PAGES);
      assert.equal(h.offsets.length, h.normalPages + h.zeroPages);
      // The sample's page i is non-zero exactly when i is a multiple of 16: normal pages first.
      for (const [k, off] of h.offsets.entries()) {
        assert.equal(off % PAGE, 0);
        assert.equal((off / PAGE) % 16 === 0, k < h.normalPages, `offset ${off} at ${at}`);
      }
      pages += h.offsets.length;
    }
    assert.ok(syncs >= 2 && pages > 0, `${syncs} syncs, ${pages} pages`);
    // Packet numbers are the source's one counter over all channels: rising on each.
    const nums = all.map(({ bytes }) => decodeMultifdHeader(bytes).packetNum);
    assert.deepEqual(
      nums,
      [...nums].sort((a, b) => a - b),
    );
  });
}

test("the fields sit where multifd.h's MultiFDPacket_t and MultiFDInit_t put them", () => {
  const offsets = [0x1_2345_6000, 0x2000, 0x5000];
  const b = encodeMultifdHeader({
    flags: 0x0102_0304,
    pagesAlloc: MULTIFD_PAGES,
    normalPages: 2,
    nextPacketSize: 2 * PAGE,
    packetNum: 0x0a0b_0c0d_0e0f,
    zeroPages: 1,
    ramblock: 'pc.ram',
    offsets,
  });
  assert.equal(b.length, 1344);
  assert.equal(b.readUInt32BE(0), 0x11223344); // magic
  assert.equal(b.readUInt32BE(4), 1); // version
  assert.equal(b.readUInt32BE(8), 0x0102_0304); // flags
  assert.equal(b.readUInt32BE(12), 128); // pages_alloc
  assert.equal(b.readUInt32BE(16), 2); // normal_pages
  assert.equal(b.readUInt32BE(20), 2 * PAGE); // next_packet_size
  assert.equal(b.readBigUInt64BE(24), 0x0a0b_0c0d_0e0fn); // packet_num
  assert.equal(b.readUInt32BE(32), 1); // zero_pages
  assert.ok(b.subarray(36, 64).every((x) => x === 0)); // unused32[1], unused64[3]
  assert.equal(b.subarray(64, 70).toString('latin1'), 'pc.ram'); // ramblock[256]
  assert.ok(b.subarray(70, 320).every((x) => x === 0));
  for (const [k, off] of offsets.entries()) assert.equal(b.readBigUInt64BE(320 + 8 * k), BigInt(off));
  assert.ok(b.subarray(320 + 8 * offsets.length).every((x) => x === 0));

  const init = encodeMultifdInit({ id: 7, uuid: Buffer.from('00112233445566778899aabbccddeeff', 'hex') });
  assert.equal(init.length, 64);
  assert.equal(init.readUInt32BE(0), 0x11223344); // magic
  assert.equal(init.readUInt32BE(4), 1); // version
  assert.equal(init.subarray(8, 24).toString('hex'), '00112233445566778899aabbccddeeff'); // uuid
  assert.equal(init[24], 7); // id
  assert.ok(init.subarray(25).every((x) => x === 0)); // unused1[7], unused2[4]
});

test('decoding bounds what a hostile header claims: offsets to the header, the name to 255 bytes', () => {
  const b = Buffer.alloc(MULTIFD_HEADER, 0x41);
  b.writeUInt32BE(0xffff_ffff, 16); // normal_pages
  b.writeUInt32BE(0xffff_ffff, 32); // zero_pages
  const h = decodeMultifdHeader(b);
  assert.equal(h.offsets.length, MULTIFD_PAGES);
  assert.equal(h.ramblock, 'A'.repeat(255));
  assert.ok(
    h.offsets.every((o) => o >= 2 ** 53),
    'an offset beyond 2^53 never reads smaller',
  );
});
