// With a plain -m, QEMU 10.0 creates its RAM backend as object `ram` and refuses any other
// object of that id (vl.c, two lines), after the object's own creation errors. qmigrate
// started with a memory backend `ram` beside its default one (two RAM blocks of one name) and
// refused a TLS or authz object `ram` with another text.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { qemuStderr } from '../helpers/qemu.js';
import { runQmigrate } from '../helpers/qmigrate.js';

test("an -object named 'ram' beside -m is refused with QEMU 10.0's text", { timeout: 60_000 }, async (t) => {
  const cases = [
    ['-m', '1M', '-object', 'authz-simple,id=ram,identity=x'],
    ['-m', '1M', '-object', 'tls-creds-x509,id=ram,dir=/nonexistent'],
    ['-m', '1M', '-object', 'authz-simple,id=a,identity=x', '-object', 'memory-backend-ram,id=ram,size=1M'],
  ];
  for (const args of cases) {
    const theirs = await qemuStderr(t, args);
    if (theirs === undefined) return;
    const ours = await runQmigrate(['vm', '-machine', 'none', '-display', 'none', '-nodefaults', ...args]);
    assert.equal(ours.code, 1, args.join(' '));
    assert.equal(ours.stderr.replaceAll('qmigrate: ', ''), theirs, args.join(' '));
  }
});
