// Every fuzz target (test/fuzz/targets/*.ts) with a fixed seed, so CI runs the same inputs each
// time; `npm run fuzz -- --time S [--only REGEX] [--seed N]` runs them longer with new seeds.
import { test } from 'node:test';
import fc from 'fast-check';
import { loadTargets } from '../../scripts/fuzz-targets.js';

const SEED = 0x71_6d_69_67; // 'qmig'

for (const target of await loadTargets()) {
  test(`fuzz ${target.name} (seed ${SEED}, ${target.ciRuns} runs)`, async () => {
    await fc.assert(target.property(), { seed: SEED, numRuns: target.ciRuns, endOnFailure: true });
  });
}
