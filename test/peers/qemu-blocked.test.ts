// The migration blocker preflight tests rely on: QEMU 10.0 with an ivshmem device in peer mode
// lists the reason in query-migrate's `blocked-reasons` and refuses `migrate` with that text,
// while an idle `-machine none` or `-machine pc` guest has no `blocked-reasons` at all.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { migrationBlockerArgs, requireQemu, startQemu } from '../helpers/qemu.js';

const REASON = "Migration is disabled when using feature 'peer mode' in device 'ivshmem'";

test('QEMU 10.0: an ivshmem peer blocks migration, and says so in query-migrate and migrate', async (t) => {
  const bin = requireQemu(t, '10.0');
  if (!bin) return;
  const dir = mkdtempSync(join(tmpdir(), 'qmigrate-blocked-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const q = await startQemu(bin, migrationBlockerArgs(dir), ['-machine', 'pc', '-accel', 'tcg']);
  t.after(() => q.stop());
  assert.deepEqual(await q.qmp.execute('query-migrate'), { return: { 'blocked-reasons': [REASON] } });
  assert.deepEqual(await q.qmp.execute('migrate', { uri: 'exec:cat > /dev/null' }), {
    error: { class: 'GenericError', desc: REASON },
  });
  assert.deepEqual(await q.qmp.execute('query-status'), { return: { status: 'running', running: true } });
});

for (const machine of ['none', 'pc']) {
  test(`QEMU 10.0: an idle -machine ${machine} guest has no blocked-reasons`, async (t) => {
    const bin = requireQemu(t, '10.0');
    if (!bin) return;
    const q = await startQemu(bin, [], ['-machine', machine, '-accel', 'tcg']);
    t.after(() => q.stop());
    assert.deepEqual(await q.qmp.execute('query-migrate'), { return: {} });
  });
}
