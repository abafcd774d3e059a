/**
 * The `ram` section (migration/ram.c): on the source, the migration bitmap filled from the
 * guest's dirty log at each sync, and chunks of page records (ZERO with its fill byte, or PAGE
 * with 4096 bytes sent as a view of guest RAM); on the destination, the same records applied
 * to the local RAM blocks after checking every name, size, offset and flag against them.
 */
import { InternalError } from '../errors.js';
import type { GuestRam, RamBlock } from '../machine/ram.js';
import { TARGET_PAGE_SIZE } from '../machine/ram.js';
import type { MultifdSender } from './multifd.js';
import { type PostcopyIncoming, PostcopyState } from './postcopy-ram.js';
import { bitmapRanges, type DiscardRange } from './stream/postcopy.js';
import type { QemuFileReader, QemuFileWriter } from './stream/qemu-file.js';
import { StreamError } from './stream/qemu-file.js';
import { TimeSlice } from './time-slice.js';
import { handleZeroPage, pageHasData } from './zero-page.js';

export const RAM_SAVE_FLAG_FULL = 0x01;
export const RAM_SAVE_FLAG_ZERO = 0x02;
export const RAM_SAVE_FLAG_MEM_SIZE = 0x04;
export const RAM_SAVE_FLAG_PAGE = 0x08;
export const RAM_SAVE_FLAG_EOS = 0x10;
export const RAM_SAVE_FLAG_CONTINUE = 0x20;
export const RAM_SAVE_FLAG_XBZRLE = 0x40;
export const RAM_SAVE_FLAG_MULTIFD_FLUSH = 0x200;

const PAGE = TARGET_PAGE_SIZE;

/** Counters behind query-migrate's `ram` member. */
export interface RamCounters {
  normal: number;
  duplicate: number;
  /** Bytes of page records and their headers sent in precopy. */
  precopyBytes: number;
  downtimeBytes: number;
  /** Bytes of page records and their headers sent once postcopy runs. */
  postcopyBytes: number;
  syncCount: number;
}

export class RamSaver {
  readonly #ram: GuestRam;
  #f: QemuFileWriter;
  /** Per block: pages still to send. */
  readonly #bitmaps: Uint32Array[];
  #dirtyPages = 0;
  #lastBlock: RamBlock | undefined;
  /** Scan position: block index and page. */
  #blockIdx = 0;
  #page = 0;
  readonly #detectZero: boolean;
  /** zero-page-detection=legacy: zero pages stay on the main channel even with multifd. */
  readonly #legacyZero: boolean;
  readonly counters: RamCounters = {
    normal: 0,
    duplicate: 0,
    precopyBytes: 0,
    downtimeBytes: 0,
    postcopyBytes: 0,
    syncCount: 0,
  };
  /** True while in stop-and-copy: bytes count as downtime bytes. */
  completing = false;
  /** True once postcopy runs: bytes count as postcopy bytes. */
  postcopy = false;
  /** With multifd, pages go to these channels instead of the main stream. */
  multifd: MultifdSender | undefined;

  constructor(ram: GuestRam, f: QemuFileWriter, zeroPageDetection: 'none' | 'legacy' | 'multifd') {
    this.#ram = ram;
    this.#f = f;
    this.#bitmaps = ram.blocks.map((b) => new Uint32Array(b.dirtyLog.length));
    this.#detectZero = zeroPageDetection !== 'none';
    this.#legacyZero = zeroPageDetection === 'legacy';
  }

  get total(): number {
    return this.#ram.size;
  }

  get dirtyPages(): number {
    return this.#dirtyPages;
  }

  get remainingBytes(): number {
    return this.#dirtyPages * PAGE;
  }

  /** Setup: every page dirty, dirty logging on, the MEM_SIZE record. */
  setup(): void {
    for (const [i, b] of this.#ram.blocks.entries()) {
      const bm = this.#bitmaps[i]!;
      bm.fill(0xffffffff);
      const tail = b.pages % 32;
      if (tail) bm[bm.length - 1] = (1 << tail) - 1 || 0xffffffff;
      b.dirtyLog.fill(0);
      b.logTouched = false;
      b.logging = true;
      this.#dirtyPages += b.pages;
    }
    this.counters.syncCount = 1;
    const f = this.#f;
    f.be64(this.total + RAM_SAVE_FLAG_MEM_SIZE);
    for (const b of this.#ram.blocks) {
      f.cstr(b.idstr);
      f.be64(b.length);
    }
  }

  /** Stops dirty logging (end of migration, success or not). */
  cleanup(): void {
    for (const b of this.#ram.blocks) b.logging = false;
  }

  /** migration_bitmap_sync: moves the dirty log into the bitmap. Returns pages newly dirty. */
  sync(): number {
    let added = 0;
    for (const [i, b] of this.#ram.blocks.entries()) {
      // An idle guest's log is empty: stop-and-copy should not pay for reading it.
      if (!b.logTouched) continue;
      b.logTouched = false;
      const bm = this.#bitmaps[i]!;
      const log = b.dirtyLog;
      for (let w = 0; w < log.length; w++) {
        const l = log[w]!;
        if (l === 0) continue;
        const fresh = l & ~bm[w]!;
        if (fresh) added += popcount(fresh);
        bm[w]! |= l;
        log[w] = 0;
      }
    }
    this.#dirtyPages += added;
    this.counters.syncCount++;
    return added;
  }

  /**
   * Writes dirty pages until none is left or `stop()` says so, asked every `every` pages
   * (every page under a bandwidth limit, so a window's budget is not overshot). Returns true
   * when no dirty page is left.
   */
  sendPages(stop: () => boolean, every = 64): boolean {
    const blocks = this.#ram.blocks;
    let sinceCheck = 0;
    let scannedBlocks = 0;
    while (this.#dirtyPages > 0) {
      const b = blocks[this.#blockIdx]!;
      const bm = this.#bitmaps[this.#blockIdx]!;
      const pages = b.pages;
      let p = this.#page;
      while (p < pages) {
        const w = p >>> 5;
        const word = bm[w]!;
        if (word === 0) {
          p = (w + 1) << 5;
          continue;
        }
        const bit = 1 << (p & 31);
        if ((word & bit) === 0) {
          p++;
          continue;
        }
        bm[w] = word & ~bit;
        this.#dirtyPages--;
        this.#sendPage(b, p);
        p++;
        if (++sinceCheck >= every) {
          sinceCheck = 0;
          if (stop()) {
            this.#page = p;
            return false;
          }
        }
      }
      this.#page = 0;
      this.#blockIdx = (this.#blockIdx + 1) % blocks.length;
      if (++scannedBlocks > blocks.length + 1 && this.#dirtyPages > 0) {
        throw new InternalError(`internal: ${this.#dirtyPages} dirty pages counted but none found`);
      }
    }
    return true;
  }

  #sendPage(b: RamBlock, p: number): void {
    const f = this.#f;
    const off = p * PAGE;
    if (this.multifd) {
      // multifd detects zero pages itself, unless zero-page-detection is legacy.
      if (!this.#legacyZero || pageHasData(b, p)) {
        this.multifd.addPage(b, p);
        return;
      }
    }
    const cont = this.#lastBlock === b ? RAM_SAVE_FLAG_CONTINUE : 0;
    const zero = this.#detectZero && !pageHasData(b, p);
    const before = f.pendingBytes;
    f.be64(off + (zero ? RAM_SAVE_FLAG_ZERO : RAM_SAVE_FLAG_PAGE) + cont);
    if (!cont) {
      f.cstr(b.idstr);
      this.#lastBlock = b;
    }
    if (zero) {
      f.u8(0);
      this.counters.duplicate++;
    } else {
      f.view(b.host.subarray(off, off + PAGE));
      this.counters.normal++;
    }
    const n = f.pendingBytes - before;
    if (this.postcopy) this.counters.postcopyBytes += n;
    else if (this.completing) this.counters.downtimeBytes += n;
    else this.counters.precopyBytes += n;
  }

  eos(): void {
    this.#f.be64(RAM_SAVE_FLAG_EOS);
  }

  /**
   * The dirty pages of each block as RAM_DISCARD ranges (postcopy_each_ram_send_discard),
   * and a fresh start for the scan: the next page record names its block again
   * (ram_postcopy_send_discard_bitmap resets the last block sent and the scan position).
   */
  discardRanges(): { idstr: string; ranges: DiscardRange[] }[] {
    const out = this.#ram.blocks.map((b, i) => ({
      idstr: b.idstr,
      ranges: bitmapRanges(this.#bitmaps[i]!, b.pages, PAGE),
    }));
    this.restart();
    return out;
  }

  /** Forgets the last block sent and scans from the start again (ram_state_reset). */
  restart(): void {
    this.#lastBlock = undefined;
    this.#blockIdx = 0;
    this.#page = 0;
  }

  /** Writes on `f` from now on: the stream of a resumed postcopy. */
  setFile(f: QemuFileWriter): void {
    this.#f = f;
  }

  /**
   * Sends page `p` of block `b` now if it is still to be sent (get_queued_page: a requested
   * page already sent is skipped).
   * @returns whether the page was sent.
   */
  sendRequested(b: RamBlock, p: number): boolean {
    const i = this.#ram.blocks.indexOf(b);
    const bm = this.#bitmaps[i]!;
    const bit = 1 << (p & 31);
    if ((bm[p >>> 5]! & bit) === 0) return false;
    bm[p >>> 5]! &= ~bit;
    this.#dirtyPages--;
    this.#sendPage(b, p);
    return true;
  }

  /**
   * Rebuilds a block's bitmap from what the destination says it has received
   * (ram_dirty_bitmap_reload): every page not received is to be sent again.
   * @param received one bit a page, as readRecvBitmap returns it.
   */
  reloadFromReceived(idstr: string, received: Uint32Array): void {
    const i = this.#ram.blocks.findIndex((b) => b.idstr === idstr);
    const b = this.#ram.blocks[i]!;
    const bm = this.#bitmaps[i]!;
    let before = 0;
    let after = 0;
    for (let w = 0; w < bm.length; w++) {
      before += popcount(bm[w]!);
      const tail = b.pages - w * 32;
      const valid = tail >= 32 ? 0xffffffff : (1 << tail) - 1;
      bm[w] = ~received[w]! & valid;
      after += popcount(bm[w]!);
    }
    this.#dirtyPages += after - before;
    this.restart();
  }
}

function popcount(x: number): number {
  x -= (x >>> 1) & 0x55555555;
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  return (((x + (x >>> 4)) & 0x0f0f0f0f) * 0x01010101) >>> 24;
}

/** Applies `ram` section chunks to the local RAM blocks. */
export class RamLoader {
  readonly #ram: GuestRam;
  #last: RamBlock | undefined;
  /** Blocks announced by MEM_SIZE. */
  #announced = false;
  /** Called at each MULTIFD_FLUSH (multifd sync point). */
  onFlush: (() => Promise<void>) | undefined;
  /** A postcopy destination's page state, from ADVISE on: placed pages become present. */
  postcopy: PostcopyIncoming | undefined;
  /** A backlog of stream being applied must not hold the monitors off. */
  readonly #slice = new TimeSlice();
  #records = 0;

  constructor(ram: GuestRam) {
    this.#ram = ram;
  }

  /** Reads one chunk (START, PART or END payload) up to and including its EOS. */
  async loadChunk(r: QemuFileReader): Promise<void> {
    for (;;) {
      if ((++this.#records & 63) === 0 && this.#slice.due) await this.#slice.yield();
      if (r.available < 8) {
        await r.need(8, 'a RAM record');
        // Waiting for the stream let the event loop run: a new slice starts.
        this.#slice.restart();
      }
      const at = r.offset;
      // The page offset and the flags in its low bits (below TARGET_PAGE_SIZE), read as two
      // halves: a be64 as one number loses its low bits (the flags) above 2^53. The offset, a
      // multiple of the page size below 2^64, is always exact as a double.
      const hi = r.be32();
      const lo = r.be32();
      const flags = lo & (PAGE - 1);
      const addr = hi * 2 ** 32 + (lo - flags);
      switch (flags & ~RAM_SAVE_FLAG_CONTINUE) {
        case RAM_SAVE_FLAG_MEM_SIZE:
          await this.#memSize(r, addr, at);
          break;
        case RAM_SAVE_FLAG_ZERO: {
          const b = this.#continued(flags) ?? (await this.#block(r, flags, at));
          if (r.available < 1) await r.need(1, 'a zero page');
          const fill = r.u8();
          if (fill !== 0) throw new StreamError(`Found a zero page with value ${fill}`, r.offset - 1, 'ram');
          this.#check(b, addr, at);
          const pc = this.postcopy;
          if (pc && b.receivedMap) {
            // In postcopy a page already present (fetched first, then written by the guest)
            // is not placed again, as UFFDIO_ZEROPAGE answers EEXIST.
            if (pc.state >= PostcopyState.LISTENING && b.isPresent(addr / PAGE)) break;
            handleZeroPage(b, addr / PAGE);
            pc.placed(b, addr / PAGE);
          } else handleZeroPage(b, addr / PAGE);
          break;
        }
        case RAM_SAVE_FLAG_PAGE: {
          const b = this.#continued(flags) ?? (await this.#block(r, flags, at));
          this.#check(b, addr, at);
          if (r.available < PAGE) await r.need(PAGE, `page 0x${addr.toString(16)} of ${b.idstr}`);
          const pc = this.postcopy;
          if (pc && b.receivedMap) {
            // As UFFDIO_COPY's EEXIST: what the guest has (and may have written) stays.
            if (pc.state >= PostcopyState.LISTENING && b.isPresent(addr / PAGE)) {
              r.skip(PAGE);
              break;
            }
            r.copyTo(b.host, addr, PAGE);
            b.markDirty(addr / PAGE);
            pc.placed(b, addr / PAGE);
            break;
          }
          r.copyTo(b.host, addr, PAGE);
          b.markDirty(addr / PAGE);
          break;
        }
        case RAM_SAVE_FLAG_EOS:
          return;
        case RAM_SAVE_FLAG_MULTIFD_FLUSH:
          await this.onFlush?.();
          break;
        default:
          throw new StreamError(`Unknown combination of migration flags: 0x${flags.toString(16)}`, at, 'ram');
      }
    }
  }

  async #memSize(r: QemuFileReader, total: number, at: number): Promise<void> {
    if (total !== this.#ram.size) {
      throw new StreamError(
        `RAM size mismatch: the source has 0x${total.toString(16)} bytes, this guest 0x${this.#ram.size.toString(16)}`,
        at,
        'ram',
      );
    }
    let sum = 0;
    while (sum < total) {
      const idstr = await r.cstr('a RAM block name');
      const b = this.#ram.block(idstr);
      if (!b) throw new StreamError(`Unknown ramblock "${idstr}", cannot accept migration`, r.offset, 'ram');
      await r.need(8, 'a RAM block size');
      const len = r.be64();
      if (len !== b.length) {
        throw new StreamError(
          `Size mismatch: ${idstr}: 0x${len.toString(16)} != 0x${b.length.toString(16)}`,
          r.offset - 8,
          'ram',
        );
      }
      sum += len;
    }
    this.#announced = true;
  }

  /** The block a CONTINUE record means, without a promise per page (#block checks the rest). */
  #continued(flags: number): RamBlock | undefined {
    return flags & RAM_SAVE_FLAG_CONTINUE && this.#announced ? this.#last : undefined;
  }

  async #block(r: QemuFileReader, flags: number, at: number): Promise<RamBlock> {
    if (!this.#announced)
      throw new StreamError('page record before the RAM block list (MEM_SIZE)', at, 'ram');
    if (flags & RAM_SAVE_FLAG_CONTINUE) {
      if (!this.#last)
        throw new StreamError('CONTINUE flag with no previous RAM block (bad migration stream)', at, 'ram');
      return this.#last;
    }
    const idstr = await r.cstr('a RAM block name');
    const b = this.#ram.block(idstr);
    if (!b) throw new StreamError(`Can't find block ${idstr}`, at, 'ram');
    this.#last = b;
    return b;
  }

  #check(b: RamBlock, addr: number, at: number): void {
    if (addr + PAGE > b.length) {
      throw new StreamError(
        `Illegal RAM offset 0x${addr.toString(16)} in block ${b.idstr} (0x${b.length.toString(16)} bytes)`,
        at,
        'ram',
      );
    }
  }
}
