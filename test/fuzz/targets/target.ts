/**
 * What a fuzz target is: a property over inputs that fast-check builds valid and then mutates.
 * Each file of test/fuzz/targets/ exports `targets`; test/fuzz/targets.test.ts runs every
 * target with a fixed seed (CI), `npm run fuzz -- --time S` runs them for as long as asked.
 */
import type fc from 'fast-check';

export interface FuzzTarget {
  /** Stable name, used by `--only` and in regression seeds: `area/what`, e.g. `qmp/json-stream`. */
  name: string;
  /**
   * The property. It must throw (or reject) only when the code under test broke a promise:
   * an exception that is not the project's own error type, a wrong round trip, a hang (async
   * targets bound their own waits), memory that grows with garbage.
   */
  property(): fc.IRawProperty<unknown[]>;
  /** Runs per target in the fixed-seed CI test (keep the target's CI share under ~5 s). */
  ciRuns: number;
}
