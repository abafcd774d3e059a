// Guest RAM's presence map (a postcopy destination's receivedmap) and the workload's presence
// checks: a missing page goes to the fault handler, the workload waits for it without
// spinning and goes on once it is placed; the start position is found by reading only a few
// pages.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { GuestRam, type PageFaultHandler, type RamBlock, setBitRange } from '../../src/machine/ram.js';
import { findNextPage, locateNextPage, WORKLOAD_START, Workload } from '../../src/machine/workload.js';

const PAGE = 4096;

test('setBitRange sets and clears any range, whole words at once', () => {
  for (const [first, count] of [
    [0, 0],
    [3, 5],
    [30, 40],
    [32, 64],
    [5, 200],
  ] as const) {
    const m = new Uint32Array(8);
    setBitRange(m, first, count, true);
    for (let i = 0; i < 256; i++)
      assert.equal(
        (m[i >>> 5]! >>> (i & 31)) & 1,
        i >= first && i < first + count ? 1 : 0,
        `${first}+${count} bit ${i}`,
      );
    setBitRange(m, first, count, false);
    assert.ok(m.every((w) => w === 0));
  }
});

test('presence: untracked means present; tracked starts all missing; the fast path has no promise', () => {
  const ram = new GuestRam();
  const b = ram.add('m0', Buffer.alloc(100 * PAGE));
  assert.equal(b.isPresent(7), true);
  assert.equal(ram.touch(b, 7, true), undefined);
  b.trackPresence();
  assert.equal(b.isPresent(7), false);
  assert.equal(b.missingPages, 100);
  b.setPresent(7, 50);
  assert.equal(b.missingPages, 50);
  assert.equal(ram.touch(b, 7, true), undefined);
  assert.equal(ram.missingIn(BigInt(7 * PAGE), BigInt(50 * PAGE)), 0);
  assert.equal(ram.missingIn(0n, BigInt(100 * PAGE)), 50);
  assert.throws(() => ram.touch(b, 0, true), /missing and nothing can fetch it/);
  b.untrackPresence();
  assert.equal(b.missingPages, 0);
});

/** A fault handler whose pages come when the test says (release), or at once. */
function source(ram: GuestRam, atOnce = false) {
  const h = {
    faults: [] as number[],
    pending: [] as (() => void)[],
    fault(block: RamBlock, page: number): Promise<void> {
      h.faults.push(page);
      return new Promise<void>((resolve) => {
        const place = () => {
          block.setPresent(page);
          resolve();
        };
        if (atOnce) place();
        else h.pending.push(place);
      });
    },
    release() {
      for (const p of h.pending.splice(0)) p();
    },
  };
  ram.pageFault = h satisfies PageFaultHandler;
  return h;
}

/** Polls `cond` every 5 ms until it holds (or fails after `ms`). */
async function until(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) assert.fail(`${what}: not within ${ms} ms`);
    await sleep(5);
  }
}

test('locateNextPage reads about log2(pages) pages, and finds what findNextPage finds', async () => {
  const host = Buffer.alloc(4096 * PAGE);
  for (let p = WORKLOAD_START / PAGE; p < 1000; p++) host[p * PAGE] = 1;
  const read: number[] = [];
  const next = await locateNextPage(host, (p) => {
    read.push(p);
    return undefined;
  });
  assert.equal(next, 1000);
  assert.equal(findNextPage(host), 1000);
  assert.ok(read.length <= 14, `${read.length} pages read`);
  assert.equal(findNextPage(Buffer.alloc(4096 * PAGE)), WORKLOAD_START / PAGE);
});

test('the workload waits on a missing page (no timer meanwhile) and goes on once it is there', async (t) => {
  const ram = new GuestRam();
  const b = ram.add('m0', Buffer.alloc(4 << 20));
  const w = new Workload(b, 0, ram);
  t.after(() => w.stop());
  b.trackPresence();
  // Every page present but the 300th of the loop's range.
  b.setPresent(0, b.pages);
  const hole = WORKLOAD_START / PAGE + 300;
  b.setPresent(hole, 1, false);
  const src = source(ram);
  w.start();
  await until(() => src.faults.length === 1, 'the fault');
  assert.deepEqual(src.faults, [hole]);
  assert.equal(w.faults, 1);
  assert.equal(w.writes, 300, 'it wrote up to the hole and stopped there');
  assert.equal(w.running, true);
  await sleep(50);
  assert.equal(w.writes, 300, 'no write while waiting');
  assert.equal(src.faults.length, 1, 'asked once');
  src.release();
  await until(() => w.writes > 300, 'writes after the page came');
  assert.ok(b.host[hole * PAGE]! > 0);
});

test('start on a postcopy destination fetches only the pages its search reads', async (t) => {
  const ram = new GuestRam();
  const b = ram.add('m0', Buffer.alloc(16 << 20));
  // One page a second: the loop itself touches next to nothing here.
  const w = new Workload(b, 1, ram);
  t.after(() => w.stop());
  b.trackPresence();
  const src = source(ram, true);
  w.start();
  await until(() => src.faults.length > 0, 'the search');
  await sleep(100);
  assert.ok(src.faults.length <= 15, `${src.faults.length} faults`);
  assert.equal(w.running, true);
  w.stop();
  assert.equal(w.running, false);
});
