/**
 * Shared by the fuzz targets of binary streams: edits of a valid input (cuts, bit flips,
 * inserted and deleted bytes, fields set to extreme values), the largest Buffer allocation
 * made while code runs, and a bound on how long an async step may take.
 */
import fc from 'fast-check';

/** A field of a valid input: where it starts and how many bytes it has (big-endian). */
export interface Field {
  at: number;
  width: 1 | 2 | 4 | 8;
}

const EXTREMES = [
  0n,
  1n,
  0x7fn,
  0xffn,
  0x7fffn,
  0xffffn,
  0x7fffffffn,
  0x80000000n,
  0xffffffffn,
  1n << 53n,
  (1n << 64n) - 1n,
];

export type Edit =
  | { kind: 'cut'; at: number }
  | { kind: 'flip'; at: number; bit: number }
  | { kind: 'insert'; at: number; bytes: Uint8Array }
  | { kind: 'delete'; at: number; n: number }
  | { kind: 'field'; which: number; value: bigint }
  | { kind: 'put'; at: number; width: 1 | 2 | 4 | 8; value: bigint };

const edit: fc.Arbitrary<Edit> = fc.oneof(
  fc.record({ kind: fc.constant('cut' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.nat(7) }),
  fc.record({
    kind: fc.constant('insert' as const),
    at: fc.nat(),
    bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }),
  }),
  fc.record({ kind: fc.constant('delete' as const), at: fc.nat(), n: fc.integer({ min: 1, max: 16 }) }),
  fc.record({ kind: fc.constant('field' as const), which: fc.nat(), value: fc.constantFrom(...EXTREMES) }),
  fc.record({
    kind: fc.constant('put' as const),
    at: fc.nat(),
    width: fc.constantFrom(1 as const, 2 as const, 4 as const, 8 as const),
    value: fc.constantFrom(...EXTREMES),
  }),
);

/** One to four edits, the field edits first (they name positions of the unedited input). */
export const edits: fc.Arbitrary<Edit[]> = fc
  .array(edit, { minLength: 1, maxLength: 4 })
  .map((es) => [...es.filter((e) => e.kind === 'field'), ...es.filter((e) => e.kind !== 'field')]);

function put(b: Buffer, at: number, width: number, value: bigint): void {
  if (at + width > b.length) return;
  const v = value & ((1n << BigInt(8 * width)) - 1n);
  for (let i = 0; i < width; i++) b[at + i] = Number((v >> BigInt(8 * (width - 1 - i))) & 0xffn);
}

/** Applies the edits in order to a copy of `base`; positions wrap around the current length. */
export function mutate(base: Buffer, fields: readonly Field[], es: readonly Edit[]): Buffer {
  let b = Buffer.from(base);
  for (const e of es) {
    const at = (x: number) => (b.length === 0 ? 0 : x % (b.length + 1));
    switch (e.kind) {
      case 'cut':
        b = b.subarray(0, at(e.at));
        break;
      case 'flip':
        if (b.length) b[e.at % b.length]! ^= 1 << e.bit;
        break;
      case 'insert': {
        const i = at(e.at);
        b = Buffer.concat([b.subarray(0, i), e.bytes, b.subarray(i)]);
        break;
      }
      case 'delete': {
        const i = at(e.at);
        b = Buffer.concat([b.subarray(0, i), b.subarray(i + e.n)]);
        break;
      }
      case 'field': {
        const f = fields[e.which % Math.max(1, fields.length)];
        if (f) put(b, f.at, f.width, e.value);
        break;
      }
      case 'put':
        put(b, b.length ? e.at % b.length : 0, e.width, e.value);
        break;
    }
  }
  return b;
}

/**
 * Runs `f` while recording the largest Buffer allocation (alloc, allocUnsafe, allocUnsafeSlow).
 * The fuzz targets run one at a time, so what is recorded is the code under test's.
 */
export async function largestAllocation<T>(f: () => Promise<T>): Promise<[T, number]> {
  const saved = { alloc: Buffer.alloc, allocUnsafe: Buffer.allocUnsafe, slow: Buffer.allocUnsafeSlow };
  let max = 0;
  const note = (n: number): number => {
    if (n > max) max = n;
    return n;
  };
  Buffer.alloc = ((n: number, ...rest: never[]) => saved.alloc(note(n), ...rest)) as typeof Buffer.alloc;
  Buffer.allocUnsafe = ((n: number) => saved.allocUnsafe(note(n))) as typeof Buffer.allocUnsafe;
  Buffer.allocUnsafeSlow = ((n: number) => saved.slow(note(n))) as typeof Buffer.allocUnsafeSlow;
  try {
    return [await f(), max];
  } finally {
    Buffer.alloc = saved.alloc;
    Buffer.allocUnsafe = saved.allocUnsafe;
    Buffer.allocUnsafeSlow = saved.slow;
  }
}

/** `p`, or a rejection after `ms` milliseconds saying what did not end. */
export async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not end in ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, hang]);
  } finally {
    clearTimeout(timer);
  }
}
