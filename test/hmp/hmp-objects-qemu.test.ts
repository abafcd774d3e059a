// HMP's object_add and object_del (qom/qom-hmp-cmds.c): -object's syntax, keyval or JSON,
// with QEMU 10.0's errors, help line and missing-argument text; each line's output compared
// with a real QEMU 10.0's through human-monitor-command.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { Vm } from '../../src/vm/vm.js';
import { requireQemu, startQemu } from '../helpers/qemu.js';
import { makePki, pkiRoot } from '../helpers/tls-certs.js';

test('object_add / object_del print what QEMU 10.0 prints', async (t) => {
  const bin = requireQemu(t, '10.0');
  if (!bin) return;
  const pki = makePki(pkiRoot(t));
  const q = await startQemu(
    bin,
    [],
    ['-machine', 'none,memory-backend=m0', '-object', 'memory-backend-ram,id=m0,size=8M'],
  );
  t.after(() => q.stop());
  const vm = new Vm({ memdevs: [{ id: 'm0' } as never] });
  t.after(() => vm.close());
  const lines = [
    `object_add tls-creds-x509,id=h0,dir=${pki.server},endpoint=server`,
    `object_add tls-creds-x509,id=h0,dir=${pki.server},endpoint=server`,
    `object_add qom-type=tls-creds-x509,id=h1,dir=${pki.client},verify-peer=off`,
    'object_add no-such-type,id=h2',
    `object_add tls-creds-x509,id=h3,dir=${join(pki.server, 'nonexistent')}`,
    'object_add authz-simple,id=h4',
    'object_add {"qom-type":"authz-list","id":"j0","rules":[{"match":"CN=*","policy":"allow","format":"glob"}]}',
    'object_add {"qom-type":"authz-list","id":"j1","rules":[{"match":"CN=*"}]}',
    'object_del h0',
    'object_del h0',
    'object_del m0',
    'object_del j0',
    'object_add',
    'object_del',
    'help object_add',
    'help object_del',
  ];
  for (const line of lines) {
    const theirs = await q.qmp.execute('human-monitor-command', { 'command-line': line });
    const ours = { return: await vm.execute('human-monitor-command', { 'command-line': line }) };
    assert.deepEqual(ours, theirs, line);
  }
});
