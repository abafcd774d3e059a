/**
 * 64-bit big-endian fields as JS numbers, the one place that splits them into two 32-bit
 * halves: QEMU's qemu_put_be64/qemu_get_be64 (migration/qemu-file.c) and the u64 fields of
 * its multifd packets (migration/multifd.h). Offsets, lengths and counters stay below 2^53,
 * where a number is exact; two 32-bit accesses are cheaper than a BigInt per field.
 */
import { InternalError } from '../errors.js';

const TWO32 = 0x1_0000_0000;

/**
 * The big-endian u64 at `off`. Exact below 2^53; a larger value (only a corrupt stream has
 * one) comes back rounded but never below 2^53, so a bound check against any real size or
 * offset still refuses it.
 */
export function readBe64(b: Buffer, off: number): number {
  return b.readUInt32BE(off) * TWO32 + b.readUInt32BE(off + 4);
}

/**
 * Writes `v` as a big-endian u64 at `off`.
 * @throws {InternalError} when `v` is not an integer in 0..2^53-1 (a caller's
 *   bug: the halves of anything else would not be the value).
 */
export function writeBe64(b: Buffer, off: number, v: number): void {
  if (!Number.isSafeInteger(v) || v < 0) {
    throw new InternalError(`internal: ${v} is not a u64 a number holds exactly`);
  }
  b.writeUInt32BE(Math.floor(v / TWO32), off);
  b.writeUInt32BE(v >>> 0, off + 4);
}

/**
 * The big-endian integer of `size` bytes (1 to 8) at `off`, exact at any width: a bigint,
 * two's complement when `signed`. For values whose 64 bits all matter (device fields a
 * stream carries: clock offsets, registers), where {@link readBe64} would round.
 */
export function readBeExact(b: Buffer, off: number, size: number, signed: boolean): bigint {
  let v = 0n;
  for (let i = 0; i < size; i++) v = (v << 8n) | BigInt(b[off + i]!);
  return signed ? BigInt.asIntN(size * 8, v) : v;
}
