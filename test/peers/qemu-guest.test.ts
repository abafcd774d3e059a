// The test guest on both real QEMU peers: a RAM-only machine whose RAM is a file of known
// mixed content, read back through pmemsave. Later migration tests stand on this.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { guestArgs, writeMixedImage } from '../helpers/guest.js';
import { type QemuVersion, requireQemu, startQemu } from '../helpers/qemu.js';

for (const version of ['10.0', '7.2'] as QemuVersion[]) {
  test(`QEMU ${version} boots a memory-backend-file guest and pmemsave returns its RAM`, async (t) => {
    const bin = requireQemu(t, version);
    if (!bin) return;
    const dir = mkdtempSync(join(tmpdir(), 'qmigrate-guest-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const image = join(dir, 'ram.img');
    writeMixedImage(image, 16 << 20);
    const q = await startQemu(bin, [], guestArgs(image, 16));
    t.after(() => q.stop());
    const version_ = (await q.qmp.execute('query-version')) as {
      return: { qemu: { major: number; minor: number } };
    };
    assert.equal(`${version_.return.qemu.major}.${version_.return.qemu.minor}`, version);
    const dump = join(dir, 'dump.bin');
    assert.deepEqual(await q.qmp.execute('pmemsave', { val: 0, size: 16 << 20, filename: dump }), {
      return: {},
    });
    const ram = readFileSync(dump);
    assert.ok(ram.equals(readFileSync(image)), 'guest RAM differs from its backing file');
    assert.ok(
      ram.subarray(0, 4096).every((b) => b === 0),
      'page 0 is a zero page',
    );
    assert.ok(
      ram.subarray(4096, 8192).every((b) => b === 8),
      'page 1 is a pattern page',
    );
  });
}
