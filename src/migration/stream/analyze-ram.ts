/**
 * The `ram` section of a saved stream, counted rather than loaded (migration/ram.c
 * ram_load_precopy and parse_ramblocks; the mapped-ram layout of migration/ram.c
 * mapped_ram_setup_ramblock, with its pages at file offsets after the block list). Page data
 * is skipped or handed to a sink as a view, never looked at byte by byte.
 */
import { TARGET_PAGE_SIZE } from '../../machine/ram.js';
import { readBe64 } from '../../util/be64.js';
import {
  RAM_SAVE_FLAG_CONTINUE,
  RAM_SAVE_FLAG_EOS,
  RAM_SAVE_FLAG_MEM_SIZE,
  RAM_SAVE_FLAG_MULTIFD_FLUSH,
  RAM_SAVE_FLAG_PAGE,
  RAM_SAVE_FLAG_XBZRLE,
  RAM_SAVE_FLAG_ZERO,
} from '../ram.js';
import type { QemuFileReader } from './qemu-file.js';
import { StreamError } from './qemu-file.js';

const PAGE = TARGET_PAGE_SIZE;
/** Pages per lazily made piece of a block's page map (a corrupt length allocates nothing). */
const PIECE = 1 << 16;
const MAX_BLOCKS = 4096;
/**
 * Page-map bytes allowed beyond 8 per stream byte read: a saved stream sends a block's pages
 * in order (about 9 stream bytes per zero page, 0.14 map bytes), so only a crafted one, with
 * one record per piece of a huge block, could make 9 bytes cost 64 KiB.
 */
const MAP_SLACK = 64 << 20;

/** Receives the pages of a stream (qmigrate analyze --dump-ram). */
export interface RamSink {
  /** A block of the MEM_SIZE list, before any of its pages. */
  block(index: number, name: string, length: number): Promise<void> | void;
  /**
   * A page record, in stream order: `data` (a view, valid during the call) or undefined for
   * a zero page; `hadData` says an earlier record gave the page data (so zeros must replace it).
   */
  page(index: number, offset: number, data: Buffer | undefined, hadData: boolean): Promise<void> | void;
}

/** One RAM block of the MEM_SIZE list and what the stream did to it. */
export interface RamBlockInfo {
  name: string;
  /** used_length in bytes. */
  length: number;
  /** Page records with data (RAM_SAVE_FLAG_PAGE, or a mapped-ram page). */
  normal: number;
  /** Zero page records (RAM_SAVE_FLAG_ZERO). */
  zero: number;
  /** Pages the stream gave at least once. */
  'distinct-pages': number;
  /** All page records: a page sent twice counts twice. */
  records: number;
  /** x-ignore-shared: the block's guest physical address. */
  'guest-phys-addr'?: number;
  /** mapped-ram: where the block's bitmap and pages are in the file. */
  'mapped-ram'?: { 'bitmap-offset': number; 'pages-offset': number };
}

export interface RamAnalysis {
  /** The MEM_SIZE record's total. */
  'total-bytes': number;
  blocks: RamBlockInfo[];
  /** RAM_SAVE_FLAG_EOS words (one per chunk). */
  eos: number;
  /** RAM_SAVE_FLAG_MULTIFD_FLUSH words (QEMU 10.0 multifd sync points). */
  'multifd-flush': number;
}

interface BlockState {
  info: RamBlockInfo;
  /** Its place in the MEM_SIZE list (the sink's index). */
  index: number;
  /** Per page: 0 never sent, 1 zero, 2 data; in pieces of PIECE pages. */
  pages: Map<number, Uint8Array>;
  /** Pieces made for all blocks of the stream (one object, shared). */
  pieces: { n: number };
}

/** Per stream, kept across chunks (the block of the last record, for CONTINUE). */
const state = new WeakMap<RamAnalysis, { blocks: BlockState[]; last: BlockState | undefined }>();

/**
 * Reads one chunk of the ram section, up to and including its EOS word.
 * @param caps the configuration's capabilities (x-ignore-shared, mapped-ram change the list).
 * @throws {StreamError} at the record that is wrong.
 */
export async function analyzeRam(
  r: QemuFileReader,
  prev: RamAnalysis | null,
  caps: readonly string[],
  sink?: RamSink,
): Promise<RamAnalysis> {
  const ram = prev ?? { 'total-bytes': 0, blocks: [], eos: 0, 'multifd-flush': 0 };
  if (!state.has(ram)) state.set(ram, { blocks: [], last: undefined });
  const st = state.get(ram)!;
  const scratch = sink ? Buffer.allocUnsafe(PAGE) : undefined;
  for (;;) {
    // Waits only when the buffer runs dry: an await per record would cost more than the record.
    if (r.available < 8 + 256 + PAGE) await r.need(8, 'a RAM record');
    const at = r.offset;
    const word = r.be64();
    const flags = word % PAGE;
    const addr = word - flags;
    if (flags & RAM_SAVE_FLAG_MEM_SIZE) {
      if (ram.blocks.length) throw new StreamError('a second RAM block list', at);
      ram['total-bytes'] = addr;
      await readBlockList(r, ram, st.blocks, addr, caps, sink);
      if (flags === RAM_SAVE_FLAG_MEM_SIZE) continue;
      throw new StreamError(`RAM flags 0x${flags.toString(16)} with the block list`, at);
    }
    if (flags === RAM_SAVE_FLAG_EOS) {
      ram.eos++;
      return ram;
    }
    if (flags === RAM_SAVE_FLAG_MULTIFD_FLUSH) {
      ram['multifd-flush']++;
      continue;
    }
    const kind = flags & ~RAM_SAVE_FLAG_CONTINUE;
    if (kind !== RAM_SAVE_FLAG_ZERO && kind !== RAM_SAVE_FLAG_PAGE) {
      const what = kind === RAM_SAVE_FLAG_XBZRLE ? ' (XBZRLE pages are not supported)' : '';
      throw new StreamError(`Unknown combination of migration flags: 0x${flags.toString(16)}${what}`, at);
    }
    const b = await blockOf(r, st, flags, at);
    if (addr + PAGE > b.info.length)
      throw new StreamError(`Illegal RAM offset 0x${addr.toString(16)} in block ${b.info.name}`, at);
    const before = mark(b, addr / PAGE, kind === RAM_SAVE_FLAG_ZERO ? 1 : 2, at);
    b.info.records++;
    const size = kind === RAM_SAVE_FLAG_ZERO ? 1 : PAGE;
    if (r.available < size) await r.need(size, kind === RAM_SAVE_FLAG_ZERO ? 'a zero page' : 'a page');
    if (kind === RAM_SAVE_FLAG_ZERO) {
      r.skip(1);
      b.info.zero++;
      if (sink) await sink.page(b.index, addr, undefined, before === 2);
    } else {
      b.info.normal++;
      if (scratch && sink) {
        r.copyTo(scratch, 0, PAGE);
        await sink.page(b.index, addr, scratch, before === 2);
      } else r.skip(PAGE);
    }
  }
}

/** The record's block: named after the word, or the last one's (CONTINUE). */
async function blockOf(
  r: QemuFileReader,
  st: { blocks: BlockState[]; last: BlockState | undefined },
  flags: number,
  at: number,
): Promise<BlockState> {
  if (flags & RAM_SAVE_FLAG_CONTINUE) {
    if (!st.last) throw new StreamError('a CONTINUE page record with no block before it', at);
    return st.last;
  }
  const name = r.available > 256 ? r.bytes(r.u8()).toString('latin1') : await r.cstr('a RAM block name');
  const b = st.blocks.find((x) => x.info.name === name);
  if (!b) throw new StreamError(`Unknown ramblock "${name}"`, at);
  st.last = b;
  return b;
}

/**
 * Marks page `p` of `b` as `v`; returns what it was, and counts a first touch.
 * @param at the record's stream offset (what the map may cost grows with it).
 * @throws {StreamError} when the records are spread so thinly that the map would cost far
 * more than the stream (a crafted file; a saved one never comes near).
 */
function mark(b: BlockState, p: number, v: number, at: number): number {
  const key = Math.floor(p / PIECE);
  let piece = b.pages.get(key);
  if (!piece) {
    if ((b.pieces.n + 1) * PIECE > MAP_SLACK + 8 * at)
      throw new StreamError(
        `page records spread over ${b.pieces.n + 1} separate ${(PIECE * PAGE) >> 20} MiB regions of RAM in ${at} bytes of stream: not a saved stream`,
        at,
      );
    b.pieces.n++;
    piece = new Uint8Array(PIECE);
    b.pages.set(key, piece);
  }
  const before = piece[p % PIECE]!;
  if (before === 0) b.info['distinct-pages']++;
  piece[p % PIECE] = v;
  return before;
}

async function readBlockList(
  r: QemuFileReader,
  ram: RamAnalysis,
  blocks: BlockState[],
  total: number,
  caps: readonly string[],
  sink?: RamSink,
): Promise<void> {
  let left = total;
  while (left > 0) {
    if (blocks.length >= MAX_BLOCKS) throw new StreamError(`more than ${MAX_BLOCKS} RAM blocks`, r.offset);
    const at = r.offset;
    const name = await r.cstr('a RAM block name');
    await r.need(8, `the length of RAM block ${name}`);
    const length = r.be64();
    if (length > left)
      throw new StreamError(
        `RAM block ${name} of ${length} bytes is more than the ${left} the list has left`,
        at,
      );
    if (blocks.some((b) => b.info.name === name)) throw new StreamError(`RAM block ${name} listed twice`, at);
    left -= length;
    const info: RamBlockInfo = { name, length, normal: 0, zero: 0, 'distinct-pages': 0, records: 0 };
    const b: BlockState = {
      info,
      index: blocks.length,
      pages: new Map(),
      pieces: blocks[0]?.pieces ?? { n: 0 },
    };
    blocks.push(b);
    ram.blocks.push(info);
    await sink?.block(blocks.length - 1, name, length);
    if (caps.includes('x-ignore-shared')) {
      await r.need(8, `the address of RAM block ${name}`);
      info['guest-phys-addr'] = r.be64();
    }
    if (caps.includes('mapped-ram')) await readMappedRam(r, b, blocks.length - 1, sink);
  }
}

/** Skips forward to absolute offset `to` (a mapped-ram region), in bounded steps. */
async function skipTo(r: QemuFileReader, to: number, what: string): Promise<void> {
  if (to < r.offset) throw new StreamError(`${what} at ${to}, behind the stream's position`, r.offset);
  while (r.offset < to) {
    const n = Math.min(to - r.offset, 1 << 20);
    await r.need(n, what);
    r.skip(n);
  }
}

/**
 * mapped-ram (QEMU 9.0+, file: only): after the block's length a header (be32 version 1,
 * be64 page size, be64 bitmap offset, be64 pages offset); the bitmap has a bit per page sent,
 * the pages sit at pages_offset + page * size, and the stream goes on after them.
 */
async function readMappedRam(r: QemuFileReader, b: BlockState, index: number, sink?: RamSink): Promise<void> {
  const name = b.info.name;
  await r.need(28, `the mapped-ram header of ${name}`);
  const at = r.offset;
  const h = r.bytes(28);
  const version = h.readUInt32BE(0);
  const pageSize = readBe64(h, 4);
  const bitmapOffset = readBe64(h, 12);
  const pagesOffset = readBe64(h, 20);
  if (version !== 1) throw new StreamError(`mapped-ram header version ${version} (want 1)`, at);
  if (pageSize !== PAGE) throw new StreamError(`mapped-ram page size ${pageSize} (want ${PAGE})`, at + 4);
  b.info['mapped-ram'] = { 'bitmap-offset': bitmapOffset, 'pages-offset': pagesOffset };
  if (bitmapOffset === 0 && pagesOffset === 0) return; // a shared block x-ignore-shared left out
  const pages = Math.ceil(b.info.length / PAGE);
  await skipTo(r, bitmapOffset, `the mapped-ram bitmap of ${name}`);
  const bitmapBytes = Math.ceil(pages / 8);
  if (bitmapBytes > 64 << 20) throw new StreamError(`mapped-ram block ${name} too large`, at);
  await r.need(bitmapBytes, `the mapped-ram bitmap of ${name}`);
  // The bitmap is little-endian longs (bitmap_to_le): bit p is bit p%8 of byte p/8.
  const bitmap = r.bytes(bitmapBytes);
  await skipTo(r, pagesOffset, `the mapped-ram pages of ${name}`);
  const scratch = sink ? Buffer.allocUnsafe(PAGE) : undefined;
  for (let p = 0; p < pages; p++) {
    const addr = p * PAGE;
    if (((bitmap[p >> 3]! >> (p & 7)) & 1) === 0) {
      await skipTo(r, pagesOffset + addr + PAGE, `the mapped-ram pages of ${name}`);
      continue;
    }
    await skipTo(r, pagesOffset + addr, `the mapped-ram pages of ${name}`);
    await r.need(PAGE, `a mapped-ram page of ${name}`);
    mark(b, p, 2, r.offset);
    b.info.normal++;
    b.info.records++;
    if (scratch && sink) {
      r.copyTo(scratch, 0, PAGE);
      await sink.page(index, addr, scratch, false);
    } else r.skip(PAGE);
  }
  await skipTo(r, pagesOffset + b.info.length, `the end of the mapped-ram pages of ${name}`);
}
