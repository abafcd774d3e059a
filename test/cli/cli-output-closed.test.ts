// A quick command whose output is closed under it (`qmigrate uri ... | head -1`) exits 141,
// as --help says, not 0: the EPIPE arrives after the command's last write has returned.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const entry = fileURLToPath(new URL('../../src/cli/bin.ts', import.meta.url));

test('qmigrate uri with many URIs into a reader that reads one line: exit 141', async () => {
  // Far more output than a pipe holds, so writes are still going when the reader leaves.
  const uris = Array.from({ length: 20_000 }, (_, i) => `tcp:host:${i + 1}`);
  const child = spawn(process.execPath, ['--import', 'tsx', entry, 'uri', ...uris], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => {
    stderr += d;
  });
  child.stdout.once('data', () => child.stdout.destroy());
  const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
  assert.equal(code, 141, stderr);
  assert.doesNotMatch(stderr, /^\s+at /m, 'no stack trace');
});
