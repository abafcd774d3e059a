/**
 * Debian's Chromium (`npm run setup:packages` installs it) for the tests that open a page:
 * found at /usr/bin/chromium (CHROMIUM names another), skipped loudly when absent (a failure
 * under QMIGRATE_REQUIRE_QEMU=1, as for QEMU), and driven headless through playwright-core
 * (never its own browser download), off the network, with a new profile directory removed after.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { type BrowserContext, chromium, type Page } from 'playwright-core';
import { atExit } from './at-exit.js';
import { skipLoudly } from './qemu.js';

/**
 * Headless as root, and quiet: without the background-networking flags Chromium keeps
 * trying the (closed) network for updates, sync and field trials.
 */
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** The Chromium binary, or why there is none. */
export function findChromium(): { path: string } | { missing: string } {
  const path = process.env.CHROMIUM ?? '/usr/bin/chromium';
  return existsSync(path) ? { path } : { missing: `${path} does not exist` };
}

/** The Chromium binary, or undefined after skipping the test loudly. */
export function requireChromium(t: TestContext): string | undefined {
  const c = findChromium();
  if ('path' in c) return c.path;
  skipLoudly(t, `Chromium not found (${c.missing}); run \`npm run setup:packages\``);
  return undefined;
}

/**
 * Starts Chromium with a fresh profile directory; both go when `t` ends (and on exit).
 * @param width the window's width in px (the page's layout width).
 */
export async function launchChromium(
  t: TestContext | undefined,
  executablePath: string,
  { width = 1040, height = 900 }: { width?: number; height?: number } = {},
): Promise<{ context: BrowserContext; page: Page; close(): Promise<void> }> {
  const profile = mkdtempSync(join(tmpdir(), 'qmigrate-chromium-'));
  const unregister = atExit(() => rmSync(profile, { recursive: true, force: true }));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width, height },
    // The pages are self-contained: nothing may be fetched (a page that tries fails its test).
    offline: true,
  });
  const page = context.pages()[0] ?? (await context.newPage());
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await context.close().catch(() => {});
    rmSync(profile, { recursive: true, force: true });
    unregister();
  };
  t?.after(close);
  return { context, page, close };
}

/** What pngStats uses of a browser's globals. */
interface BrowserGlobals {
  createImageBitmap(blob: Blob): Promise<{ width: number; height: number }>;
  OffscreenCanvas: new (
    w: number,
    h: number,
  ) => {
    getContext(kind: '2d'): {
      drawImage(image: unknown, x: number, y: number): void;
      getImageData(x: number, y: number, w: number, h: number): { data: Uint8ClampedArray };
    };
  };
}

/** Pixel counts of a PNG, decoded by the browser itself: all, and those near each color. */
export async function pngStats(
  page: Page,
  png: Buffer,
  colors: Record<string, [number, number, number]>,
): Promise<{ width: number; height: number; nonBackground: number; near: Record<string, number> }> {
  return page.evaluate(
    async ({ b64, colors }) => {
      // The browser's own globals (tsconfig has no DOM lib).
      const w = globalThis as unknown as BrowserGlobals;
      const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      const bmp = await w.createImageBitmap(new Blob([bytes], { type: 'image/png' }));
      const ctx = new w.OffscreenCanvas(bmp.width, bmp.height).getContext('2d');
      ctx.drawImage(bmp, 0, 0);
      const d = ctx.getImageData(0, 0, bmp.width, bmp.height).data;
      const bg = [d[0], d[1], d[2]];
      const near: Record<string, number> = Object.fromEntries(Object.keys(colors).map((k) => [k, 0]));
      let nonBackground = 0;
      for (let i = 0; i < d.length; i += 4) {
        const [r, g, b] = [d[i] as number, d[i + 1] as number, d[i + 2] as number];
        if (
          Math.abs(r - (bg[0] as number)) +
            Math.abs(g - (bg[1] as number)) +
            Math.abs(b - (bg[2] as number)) >
          30
        )
          nonBackground++;
        for (const [k, [cr, cg, cb]] of Object.entries(colors)) {
          if (Math.abs(r - cr) + Math.abs(g - cg) + Math.abs(b - cb) < 40) near[k] = (near[k] ?? 0) + 1;
        }
      }
      return { width: bmp.width, height: bmp.height, nonBackground, near };
    },
    { b64: png.toString('base64'), colors },
  );
}
