/**
 * Makes docs/report-example.png, the README's picture of a migration: a real `qmigrate demo
 * --report` (512 MiB guest writing 20000 pages/s, 100 MiB/s bandwidth: five passes in about
 * 6 s), its page opened in headless Chromium, the top (the outcome and the first two charts)
 * saved as PNG. Run: `npm run docs:report-example` (needs Chromium: `npm run setup:packages`).
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { findChromium, launchChromium } from '../test/helpers/chromium.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
// Relative to the repository, so the page's command line names no path of this machine.
const page = join('tmp', 'report-example.html');
const out = join(root, 'docs', 'report-example.png');

const chromium = findChromium();
if (!('path' in chromium)) {
  console.error(`report-example: Chromium not found (${chromium.missing}); run npm run setup:packages`);
  process.exit(1);
}
// tmp/ made here is removed again: a clean checkout stays clean but for the PNG.
const madeTmp = mkdirSync(join(root, 'tmp'), { recursive: true }) !== undefined;
function cleanUp(): void {
  rmSync(join(root, page), { force: true });
  if (madeTmp) rmSync(join(root, 'tmp'), { recursive: true, force: true });
}
const args = ['demo', '--size', '512', '--rate', '20000', '--max-bandwidth', '104857600', '--report', page];
const demo = spawnSync(process.execPath, ['--import', 'tsx', join('src', 'cli', 'bin.ts'), ...args], {
  cwd: root,
  stdio: ['ignore', 'inherit', 'inherit'],
});
if (demo.status !== 0) {
  cleanUp();
  console.error(`report-example: qmigrate demo exited with ${demo.status ?? demo.signal}`);
  process.exit(1);
}
try {
  const browser = await launchChromium(undefined, chromium.path, { width: 1040, height: 900 });
  try {
    await browser.page.goto(pathToFileURL(join(root, page)).href);
    // The page's top: title, outcome, the throughput and the remaining charts.
    const png = await browser.page.screenshot({ clip: { x: 0, y: 0, width: 1040, height: 900 } });
    writeFileSync(out, png);
    console.log(`report-example: wrote ${out} (${png.length} bytes)`);
  } finally {
    await browser.close();
  }
} finally {
  cleanUp();
}
