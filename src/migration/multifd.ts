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
import { type QemuFileReader, StreamError } from './stream/qemu-file.js';

export const MULTIFD_MAGIC = 0x11223344;
export const MULTIFD_VERSION = 1;
export const MULTIFD_FLAG_SYNC = 1;
export const MULTIFD_FLAG_COMPRESSION_MASK = 0x1f << 1;
export const MULTIFD_PAGES = 128;
export const MULTIFD_HEADER = 320 + 8 * MULTIFD_PAGES;
const PAGE = TARGET_PAGE_SIZE;
const ZERO = Buffer.alloc(PAGE);
/** Bytes a channel may have queued before it counts as busy. */
const QUEUE = 1 << 20;

/** The 64-byte MultiFDInit_t a channel starts with. */
export function initPacket(id: number): Buffer {
  const b = Buffer.alloc(64);
  b.writeUInt32BE(MULTIFD_MAGIC, 0);
  b.writeUInt32BE(MULTIFD_VERSION, 4);
  b.writeUInt8(id, 24);
  return b;
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

  constructor(outs: Writable[], detectZero: boolean) {
    this.#channels = outs.map((out, id) => ({ out, id }));
    this.#detectZero = detectZero;
    for (const c of this.#channels) {
      // A channel that fails or closes under us fails the migration: its pages are lost.
      c.out.on('error', (e) => {
        this.error ??= e;
      });
      c.out.on('close', () => {
        if (!this.#ending) this.error ??= Object.assign(new Error('write EPIPE'), { code: 'EPIPE' });
      });
      c.out.write(initPacket(c.id));
      this.bytes += 64;
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
    this.check();
    // 'drain' comes only after a write() that returned false, so poll the queues instead.
    while (this.#channels.some((c) => c.out.writableLength > 0 && !c.out.destroyed)) {
      await new Promise((r) => setTimeout(r, 1));
      this.check();
    }
    this.#ending = true;
  }

  /** @throws the first channel error, if any. */
  check(): void {
    if (this.error) throw this.error;
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
        if (block.mayBeWritten(off / PAGE) && ZERO.compare(block.host, off, off + PAGE) !== 0) {
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
    const hdr = Buffer.alloc(MULTIFD_HEADER);
    hdr.writeUInt32BE(MULTIFD_MAGIC, 0);
    hdr.writeUInt32BE(MULTIFD_VERSION, 4);
    hdr.writeUInt32BE(0, 8);
    hdr.writeUInt32BE(MULTIFD_PAGES, 12);
    hdr.writeUInt32BE(normal, 16);
    hdr.writeUInt32BE(normal * PAGE, 20);
    hdr.writeUInt32BE(Math.floor(this.#packetNum / 0x100000000), 24);
    hdr.writeUInt32BE(this.#packetNum++ >>> 0, 28);
    hdr.writeUInt32BE(zero, 32);
    hdr.write(block.idstr, 64, 'latin1');
    for (let k = 0; k < offsets.length; k++) {
      hdr.writeUInt32BE(Math.floor(offsets[k]! / 0x100000000), 320 + 8 * k);
      hdr.writeUInt32BE(offsets[k]! >>> 0, 324 + 8 * k);
    }
    const c = this.#pick();
    c.out.cork();
    c.out.write(hdr);
    for (let k = 0; k < normal; k++) c.out.write(block.host.subarray(offsets[k]!, offsets[k]! + PAGE));
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
      const hdr = Buffer.alloc(MULTIFD_HEADER);
      hdr.writeUInt32BE(MULTIFD_MAGIC, 0);
      hdr.writeUInt32BE(MULTIFD_VERSION, 4);
      hdr.writeUInt32BE(MULTIFD_FLAG_SYNC, 8);
      hdr.writeUInt32BE(Math.floor(this.#packetNum / 0x100000000), 24);
      hdr.writeUInt32BE(this.#packetNum++ >>> 0, 28);
      c.out.write(hdr);
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

/** Destination side: applies packets from every channel, meeting the main channel at syncs. */
export class MultifdReceiver {
  readonly #ram: GuestRam;
  readonly #count: number;
  /** Channels that delivered a SYNC since the last sync point. */
  #arrived = 0;
  #onArrive: (() => void) | undefined;
  #release: (() => void)[] = [];
  #error: Error | undefined;
  #failed: ((e: Error) => void) | undefined;

  constructor(ram: GuestRam, count: number) {
    this.#ram = ram;
    this.#count = count;
  }

  /** Reads one channel's init packet; returns its id. @throws {StreamError} */
  static async readInit(r: QemuFileReader, count: number): Promise<number> {
    await r.need(64, 'a multifd init packet');
    const magic = r.be32();
    const version = r.be32();
    r.skip(16);
    const id = r.u8();
    r.skip(39);
    if (magic !== MULTIFD_MAGIC)
      throw new StreamError(
        `multifd: received packet magic ${magic.toString(16)} and expected magic 11223344`,
        0,
        'multifd',
      );
    if (version !== MULTIFD_VERSION)
      throw new StreamError(
        `multifd: received packet version ${version} and expected version 1`,
        4,
        'multifd',
      );
    if (id >= count)
      throw new StreamError(
        `multifd: received channel id ${id} is greater than number of channels ${count}`,
        24,
        'multifd',
      );
    return id;
  }

  /** Runs one channel until its connection ends. @throws {StreamError} */
  async run(r: QemuFileReader, id: number): Promise<void> {
    const where = `multifd channel ${id}`;
    for (;;) {
      if (await r.atEnd()) return;
      await r.need(MULTIFD_HEADER, `a packet on ${where}`);
      const at = r.offset;
      const hdr = r.bytes(MULTIFD_HEADER);
      const magic = hdr.readUInt32BE(0);
      if (magic !== MULTIFD_MAGIC)
        throw new StreamError(`multifd: bad packet magic 0x${magic.toString(16)}`, at, where);
      const flags = hdr.readUInt32BE(8);
      if (flags & MULTIFD_FLAG_COMPRESSION_MASK)
        throw new StreamError(`multifd: packet with compression flags 0x${flags.toString(16)}`, at, where);
      const alloc = hdr.readUInt32BE(12);
      const normal = hdr.readUInt32BE(16);
      const zero = hdr.readUInt32BE(32);
      if (alloc > MULTIFD_PAGES || normal > alloc || zero > alloc - normal) {
        if (!(flags & MULTIFD_FLAG_SYNC && normal === 0 && zero === 0)) {
          throw new StreamError(
            `multifd: packet with ${normal} normal and ${zero} zero pages (max ${alloc})`,
            at,
            where,
          );
        }
      }
      if (normal + zero > 0) {
        const name = hdr.subarray(64, 320);
        const end = name.indexOf(0);
        const idstr = name.subarray(0, end < 0 ? 256 : end).toString('latin1');
        const block = this.#ram.block(idstr);
        if (!block) throw new StreamError(`multifd: unknown ram block ${idstr}`, at, where);
        const offsets: number[] = [];
        for (let k = 0; k < normal + zero; k++) {
          const off = hdr.readUInt32BE(320 + 8 * k) * 0x100000000 + hdr.readUInt32BE(324 + 8 * k);
          if (off % PAGE !== 0 || off > block.length - PAGE) {
            throw new StreamError(`multifd: offset 0x${off.toString(16)} outside block ${idstr}`, at, where);
          }
          offsets.push(off);
        }
        // Normal pages arrive in offset order, one after another: copy each run of adjacent
        // pages at once instead of page by page.
        await r.need(normal * PAGE, `page data on ${where}`);
        for (let k = 0; k < normal; ) {
          let run = 1;
          while (k + run < normal && offsets[k + run] === offsets[k]! + run * PAGE) run++;
          r.copyTo(block.host, offsets[k]!, run * PAGE);
          for (let p = 0; p < run; p++) block.markDirty(offsets[k]! / PAGE + p);
          k += run;
        }
        for (let k = normal; k < normal + zero; k++) {
          const off = offsets[k]!;
          if (block.mayBeWritten(off / PAGE) && ZERO.compare(block.host, off, off + PAGE) !== 0) {
            block.host.fill(0, off, off + PAGE);
          }
        }
      }
      if (flags & MULTIFD_FLAG_SYNC) await this.#syncChannel();
    }
  }

  /** A channel reached a SYNC packet: report it, then wait for the main channel. */
  #syncChannel(): Promise<void> {
    this.#arrived++;
    this.#onArrive?.();
    return new Promise((res) => this.#release.push(res));
  }

  /** The main channel reached MULTIFD_FLUSH: wait for every channel's SYNC, release them. */
  async syncMain(): Promise<void> {
    while (this.#arrived < this.#count) {
      if (this.#error) throw this.#error;
      await new Promise<void>((res, rej) => {
        this.#onArrive = res;
        this.#failed = rej;
      });
    }
    this.#arrived -= this.#count;
    for (const r of this.#release.splice(0, this.#count)) r();
  }

  /** A channel failed: the main channel must not wait for it. */
  fail(e: Error): void {
    this.#error ??= e;
    this.#failed?.(e);
  }
}
