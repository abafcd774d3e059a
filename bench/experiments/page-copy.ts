/**
 * What copying received pages into guest RAM costs in Node, whichever API does it: the
 * destination of a single-channel migration must copy every page out of its read buffer,
 * because the stream puts an 8-byte header before each one.
 *
 *   node --import tsx bench/experiments/page-copy.ts [MiB]
 */
const PAGE = 4096;
const RECORD = PAGE + 8;
const mib = Number(process.argv[2] ?? 1024);
const pages = (mib << 20) / PAGE;

const ram = Buffer.alloc(pages * PAGE, 1); // touched, as a destination's RAM is
const pool = Buffer.alloc(1 << 20, 7); // one read buffer full of records
const perPool = Math.floor(pool.length / RECORD);
const u8 = new Uint8Array(pool.buffer, pool.byteOffset, pool.length);

const ways: [string, (src: number, dst: number) => void][] = [
  ['Buffer.copy', (s, d) => void pool.copy(ram, d, s, s + PAGE)],
  [
    'Uint8Array.set(new Uint8Array(...))',
    (s, d) => ram.set(new Uint8Array(pool.buffer, pool.byteOffset + s, PAGE), d),
  ],
  ['Uint8Array.set(buffer.subarray(...))', (s, d) => ram.set(pool.subarray(s, s + PAGE), d)],
  ['Uint8Array.set(uint8array.subarray(...))', (s, d) => ram.set(u8.subarray(s, s + PAGE), d)],
];

for (let round = 0; round < 2; round++) {
  for (const [name, copy] of ways) {
    const t = performance.now();
    for (let p = 0; p < pages; p++) copy((p % perPool) * RECORD + 8, p * PAGE);
    console.log(`${name}: ${mib} MiB in ${(performance.now() - t).toFixed(1)} ms`);
  }
}
