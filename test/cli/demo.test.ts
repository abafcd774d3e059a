// `qmigrate demo`, the README's main job, succeeds on every transport (small guests in CI).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runQmigrate } from '../helpers/qmigrate.js';

for (const transport of ['unix', 'tcp', 'exec', 'file']) {
  test(`qmigrate demo --transport ${transport}`, async () => {
    const size = transport === 'unix' ? '192' : '64';
    const r = await runQmigrate([
      'demo',
      '--size',
      size,
      '--transport',
      transport,
      '--rate',
      '8000',
      '--json',
    ]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    // --json: stdout is the one JSON line; progress went to stderr.
    assert.equal(r.stdout.split('\n').length, 2, r.stdout);
    const summary = JSON.parse(r.stdout);
    assert.match(r.stderr, /^migrating live over/m);
    assert.equal(summary.ok, true);
    assert.equal(summary.ramIdentical, true);
    assert.equal(summary.consistencyBadPages, 0);
    assert.equal(summary.destinationRunning, true);
    assert.ok(summary.iterations >= 2, `${summary.iterations} syncs`);
    assert.equal(summary.normalPages + summary.zeroPages >= (Number(size) << 20) / 4096, true);
  });
}

test('qmigrate demo refuses an unknown transport with a usage error', async () => {
  const r = await runQmigrate(['demo', '--transport', 'pigeon']);
  assert.equal(r.code, 2);
  assert.match(
    r.stderr,
    /^error: option '--transport <kind>' argument 'pigeon' is invalid\. Allowed choices are unix, tcp, exec, file\.$/m,
  );
});

test('qmigrate demo --size 2, the smallest guest the workload fits in, works', async () => {
  const r = await runQmigrate(['demo', '--size', '2', '--json']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout).ok, true);
});
