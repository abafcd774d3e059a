/**
 * `npm run fuzz -- --time S [--only REGEX] [--seed N]`: runs every fuzz target in turn with new
 * seeds until each has had its share of S seconds. A failure prints the target, seed, path and
 * counterexample (to be kept as a regression test) and the exit code is 1.
 */
import { parseArgs } from 'node:util';
import fc from 'fast-check';
import { loadTargets } from './fuzz-targets.js';

const USAGE = 'usage: npm run fuzz -- [--time SECONDS] [--only REGEX] [--seed N]';
function options() {
  try {
    return parseArgs({
      options: {
        time: { type: 'string', default: '60' },
        only: { type: 'string' },
        seed: { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }).values;
  } catch (e) {
    console.error(`fuzz: ${(e as Error).message}\n${USAGE}`);
    process.exit(2);
  }
}
const opt = options();
if (opt.help) {
  console.log(USAGE);
  process.exit(0);
}
const seconds = Number(opt.time);
if (!(seconds > 0)) {
  console.error(`fuzz: --time must be a number of seconds > 0, not '${opt.time}'`);
  process.exit(2);
}
let only: RegExp | undefined;
try {
  only = opt.only === undefined ? undefined : new RegExp(opt.only);
} catch (e) {
  console.error(`fuzz: --only: ${(e as Error).message}`);
  process.exit(2);
}
const targets = await loadTargets(only);
if (targets.length === 0) {
  console.error('fuzz: no target matches --only');
  process.exit(2);
}
let failed = 0;
const share = (seconds * 1000) / targets.length;
for (const target of targets) {
  const end = Date.now() + share;
  let runs = 0;
  let rounds = 0;
  while (Date.now() < end) {
    const seed = opt.seed !== undefined && rounds === 0 ? Number(opt.seed) : (Math.random() * 2 ** 31) | 0;
    const numRuns = Math.max(target.ciRuns, 100);
    const details = await fc.check(target.property(), { seed, numRuns, endOnFailure: true });
    rounds++;
    runs += details.numRuns;
    if (details.failed) {
      failed++;
      console.log(`FAIL ${target.name}: seed ${details.seed} path ${details.counterexamplePath}`);
      console.log(`  counterexample: ${fc.stringify(details.counterexample)}`);
      console.log(
        `  error: ${details.errorInstance instanceof Error ? details.errorInstance.stack : details.errorInstance}`,
      );
      break;
    }
  }
  console.log(`${target.name}: ${runs} inputs in ${rounds} rounds`);
}
process.exit(failed ? 1 : 0);
