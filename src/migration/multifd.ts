/**
 * Multifd (migration/multifd.c, multifd-nocomp.c, multifd-zero-page.c), QEMU 10.0's dialect
 * without compression: N extra connections to the same address, each opened with a 64-byte
 * init packet, then packets of up to 128 pages of one RAM block (a 1344-byte header with the
 * page offsets, normal pages first, then the page data). SYNC packets meet the main channel's
 * MULTIFD_FLUSH words: everything sent before a sync point lands before anything after it.
 */
import type { Writable } from 'node:stream';
import type { GuestRam, RamBlock } from '../machine/ram.js';
import { TARGET_PAGE_SIZE } from '../machine/ram.js';
import { systemError } from '../util/errno.js';
import {
  decodeMultifdHeader,
  decodeMultifdInit,
  encodeMultifdHeader,
  encodeMultifdInit,
  MULTIFD_FLAG_COMPRESSION_MASK,
  MULTIFD_FLAG_DEVICE_STATE,
  MULTIFD_FLAG_SYNC,
  MULTIFD_HEADER,
  MULTIFD_INIT_SIZE,
  MULTIFD_MAGIC,
  MULTIFD_PAGES,
  MULTIFD_VERSION,
} from './stream/multifd-packet.js';
import { StreamError } from './stream/qemu-file.js';
import { handleZeroPage, pageHasData } from './zero-page.js';

const PAGE = TARGET_PAGE_SIZE;

/** Bytes a channel may have queued before it counts as busy. */
const QUEUE = 1 << 20;

/** Calls `f` once per run of adjacent pages among the first `n` byte offsets, in order. */
function forEachRun(offsets: number[], n: number, f: (off: number, pages: number) => void): void {
  for (let k = 0; k < n; ) {
    let run = 1;
    while (k + run < n && offsets[k + run] === offsets[k]! + run * PAGE) run++;
    f(offsets[k]!, run);
    k += run;
  }
}

interface Channel {
  out: Writable;
  id: number;
}

/** Source side: batches pages into packets and spreads them over the channels. */
export class MultifdSender {
  readonly #channels: Channel[];
  readonly #detectZero: boolean;
  #block: RamBlock | undefined;
  #pages: number[] = [];
  #next = 0;
  #packetNum = 0;
  /** Bytes written on the multifd channels (query-migrate's multifd-bytes). */
  bytes = 0;
  normal = 0;
  zero = 0;

  /**
   * @param outs the channels, in id order.
   * @param initWritten each channel's init packet went out as it opened (else it goes here).
   */
  constructor(outs: Writable[], detectZero: boolean, initWritten = false) {
    this.#channels = outs.map((out, id) => ({ out, id }));
    this.#detectZero = detectZero;
    for (const c of this.#channels) {
      // A channel that fails or closes under us fails the migration: its pages are lost.
      c.out.on('error', (e) => {
        this.error ??= e;
      });
      c.out.on('close', () => {
        if (!this.#ending) this.error ??= systemError('EPIPE', 'write');
      });
      if (!initWritten) c.out.write(encodeMultifdInit({ id: c.id }));
      this.bytes += MULTIFD_INIT_SIZE;
    }
  }

  /** The first error of any channel. */
  error: Error | undefined;
  #ending = false;

  /**
   * Everything, the final SYNCs included, has been handed to the kernel: from now on the
   * destination may close the channels as soon as it is done with them.
   */
  async finish(): Promise<void> {
    await this.settled();
    this.#ending = true;
  }

  /** Waits until every channel has handed all it was given to the kernel. */
  async settled(): Promise<void> {
    this.check();
    await Promise.all(
      this.#channels.map((c) =>
        c.out.writableLength === 0 || c.out.destroyed
          ? undefined
          : // Writes complete in order: an empty one's callback comes after all before it.
            new Promise<void>((res) => c.out.write(Buffer.alloc(0), () => res())),
      ),
    );
    this.check();
  }

  /** @throws the first channel error, if any. */
  check(): void {
    if (this.error) throw this.error;
  }

  /** Bytes handed to the channels that Node still holds (not yet in the kernel). */
  get queuedBytes(): number {
    let n = 0;
    for (const c of this.#channels) n += c.out.writableLength;
    return n;
  }

  /** Bytes the channels have passed on to the kernel. */
  get written(): number {
    return this.bytes - this.queuedBytes;
  }

  /** Whether some channel asks us to wait. */
  get busy(): boolean {
    // Only when no channel can take another packet: the others keep the link busy.
    return this.#channels.every((c) => c.out.writableLength > QUEUE);
  }

  addPage(block: RamBlock, page: number): void {
    if (this.#block !== block || this.#pages.length === MULTIFD_PAGES) this.flushBatch();
    this.#block = block;
    this.#pages.push(page);
  }

  /** Sends the pending batch as one packet on the next channel. */
  flushBatch(): void {
    this.check();
    const block = this.#block;
    if (!block || this.#pages.length === 0) return;
    const offsets = this.#pages.map((p) => p * PAGE);
    this.#pages = [];
    // QEMU's order: normal pages to the left, zero pages swapped to the right.
    let i = 0;
    let j = offsets.length - 1;
    if (this.#detectZero) {
      while (i <= j) {
        const off = offsets[i]!;
        if (pageHasData(block, off / PAGE)) {
          i++;
          continue;
        }
        offsets[i] = offsets[j]!;
        offsets[j] = off;
        j--;
      }
    } else i = offsets.length;
    const normal = i;
    const zero = offsets.length - normal;
    const hdr = encodeMultifdHeader({
      pagesAlloc: MULTIFD_PAGES,
      normalPages: normal,
      nextPacketSize: normal * PAGE,
      packetNum: this.#packetNum++,
      zeroPages: zero,
      ramblock: block.idstr,
      offsets,
    });
    const c = this.#pick();
    c.out.cork();
    c.out.write(hdr);
    // Adjacent pages go out as one view of guest RAM: one buffer per run, not per page.
    forEachRun(offsets, normal, (off, pages) => c.out.write(block.host.subarray(off, off + pages * PAGE)));
    c.out.uncork();
    this.bytes += MULTIFD_HEADER + normal * PAGE;
    this.normal += normal;
    this.zero += zero;
  }

  /** The channel with the least queued, starting after the last one used. */
  #pick(): Channel {
    let best = this.#channels[this.#next % this.#channels.length]!;
    for (const c of this.#channels) if (c.out.writableLength < best.out.writableLength) best = c;
    this.#next = best.id + 1;
    return best;
  }

  /** A sync point: the pending batch, then one SYNC packet on every channel. */
  sync(): void {
    this.flushBatch();
    this.check();
    for (const c of this.#channels) {
      c.out.write(encodeMultifdHeader({ flags: MULTIFD_FLAG_SYNC, packetNum: this.#packetNum++ }));
      this.bytes += MULTIFD_HEADER;
    }
  }

  /** Waits until every channel has handed its queue to the kernel. */
  async drained(): Promise<void> {
    this.check();
    if (!this.busy) return;
    // Wait for the first channel with room again, not for all of them.
    const cleanups: (() => void)[] = [];
    await new Promise<void>((res) => {
      for (const c of this.#channels) {
        const done = () => res();
        c.out.on('drain', done);
        c.out.on('close', done);
        cleanups.push(() => {
          c.out.off('drain', done);
          c.out.off('close', done);
        });
      }
    });
    for (const f of cleanups) f();
    this.check();
  }

  async end(): Promise<void> {
    this.check();
    this.#ending = true;
    await Promise.all(
      this.#channels.map((c) =>
        c.out.destroyed ? undefined : new Promise<void>((res) => c.out.end(() => res())),
      ),
    );
    this.check();
  }
}

/**
 * Destination side: applies packets from every channel, meeting the main channel at syncs.
 * Channels are read straight into guest RAM: each one's header lands in a small buffer, is
 * checked, and names the RAM runs the page data goes to next.
 */
export class MultifdReceiver {
  readonly #ram: GuestRam;
  readonly #count: number;
  /** Channels set up so far, by id. */
  readonly #ids = new Set<number>();
  /** Channels stopped at a SYNC packet since the last sync point, and how to restart each. */
  readonly #waiting = new Map<number, () => void>();
  /** Channels whose connection ended between packets. */
  readonly #closed = new Set<number>();
  #onArrive: (() => void) | undefined;
  #error: Error | undefined;
  #failed: ((e: Error) => void) | undefined;

  constructor(ram: GuestRam, count: number) {
    this.#ram = ram;
    this.#count = count;
  }

  /** Channels set up so far (QEMU numbers the next one's errors with this). */
  get created(): number {
    return this.#ids.size;
  }

  /**
   * Checks one channel's 64-byte init packet (multifd.c multifd_recv_initial_packet, its
   * checks, order and texts); returns its id.
   * @throws {StreamError}
   */
  static parseInit(b: Buffer, count: number): number {
    const { magic, version, uuid, id } = decodeMultifdInit(b);
    if (magic !== MULTIFD_MAGIC)
      throw new StreamError(
        `multifd: received packet magic ${magic.toString(16)} expected ${MULTIFD_MAGIC.toString(16)}`,
        0,
        'multifd',
      );
    if (version !== MULTIFD_VERSION)
      throw new StreamError(
        `multifd: received packet version ${version} expected ${MULTIFD_VERSION}`,
        4,
        'multifd',
      );
    // The source's -uuid; this side has none, which QEMU compares as all zeros.
    if (uuid.some((x) => x !== 0)) {
      throw new StreamError(
        `multifd: received uuid '${unparseUuid(uuid)}' and expected uuid '${unparseUuid(Buffer.alloc(16))}' for channel ${(id << 24) >> 24}`,
        8,
        'multifd',
      );
    }
    if (id > count)
      throw new StreamError(
        `multifd: received channel id ${id} is greater than number of channels ${count}`,
        24,
        'multifd',
      );
    // QEMU 10.0 takes id == count and indexes past its channel array (it crashes).
    if (id === count)
      throw new StreamError(
        `multifd: received channel id ${id}, but channel ids go from 0 to ${count - 1}`,
        24,
        'multifd',
      );
    return id;
  }

  /**
   * The reading side of channel `id`, whose init packet has been read.
   * @param resume restarts reading after the sink stopped it at a SYNC.
   * @param fail called once with the channel's first error.
   * @throws {StreamError} when channel `id` is set up already.
   */
  channel(id: number, resume: () => void, fail: (e: Error) => void): MultifdChannel {
    if (this.#ids.has(id))
      throw new StreamError(`multifd: received id '${id}' already setup'`, 24, 'multifd');
    this.#ids.add(id);
    return new MultifdChannel(this.#ram, id, {
      sync: () => this.#syncChannel(id, resume),
      fail: (e) => {
        this.fail(e);
        fail(e);
      },
      closed: () => {
        this.#closed.add(id);
        this.#onArrive?.();
      },
    });
  }

  /** A channel reached a SYNC packet: report it; it reads on once the main channel says so. */
  #syncChannel(id: number, resume: () => void): void {
    // Later, not now: the channel stops its reads after this returns.
    this.#waiting.set(id, () => queueMicrotask(resume));
    this.#onArrive?.();
  }

  /**
   * The main channel reached MULTIFD_FLUSH: wait for every channel's SYNC, release them.
   * @throws the first channel error, or a StreamError when a channel closed before its SYNC
   * (QEMU 10.0 waits forever there).
   */
  async syncMain(): Promise<void> {
    while (this.#waiting.size < this.#count) {
      if (this.#error) throw this.#error;
      for (const id of this.#closed) {
        if (!this.#waiting.has(id))
          throw new StreamError(
            `multifd: channel ${id} closed before its sync packet`,
            0,
            `multifd channel ${id}`,
          );
      }
      await new Promise<void>((res, rej) => {
        this.#onArrive = res;
        this.#failed = rej;
      });
    }
    const release = [...this.#waiting.values()];
    this.#waiting.clear();
    for (const r of release) r();
  }

  /** A channel failed: the main channel must not wait for it. */
  fail(e: Error): void {
    this.#error ??= e;
    this.#failed?.(e);
  }
}

/** A UUID as QEMU prints it (qemu_uuid_unparse). */
function unparseUuid(b: Buffer): string {
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

interface ChannelEvents {
  sync(): void;
  fail(e: Error): void;
  /** The connection ended between packets. */
  closed(): void;
}

/** One multifd channel's packets, as a sink its socket reads into. */
export class MultifdChannel {
  readonly #ram: GuestRam;
  readonly #id: number;
  readonly #where: string;
  readonly #on: ChannelEvents;
  readonly #hdr = Buffer.allocUnsafe(MULTIFD_HEADER);
  #hdrGot = 0;
  /** The guest RAM the current packet's page data goes to, in order. */
  #runs: Buffer[] = [];
  #run = 0;
  #runGot = 0;
  #sync = false;
  #failed = false;
  #ended = false;
  /** Stream offset of the next byte (after the init packet). */
  #offset = MULTIFD_INIT_SIZE;
  #packetAt = MULTIFD_INIT_SIZE;

  constructor(ram: GuestRam, id: number, on: ChannelEvents) {
    this.#ram = ram;
    this.#id = id;
    this.#where = `multifd channel ${id}`;
    this.#on = on;
  }

  target(): Buffer {
    if (this.#run < this.#runs.length) return this.#runs[this.#run]!.subarray(this.#runGot);
    return this.#hdr.subarray(this.#hdrGot);
  }

  /** @returns false to stop reading (at a SYNC, until released; or after an error). */
  filled(n: number): boolean {
    if (this.#failed) return false;
    this.#offset += n;
    try {
      if (this.#run < this.#runs.length) {
        this.#runGot += n;
        if (this.#runGot < this.#runs[this.#run]!.length) return true;
        this.#runGot = 0;
        if (++this.#run < this.#runs.length) return true;
        return this.#packetDone();
      }
      this.#hdrGot += n;
      if (this.#hdrGot < MULTIFD_HEADER) return true;
      this.#hdrGot = 0;
      this.#packetAt = this.#offset - MULTIFD_HEADER;
      this.#parse();
      return this.#run < this.#runs.length || this.#packetDone();
    } catch (e) {
      this.#failed = true;
      this.#on.fail(e as Error);
      return false;
    }
  }

  /** The connection ended: fine between packets (reported as closed), an error inside one. */
  end(): void {
    if (this.#failed || this.#ended) return;
    this.#ended = true;
    const inside = this.#hdrGot > 0 || this.#run < this.#runs.length;
    if (!inside) {
      this.#on.closed();
      return;
    }
    this.#failed = true;
    const what = this.#hdrGot > 0 ? `a packet on ${this.#where}` : `page data on ${this.#where}`;
    this.#on.fail(new StreamError(`stream ended early: ${what} was cut short`, this.#offset, this.#where));
  }

  #packetDone(): boolean {
    this.#runs = [];
    this.#run = 0;
    if (!this.#sync) return true;
    this.#on.sync();
    return false;
  }

  /**
   * Checks a header as QEMU 10.0 does (multifd.c multifd_recv_unfill_packet_header,
   * multifd-nocomp.c multifd_ram_unfill_packet and multifd_nocomp_recv; their texts), and
   * points the next reads at the RAM its pages go to.
   * @throws {StreamError}
   */
  #parse(): void {
    const at = this.#packetAt;
    const where = this.#where;
    const fail = (what: string): never => {
      throw new StreamError(what, at, where);
    };
    const pkt = decodeMultifdHeader(this.#hdr);
    const { flags, pagesAlloc: alloc, normalPages: normal, zeroPages: zero } = pkt;
    if (pkt.magic !== MULTIFD_MAGIC)
      fail(
        `multifd: received packet magic ${pkt.magic.toString(16)}, expected ${MULTIFD_MAGIC.toString(16)}`,
      );
    if (pkt.version !== MULTIFD_VERSION)
      fail(`multifd: received packet version ${pkt.version}, expected ${MULTIFD_VERSION}`);
    // A device state packet: this guest has no device that could take one.
    if (flags & MULTIFD_FLAG_DEVICE_STATE)
      fail('multifd: received a device state packet; this guest has no devices');
    this.#sync = (flags & MULTIFD_FLAG_SYNC) !== 0;
    if (alloc > MULTIFD_PAGES)
      fail(`multifd: received packet with ${alloc} pages, expected ${MULTIFD_PAGES}`);
    if (normal > alloc)
      fail(
        `multifd: received packet with ${normal} non-zero pages, which exceeds maximum expected pages ${alloc}`,
      );
    if (zero > alloc - normal)
      fail(`multifd: received packet with ${zero} zero pages, expected maximum ${alloc - normal}`);
    if (normal + zero === 0) return;
    const idstr = pkt.ramblock;
    const block = this.#ram.block(idstr);
    if (!block) fail(`multifd: unknown ram block ${idstr}`);
    const b = block!;
    // The checks above bound normal + zero by MULTIFD_PAGES: every offset was decoded.
    const offsets = pkt.offsets;
    for (const off of offsets) {
      if (off > b.length - PAGE) fail(`multifd: offset too long ${off} (max ${b.length.toString(16)})`);
      // QEMU writes a page at any offset; pages are page-aligned in every stream it sends.
      if (off % PAGE !== 0) fail(`multifd: offset 0x${off.toString(16)} in ${idstr} is not page-aligned`);
    }
    if (flags & MULTIFD_FLAG_COMPRESSION_MASK)
      fail(
        `multifd ${this.#id}: flags received ${(flags & MULTIFD_FLAG_COMPRESSION_MASK).toString(16)} flags expected 0`,
      );
    // Normal pages come one after another in offset order: adjacent ones make one run of RAM
    // that a single read can fill.
    forEachRun(offsets, normal, (off, pages) => {
      this.#runs.push(b.host.subarray(off, off + pages * PAGE));
      b.markDirtyRange(off / PAGE, pages);
    });
    for (let k = normal; k < normal + zero; k++) handleZeroPage(b, offsets[k]! / PAGE);
  }
}
