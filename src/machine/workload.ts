/**
 * qmigrate's built-in guest workload, the `-machine none` stand-in for QEMU's migration test
 * guest (tests/qtest/migration/i386/a-b-bootblock.S): while the VM runs, it increments the
 * first byte of every page from 1 MiB to the end of the first RAM block, in order, wrapping
 * around, at a set rate. Its position lives in RAM itself (the page after the one step down),
 * so a migrated guest carries on where the source stopped. `checkGuestRam` is the check
 * QEMU's test applies (check_guests_ram in tests/qtest/migration/framework.c).
 */
import { ArgumentError } from '../errors.js';
import { type RamBlock, TARGET_PAGE_SIZE } from './ram.js';

export const WORKLOAD_START = 1 << 20;

/** The page the loop writes next: just after the one place the first bytes step down. */
export function findNextPage(host: Buffer, start = WORKLOAD_START, end = host.length): number {
  const first = start / TARGET_PAGE_SIZE;
  const last = end / TARGET_PAGE_SIZE;
  for (let p = first + 1; p < last; p++) {
    if (host[p * TARGET_PAGE_SIZE] !== host[(p - 1) * TARGET_PAGE_SIZE]) return p;
  }
  return first;
}

/**
 * QEMU's check: every page's first byte in [start, end) equals the previous one, except at
 * most one place where it is one less (mod 256). Returns the number of bad pages (0 = pass).
 */
export function checkGuestRam(host: Buffer, start = WORKLOAD_START, end = host.length): number {
  let last = host[start]!;
  let hitEdge = false;
  let bad = 0;
  for (let a = start + TARGET_PAGE_SIZE; a < end; a += TARGET_PAGE_SIZE) {
    const b = host[a]!;
    if (b !== last) {
      if (((b + 1) & 0xff) === last && !hitEdge) {
        hitEdge = true;
        last = b;
      } else bad++;
    }
  }
  return bad;
}

export class Workload {
  readonly #block: RamBlock;
  /** Pages written per second; 0 means as fast as the event loop allows. */
  readonly rate: number;
  #next: number;
  #first: number;
  #last: number;
  #timer: NodeJS.Timeout | undefined;
  #lastTick = 0;
  #credit = 0;
  /** Page increments done since start (for reports). */
  writes = 0;

  /** @throws {ArgumentError} when `block` has no page beyond its first MiB to write. */
  constructor(block: RamBlock, rate: number) {
    this.#block = block;
    this.rate = rate;
    this.#first = WORKLOAD_START / TARGET_PAGE_SIZE;
    this.#last = block.pages;
    if (this.#last <= this.#first + 1) throw new ArgumentError('the workload needs more than 1 MiB of RAM');
    this.#next = findNextPage(block.host);
  }

  get running(): boolean {
    return this.#timer !== undefined;
  }

  start(): void {
    if (this.#timer) return;
    // RAM may have changed while stopped (an incoming migration): pick up from it.
    this.#next = findNextPage(this.#block.host);
    this.#lastTick = performance.now();
    this.#credit = 0;
    this.#timer = setInterval(() => this.#tick(), 2);
  }

  stop(): void {
    if (!this.#timer) return;
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #tick(): void {
    const now = performance.now();
    const dt = now - this.#lastTick;
    this.#lastTick = now;
    let n: number;
    if (this.rate === 0) n = 8192;
    else {
      this.#credit += (this.rate * dt) / 1000;
      n = Math.floor(this.#credit);
      this.#credit -= n;
    }
    const host = this.#block.host;
    for (let i = 0; i < n; i++) {
      const p = this.#next;
      const at = p * TARGET_PAGE_SIZE;
      host[at] = (host[at]! + 1) & 0xff;
      this.#block.markDirty(p);
      this.#next = p + 1 >= this.#last ? this.#first : p + 1;
    }
    this.writes += n;
  }
}
