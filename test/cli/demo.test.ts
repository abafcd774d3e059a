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
    const summary = JSON.parse(r.stdout.trim().split('\n').at(-1)!);
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
  assert.match(r.stderr, /--transport must be unix, tcp, exec or file, not 'pigeon'/);
});
