// On/off options given a word that names a property of every JS object (`toString`,
// `constructor`, `__proto__`): QEMU 10.0 refuses each as any other non-boolean. A lookup in a
// plain object literal took them for booleans: `server=constructor` opened a listening
// monitor, `verify-peer=toString` got the schema's text instead of QEMU's.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { qemuStderr } from '../helpers/qemu.js';
import { runQmigrate } from '../helpers/qmigrate.js';

test('booleans named like Object.prototype members are refused with QEMU 10.0 texts', {
  timeout: 60_000,
}, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'qmigrate-bool-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  // Before the fix the monitors' cases started a VM that ran until killed: the test's timeout.
  const cases = [
    ['-object', `tls-creds-x509,id=t,dir=${dir},verify-peer=hasOwnProperty`],
    ['-object', `tls-creds-x509,id=t,dir=${dir},sanity-check=valueOf`],
    ['-qmp', `unix:${dir}/a.sock,server=constructor,wait=off`],
    ['-monitor', `unix:${dir}/b.sock,server=on,wait=toString`],
    ['-chardev', `socket,id=c,path=${dir}/c.sock,server=__proto__,wait=off`, '-mon', 'chardev=c'],
  ];
  for (const args of cases) {
    const theirs = await qemuStderr(t, args);
    if (theirs === undefined) return;
    const ours = await runQmigrate(['vm', '-machine', 'none', '-display', 'none', '-nodefaults', ...args]);
    assert.equal(ours.code, 1, args.join(' '));
    assert.equal(ours.stderr.replaceAll('qmigrate: ', ''), theirs, args.join(' '));
  }
});
