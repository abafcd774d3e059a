// `qmigrate migrate` as a person sees it: run in a real pseudo-terminal (util-linux's
// `script`), between two `qmigrate vm` peers. The live line is redrawn in place (CR and
// erase-line), fits the terminal, its percent rises, it has an ETA, and the final report
// follows on lines of its own.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { inPty } from '../helpers/pty.js';
import { startLab } from '../orchestrator/lab.js';

const bin = fileURLToPath(new URL('../../src/cli/bin.ts', import.meta.url));
const quote = (s: string) => `'${s.replaceAll("'", "'\\''")}'`;

test('a terminal shows one live line, redrawn as the percent rises, with an ETA, then the report', async (t) => {
  // 64 MiB at 16 MiB/s: about 4 s of live line, a redraw every 500 ms.
  const lab = await startLab(t, 'qmigrate', 'qmigrate', { workloadRate: 2000 });
  if (!lab) return;
  const from = lab.plan.from.kind === 'unix' ? lab.plan.from.path : '';
  const to = lab.plan.to.kind === 'unix' ? lab.plan.to.path : '';
  const args = [
    'migrate',
    '--from',
    from,
    '--to',
    to,
    '--unix',
    join(lab.dir, 'mig.sock'),
    '--max-bandwidth',
    '16M',
  ];
  const cmd = [process.execPath, '--import', 'tsx', bin, ...args].map(quote).join(' ');
  const { code, out } = await inPty(cmd, 100);
  assert.equal(code, 0, out);
  const [live, ...rest] = out.split(/\r?\n(?=migration )/);
  const frames = (live ?? '').split('\r\x1b[2K').slice(1);
  assert.ok(frames.length >= 4, `several redraws: ${JSON.stringify(out)}`);
  assert.ok(!live?.includes('\n'), `the live line never leaves its line: ${JSON.stringify(live)}`);
  for (const f of frames) assert.ok(f.length <= 99, `fits 100 columns: ${f}`);
  const percents = frames
    .map((f) => /^\w+ (\d+)%/.exec(f)?.[1])
    .filter((p) => p !== undefined)
    .map(Number);
  assert.ok(percents.length >= 3, JSON.stringify(frames));
  for (let i = 1; i < percents.length; i++)
    assert.ok(percents[i]! >= percents[i - 1]!, `rising: ${percents}`);
  assert.ok(percents.at(-1)! > percents[0]!, `rising: ${percents}`);
  assert.ok(
    frames.some((f) => /ETA \d\d:\d\d$/.test(f)),
    `an ETA: ${JSON.stringify(frames)}`,
  );
  assert.ok(frames.every((f) => /ETA (\d\d:\d\d|--:--)$/.test(f)));
  assert.ok(
    frames.some((f) => / MiB \/ 64\.0 MiB {2}\d+\.\d MiB\/s /.test(f)),
    'the first pass: sent / RAM',
  );
  assert.match(frames.at(-1) ?? '', /^completed 100% /);
  const report = rest.join('\n').split(/\r?\n/);
  assert.match(report[0] ?? '', /^migration completed in \d+ ms \(setup \d+ ms, downtime \d+ ms\)$/);
  assert.match(
    report[1] ?? '',
    /^ {2}\d+\.\d MiB sent at \d+\.\d MiB\/s, \d+ passes, pages: \d+ normal, \d+ zero$/,
  );
  assert.equal(report[2], '  the guest runs on the destination');
});
