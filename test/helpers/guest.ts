/**
 * Guest RAM images of known content for tests, and the QEMU command line that boots a
 * RAM-only guest on one: `-machine none,memory-backend=m0` with a shared memory-backend-file,
 * so the file is the guest's RAM (QEMU 7.2 and 10.0 both accept it) and `pmemsave` reads it.
 */
import { createCipheriv } from 'node:crypto';
import { closeSync, openSync, writeSync } from 'node:fs';

export const PAGE = 4096;

/**
 * Writes `size` bytes of mixed pages: every third page zero, every third filled with a byte
 * derived from its index, every third pseudo-random (AES-CTR of zeros, so it is repeatable
 * and cheap). Returns nothing; compare against the file itself.
 */
export function writeMixedImage(path: string, size: number, seed = 1): void {
  const key = Buffer.alloc(16, seed);
  const cipher = createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  const chunkPages = 1024;
  const fd = openSync(path, 'w');
  try {
    for (let first = 0; first * PAGE < size; first += chunkPages) {
      const pages = Math.min(chunkPages, size / PAGE - first);
      const chunk = cipher.update(Buffer.alloc(pages * PAGE));
      for (let p = 0; p < pages; p++) {
        const i = first + p;
        if (i % 3 === 0) chunk.fill(0, p * PAGE, (p + 1) * PAGE);
        else if (i % 3 === 1) chunk.fill((i * 7 + 1) & 0xff, p * PAGE, (p + 1) * PAGE);
      }
      writeSync(fd, chunk);
    }
  } finally {
    closeSync(fd);
  }
}

/** QEMU arguments for a RAM-only guest whose RAM is the file at `image`. */
export function guestArgs(image: string, sizeMiB: number): string[] {
  return [
    '-machine',
    'none,memory-backend=m0',
    '-object',
    `memory-backend-file,id=m0,size=${sizeMiB}M,mem-path=${image},share=on`,
    '-m',
    `${sizeMiB}M`,
  ];
}

/**
 * A RAM image the guest workload can start on: pseudo-random pages (so every page costs a
 * full 4 KiB on the wire) whose first bytes are all equal, as the workload's loop expects.
 */
export function writeWorkloadImage(path: string, size: number, seed = 9): void {
  const cipher = createCipheriv('aes-128-ctr', Buffer.alloc(16, seed), Buffer.alloc(16));
  const fd = openSync(path, 'w');
  try {
    for (let at = 0; at < size; at += 4 << 20) {
      const chunk = cipher.update(Buffer.alloc(Math.min(4 << 20, size - at)));
      for (let p = 0; p < chunk.length; p += PAGE) chunk[p] = 0;
      writeSync(fd, chunk);
    }
  } finally {
    closeSync(fd);
  }
}
