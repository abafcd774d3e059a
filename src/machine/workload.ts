/**
 * qmigrate's built-in guest workload, the `-machine none` stand-in for QEMU's migration test
 * guest (tests/qtest/migration/i386/a-b-bootblock.S): while the VM runs, it increments the
 * first byte of every page from 1 MiB to the end of the first RAM block, in order, wrapping
 * around, at a set rate. Its position lives in RAM itself (the page after the one step down),
 * so a migrated guest carries on where the source stopped. `checkGuestRam` is the check
 * QEMU's test applies (check_guests_ram in tests/qtest/migration/framework.c). On a postcopy
 * destination every page is checked before it is touched: a missing one is fetched through
 * the RAM's page-fault handler and the loop waits for it (as a vCPU waits on userfaultfd).
 */
import { ArgumentError } from '../errors.js';
import { type GuestRam, type RamBlock, TARGET_PAGE_SIZE } from './ram.js';

export const WORKLOAD_START = 1 << 20;

/**
 * The page the loop writes next: just after the one place the first bytes step down (the
 * first page whose byte differs from the first page's), or the first page if none does. A
 * binary search over that step: it reads about log2(pages) pages, so a postcopy destination
 * need not have the others. `before(p)` runs before page p is read (to make it present).
 */
export async function locateNextPage(
  host: Buffer,
  before: (page: number) => Promise<void> | undefined,
  start = WORKLOAD_START,
  end = host.length,
): Promise<number> {
  const first = start / TARGET_PAGE_SIZE;
  const byte = async (p: number) => {
    await before(p);
    return host[p * TARGET_PAGE_SIZE]!;
  };
  const head = await byte(first);
  // Invariant: pages in [first, lo) equal the first; pages in [hi, last) differ from it.
  let lo = first + 1;
  let hi = end / TARGET_PAGE_SIZE;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((await byte(mid)) === head) lo = mid + 1;
    else hi = mid;
  }
  return lo < end / TARGET_PAGE_SIZE ? lo : first;
}

/** locateNextPage over RAM that is all present (a dump, a guest not in postcopy). */
export function findNextPage(host: Buffer, start = WORKLOAD_START, end = host.length): number {
  const first = start / TARGET_PAGE_SIZE;
  const last = end / TARGET_PAGE_SIZE;
  const head = host[start]!;
  let lo = first + 1;
  let hi = last;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (host[mid * TARGET_PAGE_SIZE] === head) lo = mid + 1;
    else hi = mid;
  }
  return lo < last ? lo : first;
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
  /** Times the loop waited for a missing page. */
  faults = 0;
  readonly #ram: GuestRam | undefined;
  /** A wait for a missing page (or for the start position) is under way. */
  #waiting = false;
  /** Bumped at each start/stop, so a wait that ends late does not restart a stopped loop. */
  #epoch = 0;

  /**
   * @param ram the RAM `block` belongs to, whose presence checks the loop obeys (without it,
   *   every page is taken as present).
   * @throws {ArgumentError} when `block` has no page beyond its first MiB to write.
   */
  constructor(block: RamBlock, rate: number, ram?: GuestRam) {
    this.#block = block;
    this.#ram = ram;
    this.rate = rate;
    this.#first = WORKLOAD_START / TARGET_PAGE_SIZE;
    this.#last = block.pages;
    if (this.#last <= this.#first + 1) throw new ArgumentError('the workload needs more than 1 MiB of RAM');
    this.#next = findNextPage(block.host);
  }

  get running(): boolean {
    return this.#timer !== undefined || this.#waiting;
  }

  start(): void {
    if (this.running) return;
    const epoch = ++this.#epoch;
    const block = this.#block;
    if (!block.receivedMap) {
      // RAM may have changed while stopped (an incoming migration): pick up from it.
      this.#next = findNextPage(block.host);
      this.#run();
      return;
    }
    // A postcopy destination: only the pages the search reads are fetched.
    this.#waiting = true;
    void locateNextPage(block.host, (p) => this.#ram?.touch(block, p, true)).then(
      (next) => {
        this.#waiting = false;
        if (epoch !== this.#epoch) return;
        this.#next = next;
        this.#run();
      },
      () => {
        this.#waiting = false;
      },
    );
  }

  stop(): void {
    this.#epoch++;
    this.#waiting = false;
    if (!this.#timer) return;
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #run(): void {
    this.#lastTick = performance.now();
    this.#credit = 0;
    this.#timer = setInterval(() => this.#tick(), 2);
  }

  /** The loop stops until page `p` is present (no timer runs meanwhile), then goes on. */
  #wait(pending: Promise<void>): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#waiting = true;
    this.faults++;
    const epoch = this.#epoch;
    pending.then(
      () => {
        if (epoch !== this.#epoch) return;
        this.#waiting = false;
        this.#run();
      },
      () => {
        if (epoch === this.#epoch) this.#waiting = false;
      },
    );
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
    const block = this.#block;
    const tracked = block.receivedMap !== undefined && this.#ram !== undefined;
    for (let i = 0; i < n; i++) {
      const p = this.#next;
      if (tracked && !block.isPresent(p)) {
        // The presence check: the access waits for the page (the credit left is dropped,
        // as a blocked vCPU does not catch up).
        this.writes += i;
        let pending: Promise<void>;
        try {
          pending = this.#ram!.touch(block, p, true) ?? Promise.resolve();
        } catch (e) {
          pending = Promise.reject(e);
        }
        this.#wait(pending);
        return;
      }
      const at = p * TARGET_PAGE_SIZE;
      host[at] = (host[at]! + 1) & 0xff;
      this.#block.markDirty(p);
      this.#next = p + 1 >= this.#last ? this.#first : p + 1;
    }
    this.writes += n;
  }
}
