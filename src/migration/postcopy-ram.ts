/**
 * A postcopy destination's RAM side (migration/postcopy-ram.c, the receivedmap parts of
 * migration/ram.c): which pages are present, the faults on missing ones turned into page
 * requests on the return path (REQ_PAGES_ID / REQ_PAGES), the waits until those pages are
 * placed, blocktime, and the received bitmap a resuming source asks for (RECV_BITMAP).
 */
import type { Writable } from 'node:stream';
import type { GuestRam, PageFaultHandler, RamBlock } from '../machine/ram.js';
import { TARGET_PAGE_SIZE } from '../machine/ram.js';
import {
  encodeCountedName,
  encodeRecvBitmap as encodeRecvBitmapBits,
  encodeReqPages,
} from './stream/postcopy.js';
import { MIG_RP_MSG_RECV_BITMAP, MIG_RP_MSG_REQ_PAGES, MIG_RP_MSG_REQ_PAGES_ID } from './stream/savevm.js';

/** QEMU's PostcopyState (migration/postcopy-ram.h), whose numbers its error texts print. */
export const PostcopyState = {
  NONE: 0,
  ADVISE: 1,
  DISCARD: 2,
  LISTENING: 3,
  RUNNING: 4,
  END: 5,
} as const;
export type PostcopyStateValue = (typeof PostcopyState)[keyof typeof PostcopyState];

/**
 * Pages one fault asks for: the faulted page and the missing ones after it, up to this many
 * (a guest that walks memory in order then waits once per batch, not once per page).
 */
export const REQUEST_BATCH_PAGES = 16;

/** Blocktime figures (ms), as QEMU's PostcopyBlocktimeContext reports them. */
export interface Blocktime {
  /** Time all vCPUs were blocked at once (the one vCPU here: the workload). */
  total: number;
  /** Per vCPU. */
  vcpu: number[];
}

interface Waiter {
  resolve: () => void;
  /** performance.now() at the fault, for a vCPU's access; undefined for other readers. */
  since: number | undefined;
}

/**
 * The destination's postcopy RAM state for one incoming migration. Implements the RAM's
 * page-fault handler while presence is tracked (from ADVISE until the stream's end).
 */
export class PostcopyIncoming implements PageFaultHandler {
  state: PostcopyStateValue = PostcopyState.NONE;
  readonly #ram: GuestRam;
  /** Where page requests go; undefined while the link is down (postcopy-paused). */
  #rp: Writable | undefined;
  /** The block the last request named (mis->last_rb): the next for it need not name it. */
  #lastRb: RamBlock | undefined;
  /** Per block: pages asked for and not yet placed. */
  readonly #requested = new Map<RamBlock, Uint32Array>();
  /** Accesses waiting, by block and page. */
  readonly #waiters = new Map<RamBlock, Map<number, Waiter[]>>();
  /** Blocktime accounting is on (capability postcopy-blocktime). */
  readonly #blocktime: boolean;
  #blockedMs = 0;
  /** Page requests sent (messages). */
  requests = 0;

  constructor(ram: GuestRam, rp: Writable | undefined, blocktime: boolean) {
    this.#ram = ram;
    this.#rp = rp;
    this.#blocktime = blocktime;
  }

  /** ADVISE: every page missing until the stream brings it (ram_postcopy_incoming_init). */
  track(): void {
    for (const b of this.#ram.blocks) {
      b.trackPresence();
      this.#requested.set(b, new Uint32Array(b.written.length));
    }
    this.#ram.pageFault = this;
  }

  /** The end (completed, or failed before the guest ran): every page counts as present again. */
  untrack(): void {
    for (const b of this.#ram.blocks) b.untrackPresence();
    if (this.#ram.pageFault === this) this.#ram.pageFault = undefined;
    // Nothing can wait any more: a completed stream brought every page.
    for (const [, pages] of this.#waiters) for (const [, ws] of pages) for (const w of ws) w.resolve();
    this.#waiters.clear();
  }

  /** The blocktime figures, if the capability asked for them. */
  blocktime(): Blocktime | undefined {
    if (!this.#blocktime) return undefined;
    const ms = Math.round(this.#blockedMs);
    return { total: ms, vcpu: [ms] };
  }

  /** The link went down (undefined) or a new one is up: page requests go there. */
  setReturnPath(rp: Writable | undefined): void {
    this.#rp = rp;
    this.#lastRb = undefined;
  }

  /** After a resume: asks again for every page still waited on (the old requests were lost). */
  rerequest(): void {
    for (const [b, pages] of this.#waiters) {
      const req = this.#requested.get(b)!;
      for (const p of pages.keys()) req[p >>> 5]! &= ~(1 << (p & 31));
      for (const p of pages.keys()) this.#request(b, p);
    }
  }

  fault(block: RamBlock, page: number, vcpu: boolean): Promise<void> {
    if (block.isPresent(page)) return Promise.resolve();
    return new Promise<void>((resolve) => {
      let pages = this.#waiters.get(block);
      if (!pages) {
        pages = new Map();
        this.#waiters.set(block, pages);
      }
      const list = pages.get(page) ?? [];
      list.push({ resolve, since: vcpu && this.#blocktime ? performance.now() : undefined });
      pages.set(page, list);
      this.#request(block, page);
    });
  }

  /** A page of the stream was placed: it is present now and whoever waited on it goes on. */
  placed(block: RamBlock, page: number): void {
    block.setPresent(page);
    const req = this.#requested.get(block);
    if (req) req[page >>> 5]! &= ~(1 << (page & 31));
    const pages = this.#waiters.get(block);
    const list = pages?.get(page);
    if (!list) return;
    pages!.delete(page);
    const now = performance.now();
    for (const w of list) {
      if (w.since !== undefined) this.#blockedMs += now - w.since;
      w.resolve();
    }
  }

  /** Discarded pages become missing (ram_discard_range clears the receivedmap too). */
  discard(block: RamBlock, page: number, count: number): void {
    block.setPresent(page, count, false);
    block.host.fill(0, page * TARGET_PAGE_SIZE, (page + count) * TARGET_PAGE_SIZE);
  }

  /**
   * Asks the source for `page` and the missing, not yet asked for pages after it (up to
   * REQUEST_BATCH_PAGES, in the block): one message, as migrate_send_rp_req_pages words it,
   * a be64 start and be32 length in bytes, with the block's name when it changed.
   */
  #request(block: RamBlock, page: number): void {
    const req = this.#requested.get(block)!;
    const asked = (p: number) => (req[p >>> 5]! & (1 << (p & 31))) !== 0;
    if (asked(page)) return;
    let n = 0;
    while (
      n < REQUEST_BATCH_PAGES &&
      page + n < block.pages &&
      !block.isPresent(page + n) &&
      !asked(page + n)
    ) {
      req[(page + n) >>> 5]! |= 1 << ((page + n) & 31);
      n++;
    }
    const rp = this.#rp;
    // The link is down: the request is made again once a resumed source listens.
    if (!rp || rp.destroyed || rp.writableEnded) return;
    const named = block !== this.#lastRb;
    const payload = encodeReqPages(
      page * TARGET_PAGE_SIZE,
      n * TARGET_PAGE_SIZE,
      named ? block.idstr : undefined,
    );
    const msg = rpMessage(named ? MIG_RP_MSG_REQ_PAGES_ID : MIG_RP_MSG_REQ_PAGES, payload);
    this.#lastRb = block;
    this.requests++;
    rp.write(msg);
  }
}

/** A return-path message: be16 type, be16 length, the payload. */
function rpMessage(type: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(4);
  head.writeUInt16BE(type, 0);
  head.writeUInt16BE(payload.length, 2);
  return Buffer.concat([head, payload]);
}

/**
 * The answer to RECV_BITMAP (migrate_send_rp_recv_bitmap + ramblock_recv_bitmap_send): the
 * message with the block's counted name, then outside any message the received bitmap in
 * the shared codec's layout (stream/postcopy.ts: size, little-endian bits, end mark).
 */
export function encodeRecvBitmap(block: RamBlock): Buffer {
  const received = block.receivedMap ?? new Uint32Array(block.written.length).fill(0xffffffff);
  return Buffer.concat([
    rpMessage(MIG_RP_MSG_RECV_BITMAP, encodeCountedName(block.idstr)),
    encodeRecvBitmapBits(received, block.pages),
  ]);
}
