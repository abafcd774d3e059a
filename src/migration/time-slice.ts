/**
 * Cooperative time slicing for the migration's long loops. QEMU moves RAM in a thread of its
 * own (migration/migration.c migration_thread), so its monitor answers while pages go out;
 * qmigrate runs both on one event loop, so every loop over guest RAM works in slices of a few
 * milliseconds and then lets the loop poll its sockets (monitors, return path, cancel).
 */
import { setImmediate as nextTurn } from 'node:timers/promises';

/**
 * How long a loop may hold the event loop. 5 ms keeps a monitor's round trip well under
 * 20 ms at the 99th percentile while costing under 1% in throughput (bench/notes.md).
 */
export const SLICE_MS = 5;

export class TimeSlice {
  readonly #ms: number;
  #start = performance.now();

  constructor(ms = SLICE_MS) {
    this.#ms = ms;
  }

  /** The slice is spent: the caller should end its batch and `yield()`. */
  get due(): boolean {
    return performance.now() - this.#start >= this.#ms;
  }

  /**
   * Lets the event loop run its I/O (a setImmediate turn comes after the poll phase), then
   * starts a new slice.
   */
  async yield(): Promise<void> {
    await nextTurn();
    this.#start = performance.now();
  }

  /** Starts a new slice without yielding: the caller has just let the event loop run. */
  restart(): void {
    this.#start = performance.now();
  }

  /** Yields only if the slice is spent. */
  async maybeYield(): Promise<void> {
    if (this.due) await this.yield();
  }
}
