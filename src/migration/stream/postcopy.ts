/**
 * Wire formats of postcopy shared by both sides (migration/savevm.c qemu_savevm_send_postcopy_*,
 * loadvm_postcopy_ram_handle_discard; migration/ram.c ramblock_recv_bitmap_send,
 * ram_dirty_bitmap_reload; migration/migration.c migrate_send_rp_req_pages): the ADVISE page
 * sizes, RAM_DISCARD commands, RECV_BITMAP (command, return-path header and the bitmap that
 * follows it) and the page requests. Bitmaps are Uint32Arrays, page p at bit p&31 of word p>>>5.
 */
import { QapiError } from '../../qapi/errors.js';
import type { QemuFileReader } from './qemu-file.js';

/** Ranges one MIG_CMD_POSTCOPY_RAM_DISCARD carries at most (migration/postcopy-ram.c). */
export const MAX_DISCARDS_PER_COMMAND = 12;
/** The first byte of a RAM_DISCARD payload. */
export const POSTCOPY_RAM_DISCARD_VERSION = 0;
/** The be64 after a received bitmap (migration/ram.c RAMBLOCK_RECV_BITMAP_ENDING). */
export const RAMBLOCK_RECV_BITMAP_ENDING = 0x0123456789abcdefn;
/** RESUME_ACK's only valid value (MIGRATION_RESUME_ACK_VALUE). */
export const MIGRATION_RESUME_ACK_VALUE = 1;

/** A run of pages, in bytes within its RAM block, as RAM_DISCARD carries it. */
export interface DiscardRange {
  start: number;
  length: number;
}

/** POSTCOPY_ADVISE's payload: be64 host page size (the OR of every block's), be64 target page size. */
export function encodeAdvise(hostPageSize: number, targetPageSize: number): Buffer {
  const b = Buffer.alloc(16);
  b.writeBigUInt64BE(BigInt(hostPageSize), 0);
  b.writeBigUInt64BE(BigInt(targetPageSize), 8);
  return b;
}

/**
 * The runs of set bits of `bitmap` over its first `pages` bits, in bytes of `pageSize` pages
 * (postcopy_send_discard_bm_ram: one range per run of dirty pages).
 */
export function bitmapRanges(bitmap: Uint32Array, pages: number, pageSize: number): DiscardRange[] {
  const out: DiscardRange[] = [];
  let p = 0;
  while (p < pages) {
    const w = p >>> 5;
    const word = bitmap[w]!;
    // Whole empty words are skipped without looking at their bits.
    if (word === 0 && (p & 31) === 0) {
      p += 32;
      continue;
    }
    if ((word & (1 << (p & 31))) === 0) {
      p++;
      continue;
    }
    const first = p;
    while (p < pages) {
      const v = bitmap[p >>> 5]!;
      if (v === 0xffffffff && (p & 31) === 0 && p + 32 <= pages) {
        p += 32;
        continue;
      }
      if ((v & (1 << (p & 31))) === 0) break;
      p++;
    }
    out.push({ start: first * pageSize, length: (p - first) * pageSize });
  }
  return out;
}

/**
 * RAM_DISCARD payloads for one block: up to MAX_DISCARDS_PER_COMMAND ranges each, in order
 * (postcopy_discard_send_range / postcopy_discard_send_finish). No range, no command.
 */
export function encodeRamDiscards(idstr: string, ranges: readonly DiscardRange[]): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < ranges.length; i += MAX_DISCARDS_PER_COMMAND) {
    out.push(encodeRamDiscard(idstr, ranges.slice(i, i + MAX_DISCARDS_PER_COMMAND)));
  }
  return out;
}

/** One RAM_DISCARD payload: version, counted name, a NUL, then be64 start and be64 length per range. */
export function encodeRamDiscard(idstr: string, ranges: readonly DiscardRange[]): Buffer {
  const name = Buffer.from(idstr, 'latin1');
  const b = Buffer.alloc(3 + name.length + 16 * ranges.length);
  b[0] = POSTCOPY_RAM_DISCARD_VERSION;
  b[1] = name.length;
  name.copy(b, 2);
  let at = 3 + name.length;
  for (const r of ranges) {
    b.writeBigUInt64BE(BigInt(r.start), at);
    b.writeBigUInt64BE(BigInt(r.length), at + 8);
    at += 16;
  }
  return b;
}

/**
 * Reads a RAM_DISCARD payload, with QEMU 10.0's checks and texts
 * (loadvm_postcopy_ram_handle_discard); the ranges are not checked against any block.
 * @throws {QapiError}
 */
export function decodeRamDiscard(data: Buffer): { idstr: string; ranges: DiscardRange[] } {
  const len = data.length;
  if (len < 1 + 1 + 1 + 1 + 2 * 8) throw new QapiError(`CMD_POSTCOPY_RAM_DISCARD invalid length (${len})`);
  if (data[0] !== POSTCOPY_RAM_DISCARD_VERSION)
    throw new QapiError(`CMD_POSTCOPY_RAM_DISCARD invalid version (${data[0]})`);
  const n = data[1]!;
  if (2 + n + 1 > len) throw new QapiError('CMD_POSTCOPY_RAM_DISCARD Failed to read RAMBlock ID');
  const idstr = data.subarray(2, 2 + n).toString('latin1');
  if (data[2 + n] !== 0) throw new QapiError(`CMD_POSTCOPY_RAM_DISCARD missing nil (${data[2 + n]})`);
  const rest = len - 3 - n;
  if (rest % 16) throw new QapiError(`CMD_POSTCOPY_RAM_DISCARD invalid length (${rest})`);
  const ranges: DiscardRange[] = [];
  for (let at = 3 + n; at < len; at += 16) {
    ranges.push({ start: Number(data.readBigUInt64BE(at)), length: Number(data.readBigUInt64BE(at + 8)) });
  }
  return { idstr, ranges };
}

/** MIG_CMD_RECV_BITMAP's payload and RP RECV_BITMAP's: the block name, counted by one byte. */
export function encodeCountedName(idstr: string): Buffer {
  const name = Buffer.from(idstr, 'latin1');
  const b = Buffer.alloc(1 + name.length);
  b[0] = name.length;
  name.copy(b, 1);
  return b;
}

/** The bytes of a block's received bitmap on the wire: one bit a page, rounded up to 8 bytes. */
export function recvBitmapSize(pages: number): number {
  return Math.ceil(Math.ceil(pages / 8) / 8) * 8;
}

/**
 * What follows RP RECV_BITMAP on the return path: be64 size, the bitmap little-endian (page
 * p at bit p&7 of byte p>>3), be64 RAMBLOCK_RECV_BITMAP_ENDING.
 */
export function encodeRecvBitmap(received: Uint32Array, pages: number): Buffer {
  const size = recvBitmapSize(pages);
  const b = Buffer.alloc(16 + size);
  b.writeBigUInt64BE(BigInt(size), 0);
  for (let w = 0; w * 32 < pages; w++) {
    let v = received[w]! >>> 0;
    const tail = pages - w * 32;
    if (tail < 32) v &= (1 << tail) - 1;
    // The last word may stop inside the rounded size; write only the bytes that fit.
    const at = 8 + w * 4;
    for (let k = 0; k < 4 && at + k < 8 + size; k++) b[at + k] = (v >>> (8 * k)) & 0xff;
  }
  b.writeBigUInt64BE(RAMBLOCK_RECV_BITMAP_ENDING, 8 + size);
  return b;
}

/**
 * Reads a received bitmap from the return path (ram_dirty_bitmap_reload's reading), with
 * QEMU 10.0's texts.
 * @returns the received pages, as a bitmap of `pages` bits.
 * @throws {QapiError} on a wrong size, a short read or a wrong end mark.
 */
export async function readRecvBitmap(r: QemuFileReader, idstr: string, pages: number): Promise<Uint32Array> {
  const local = recvBitmapSize(pages);
  await r.need(8, 'a received bitmap');
  const size = r.be64();
  if (size !== local) {
    throw new QapiError(
      `ramblock '${idstr}' bitmap size mismatch (0x${size.toString(16)} != 0x${local.toString(16)})`,
    );
  }
  try {
    await r.need(local + 8, 'a received bitmap');
  } catch {
    throw new QapiError(
      `read bitmap failed for ramblock '${idstr}': (size 0x${local.toString(16)}, got: 0x${Math.min(r.available, local).toString(16)})`,
    );
  }
  const bytes = r.bytes(local);
  const hi = r.be32();
  const lo = r.be32();
  const end = (BigInt(hi) << 32n) | BigInt(lo);
  if (end !== RAMBLOCK_RECV_BITMAP_ENDING)
    throw new QapiError(`ramblock '${idstr}' end mark incorrect: 0x${end.toString(16)}`);
  const out = new Uint32Array(Math.ceil(pages / 32));
  for (let w = 0; w < out.length; w++) {
    let v = 0;
    for (let k = 0; k < 4; k++) v |= (bytes[w * 4 + k] ?? 0) << (8 * k);
    const tail = pages - w * 32;
    out[w] = tail < 32 ? v & ((1 << tail) - 1) : v;
  }
  return out;
}

/**
 * A page request's return-path payload: REQ_PAGES (be64 start, be32 length) or, with a block
 * name, REQ_PAGES_ID (the same, then the counted name).
 */
export function encodeReqPages(start: number, len: number, idstr?: string): Buffer {
  const name = idstr === undefined ? undefined : Buffer.from(idstr, 'latin1');
  const b = Buffer.alloc(12 + (name ? 1 + name.length : 0));
  b.writeBigUInt64BE(BigInt(start), 0);
  b.writeUInt32BE(len, 8);
  if (name) {
    b[12] = name.length;
    name.copy(b, 13);
  }
  return b;
}
