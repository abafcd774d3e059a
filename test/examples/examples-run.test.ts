// The README's client example runs as written against a `qmigrate vm`.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { spawnQmigrate } from '../helpers/qmigrate.js';

test('examples/qmp-client.ts against qmigrate vm', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'qmigrate-example-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const sock = join(dir, 'qmp.sock');
  const vm = spawnQmigrate(['vm', '-machine', 'none', '-qmp', `unix:${sock},server=on,wait=off`]);
  t.after(() => vm.kill('SIGKILL'));
  await sleep(1500);
  const example = fileURLToPath(new URL('../../examples/qmp-client.ts', import.meta.url));
  const r = spawnSync(process.execPath, ['--import', 'tsx', example, sock], {
    encoding: 'utf8',
    timeout: 30_000,
  });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^connected to qmigrate \S+ \(QEMU 10\.0\.2\)$/m);
  assert.match(r.stdout, /^migrate takes channels: true$/m);
  assert.match(r.stdout, /^downtime-limit 500 ms, max-bandwidth 1073741824 B\/s$/m);
  assert.match(r.stdout, /^event STOP\nevent RESUME$/m);
  assert.match(r.stdout, /^refused: GenericError: exec migration needs a program to run: 'args' is empty$/m);
  assert.match(r.stdout, /^status: running, migration: \{\}$/m);
});
