import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { isZeroPage, RamBlock, TARGET_PAGE_SIZE } from '../../src/machine/ram.js';

test('markDirtyRange sets exactly the bits markDirty would, logging on or off', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 299 }),
      fc.integer({ min: 0, max: 300 }),
      fc.boolean(),
      (page, len, logging) => {
        const count = Math.min(len, 300 - page);
        const bulk = new RamBlock('b', 0, Buffer.alloc(300 * TARGET_PAGE_SIZE), false);
        const single = new RamBlock('b', 0, Buffer.alloc(300 * TARGET_PAGE_SIZE), false);
        bulk.logging = single.logging = logging;
        bulk.markDirtyRange(page, count);
        for (let p = page; p < page + count; p++) single.markDirty(p);
        assert.deepEqual(bulk.written, single.written);
        assert.deepEqual(bulk.dirtyLog, single.dirtyLog);
        // The bitmap sync skips a block whose log was not touched: a set bit must be flagged.
        for (const b of [bulk, single]) {
          if (b.dirtyLog.some((w) => w !== 0)) assert.ok(b.logTouched, 'dirty log bits without logTouched');
        }
        assert.equal(single.logTouched, logging && count > 0);
      },
    ),
  );
});

test('isZeroPage looks at the whole page, not only its ends', () => {
  const host = Buffer.alloc(3 * TARGET_PAGE_SIZE);
  host[TARGET_PAGE_SIZE + 1234] = 1;
  host[3 * TARGET_PAGE_SIZE - 1] = 9;
  assert.equal(isZeroPage(host, 0), true);
  assert.equal(isZeroPage(host, TARGET_PAGE_SIZE), false);
  assert.equal(isZeroPage(host, 2 * TARGET_PAGE_SIZE), false);
});
