/**
 * Zero pages, for the main channel (migration/ram.c: save_zero_page, ram_handle_zero) and for
 * multifd (migration/multifd-zero-page.c) alike: whether a guest page may hold data, and
 * making a page zero on the destination. A page never written since its block was filled
 * is zero without a look (reading it would map it); the others are looked at (isZeroPage).
 */
import { isZeroPage, type RamBlock, TARGET_PAGE_SIZE } from '../machine/ram.js';

const PAGE = TARGET_PAGE_SIZE;

/**
 * Whether page `page` of `block` may hold data: written since the block was filled, and
 * not all zeros. False means it reads as zeros.
 */
export function pageHasData(block: RamBlock, page: number): boolean {
  return block.mayBeWritten(page) && !isZeroPage(block.host, page * PAGE);
}

/**
 * Makes page `page` of `block` zero, as a ZERO record or a multifd zero page asks, writing
 * it only if it may hold data (ram_handle_zero): untouched pages stay unmapped.
 */
export function handleZeroPage(block: RamBlock, page: number): void {
  if (pageHasData(block, page)) block.host.fill(0, page * PAGE, (page + 1) * PAGE);
}
