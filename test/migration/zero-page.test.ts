// Zero pages (src/migration/zero-page.ts), the one predicate the main channel and multifd
// use on both sides: a page may hold data only if it was written since its block was filled
// and is not all zeros; making a page zero writes it only when it may hold data.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TARGET_PAGE_SIZE as PAGE, RamBlock } from '../../src/machine/ram.js';
import { handleZeroPage, pageHasData } from '../../src/migration/zero-page.js';

/** A 4-page block that starts as zeros, with page 1 written (data) and page 2 written (zeros). */
function block(): RamBlock {
  const b = new RamBlock('b', 0, Buffer.alloc(4 * PAGE), false);
  b.host.fill(7, PAGE, 2 * PAGE);
  b.markDirty(1);
  b.markDirty(2);
  return b;
}

test('a page may hold data when written since the block was filled and not all zeros', () => {
  const b = block();
  assert.deepEqual(
    [0, 1, 2, 3].map((p) => pageHasData(b, p)),
    [false, true, false, false],
  );
  // A page never written is zero by the bitmap alone, whatever its bytes: nothing reads it.
  b.host[3 * PAGE + 5] = 1;
  assert.equal(pageHasData(b, 3), false);
  // A block filled from a file may hold data anywhere.
  const filled = new RamBlock('f', 0, Buffer.alloc(2 * PAGE), true);
  filled.host[PAGE + PAGE - 1] = 1;
  assert.deepEqual([pageHasData(filled, 0), pageHasData(filled, 1)], [false, true]);
});

test('making a page zero clears exactly that page, and only a page that may hold data', () => {
  const b = block();
  b.host[3 * PAGE + 5] = 1; // never written: left alone
  handleZeroPage(b, 1);
  handleZeroPage(b, 3);
  assert.ok(b.host.subarray(PAGE, 2 * PAGE).every((x) => x === 0));
  assert.equal(b.host[3 * PAGE + 5], 1);
  assert.ok(b.host.subarray(0, PAGE).every((x) => x === 0));
});
