/**
 * Guest RAM as QEMU models it (system/physmem.c, include/exec/ramblock.h): named RAM blocks
 * with a used length, laid out in guest-physical address space from 0. The blocks are the
 * unit the migration stream names (`idstr`) and sizes, so QEMU and qmigrate must agree.
 * On a postcopy destination each block also knows which pages are present (QEMU's
 * receivedmap); an access to a missing one goes to a PageFaultHandler (userfaultfd's part).
 */
import { InternalError } from '../errors.js';

export const TARGET_PAGE_SIZE = 4096;

const ZERO_PAGE = Buffer.alloc(TARGET_PAGE_SIZE);

/** Whether the page at byte `off` of `host` is all zeros (QEMU's buffer_is_zero). */
export function isZeroPage(host: Buffer, off: number): boolean {
  // A page with data nearly always shows it in its first or last byte: looking there first
  // spares the call into the full comparison for almost all of them.
  if (host[off] !== 0 || host[off + TARGET_PAGE_SIZE - 1] !== 0) return false;
  return ZERO_PAGE.compare(host, off, off + TARGET_PAGE_SIZE) === 0;
}

/**
 * What the guest's accesses need when a page is missing (a postcopy destination's migration
 * implements it, as QEMU's fault thread serves userfaultfd).
 */
export interface PageFaultHandler {
  /**
   * Resolves once page `page` of `block` is present. `vcpu`: the guest's own access (it
   * counts in postcopy blocktime), not a monitor's read.
   */
  fault(block: RamBlock, page: number, vcpu: boolean): Promise<void>;
}

/** Sets (`on`) or clears `count` bits of `map` from bit `first`, whole words where it can. */
export function setBitRange(map: Uint32Array, first: number, count: number, on: boolean): void {
  const end = first + count;
  let p = first;
  for (; p < end && p & 31; p++) {
    if (on) map[p >>> 5]! |= 1 << (p & 31);
    else map[p >>> 5]! &= ~(1 << (p & 31));
  }
  if (p + 32 <= end) {
    map.fill(on ? 0xffffffff : 0, p >>> 5, end >>> 5);
    p = end & ~31;
  }
  for (; p < end; p++) {
    if (on) map[p >>> 5]! |= 1 << (p & 31);
    else map[p >>> 5]! &= ~(1 << (p & 31));
  }
}

export class RamBlock {
  readonly idstr: string;
  /** Guest-physical address of the first byte. */
  readonly offset: number;
  /** The guest's bytes; its length is the block's used_length. */
  readonly host: Buffer;
  /**
   * The dirty log (one bit per page, as KVM's and TCG's logs): set by whoever writes guest
   * memory, collected and cleared by migration's bitmap sync.
   */
  readonly dirtyLog: Uint32Array;
  /** Whether writes are being logged (migration turns this on at setup). */
  logging = false;
  /** Some bit of the dirty log was set since the collector last cleared this flag. */
  logTouched = false;
  /**
   * Pages that may hold something other than zeros. A page never written since the block
   * was allocated is known to be zero without reading it (reading would map it).
   */
  readonly written: Uint32Array;
  /**
   * Pages present in this process (QEMU's receivedmap), while a postcopy destination tracks
   * them; undefined: every page is present.
   */
  receivedMap: Uint32Array | undefined;

  /** `filled`: the block starts with content (a backing file), not zeros. */
  constructor(idstr: string, offset: number, host: Buffer, filled = true) {
    this.idstr = idstr;
    this.offset = offset;
    this.host = host;
    const words = Math.ceil(host.length / TARGET_PAGE_SIZE / 32);
    this.dirtyLog = new Uint32Array(words);
    this.written = new Uint32Array(words).fill(filled ? 0xffffffff : 0);
  }

  /** Records that a page was written. */
  markDirty(page: number): void {
    this.written[page >>> 5]! |= 1 << (page & 31);
    if (this.logging) {
      this.dirtyLog[page >>> 5]! |= 1 << (page & 31);
      this.logTouched = true;
    }
  }

  /** Records that `count` pages from `page` on were written (whole words at a time). */
  markDirtyRange(page: number, count: number): void {
    const end = page + count;
    if (this.logging) this.logTouched = true;
    for (const map of this.logging ? [this.written, this.dirtyLog] : [this.written]) {
      let p = page;
      for (; p < end && p & 31; p++) map[p >>> 5]! |= 1 << (p & 31);
      if (p + 32 <= end) {
        map.fill(0xffffffff, p >>> 5, end >>> 5);
        p = end & ~31;
      }
      for (; p < end; p++) map[p >>> 5]! |= 1 << (p & 31);
    }
  }

  /** Marks the pages that hold anything but zeros (after content was loaded). */
  scanWritten(): void {
    this.written.fill(0);
    for (let p = 0, off = 0; off < this.host.length; p++, off += TARGET_PAGE_SIZE) {
      if (!isZeroPage(this.host, off)) this.written[p >>> 5]! |= 1 << (p & 31);
    }
  }

  /** Whether a page may be non-zero (false: certainly zero). */
  mayBeWritten(page: number): boolean {
    return (this.written[page >>> 5]! & (1 << (page & 31))) !== 0;
  }

  /** Whether page `page` is present (always, unless presence is tracked). */
  isPresent(page: number): boolean {
    const map = this.receivedMap;
    return map === undefined || (map[page >>> 5]! & (1 << (page & 31))) !== 0;
  }

  /** Starts tracking presence with every page missing (a postcopy destination's start). */
  trackPresence(): void {
    this.receivedMap = new Uint32Array(this.written.length);
  }

  /** Every page is present again (postcopy ended); nothing is tracked any more. */
  untrackPresence(): void {
    this.receivedMap = undefined;
  }

  /** Records `count` pages from `page` as present (true) or missing (false). */
  setPresent(page: number, count = 1, present = true): void {
    if (this.receivedMap) setBitRange(this.receivedMap, page, count, present);
  }

  /** Pages still missing (0 when presence is not tracked). */
  get missingPages(): number {
    const map = this.receivedMap;
    if (!map) return 0;
    let present = 0;
    for (let w = 0; w < map.length; w++) {
      const x = map[w]!;
      if (x === 0xffffffff) present += 32;
      else if (x !== 0) present += popcount32(x);
    }
    return Math.max(0, this.pages - present);
  }

  get length(): number {
    return this.host.length;
  }

  get pages(): number {
    return this.host.length / TARGET_PAGE_SIZE;
  }
}

export function popcount32(x: number): number {
  x -= (x >>> 1) & 0x55555555;
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  return (((x + (x >>> 4)) & 0x0f0f0f0f) * 0x01010101) >>> 24;
}

export class GuestRam {
  readonly blocks: RamBlock[] = [];
  /** Who makes missing pages present (set while a postcopy destination tracks presence). */
  pageFault: PageFaultHandler | undefined;

  /**
   * The presence check before an access to page `page` of `block`: undefined when the page
   * is present (the fast path, no promise), else a promise that resolves once it is.
   * @throws {InternalError} when a page is missing and nobody can bring it.
   */
  touch(block: RamBlock, page: number, vcpu: boolean): Promise<void> | undefined {
    if (block.isPresent(page)) return undefined;
    if (!this.pageFault)
      throw new InternalError(`page ${page} of ${block.idstr} is missing and nothing can fetch it`);
    return this.pageFault.fault(block, page, vcpu);
  }

  /** Pages of the guest-physical range [addr, addr+size) that are missing. */
  missingIn(addr: bigint, size: bigint): number {
    let n = 0;
    const end = addr + size;
    for (const b of this.blocks) {
      if (!b.receivedMap) continue;
      const lo = BigInt(b.offset);
      const hi = lo + BigInt(b.length);
      const from = addr > lo ? addr : lo;
      const to = end < hi ? end : hi;
      if (from >= to) continue;
      const first = Number((from - lo) / BigInt(TARGET_PAGE_SIZE));
      const last = Number((to - lo - 1n) / BigInt(TARGET_PAGE_SIZE));
      for (let p = first; p <= last; p++) if (!b.isPresent(p)) n++;
    }
    return n;
  }

  add(idstr: string, host: Buffer, filled = true): RamBlock {
    const offset = this.blocks.reduce((end, b) => Math.max(end, b.offset + b.length), 0);
    const b = new RamBlock(idstr, offset, host, filled);
    this.blocks.push(b);
    return b;
  }

  get size(): number {
    return this.blocks.reduce((s, b) => s + b.length, 0);
  }

  block(idstr: string): RamBlock | undefined {
    return this.blocks.find((b) => b.idstr === idstr);
  }

  /**
   * The guest-physical range [addr, addr+size) as views of the RAM blocks, in address order
   * (no copy), or undefined if any byte lies outside guest RAM.
   */
  views(addr: bigint, size: bigint): Buffer[] | undefined {
    const end = addr + size;
    if (end > BigInt(this.size)) return undefined;
    const out: Buffer[] = [];
    for (const b of [...this.blocks].sort((x, y) => x.offset - y.offset)) {
      const lo = BigInt(b.offset);
      const hi = lo + BigInt(b.length);
      const from = addr > lo ? addr : lo;
      const to = end < hi ? end : hi;
      if (from < to) out.push(b.host.subarray(Number(from - lo), Number(to - lo)));
    }
    return out;
  }
}
