// `qmigrate demo` at a terminal shows what `qmigrate migrate` shows: the orchestrator's
// progress as one live line redrawn in place, then its report, then the demo's own check.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { inPty } from '../helpers/pty.js';

const bin = fileURLToPath(new URL('../../src/cli/bin.ts', import.meta.url));

test('qmigrate demo in a pseudo-terminal: the live line, the report, the check', async () => {
  // A guest dirtying 20 MiB/s, sent at 32 MiB/s: a few seconds of live line over a few passes.
  const cmd = `'${process.execPath}' --import tsx '${bin}' demo --size 64 --rate 5000 --max-bandwidth 33554432`;
  const { code, out } = await inPty(cmd, 120);
  assert.equal(code, 0, out);
  const lines = out.split(/\r?\n/);
  assert.match(lines[0] ?? '', /^starting two qmigrate VMs with 64 MiB of RAM/);
  assert.equal(lines[1], 'migrating live over unix with migrate {channels: [...]}');
  const frames = (lines[2] ?? '').split('\r\x1b[2K').slice(1);
  assert.ok(frames.length >= 3, JSON.stringify(lines[2]));
  assert.ok(
    frames.every((f) => /^\w+ (\d+|--)% {2}.* {2}ETA (\d\d:\d\d|--:--)$/.test(f)),
    JSON.stringify(frames),
  );
  assert.match(lines[3] ?? '', /^migration completed in \d+ ms \(setup \d+ ms, downtime \d+ ms\)$/);
  assert.match(
    lines[4] ?? '',
    /^ {2}\d+\.\d MiB sent at \d+\.\d MiB\/s, \d+ passes, pages: \d+ normal, \d+ zero$/,
  );
  assert.match(
    lines.slice(5).join('\n'),
    /^check: destination RAM equals the source's at switchover .*consistency ok, guest running$/m,
  );
});
