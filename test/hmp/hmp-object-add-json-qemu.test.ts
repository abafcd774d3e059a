// object_add and -object in their JSON form take one JSON value as qobject_from_json does:
// malformed, cut short, followed by more, or with a key twice. Each HMP line and each command
// line is answered as QEMU 10.0 answers it (its JSON parser's texts); before, HMP answered
// with an internal error and -object kept the last of two equal keys.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Vm } from '../../src/vm/vm.js';
import { qemuStderr, requireQemu, startQemu } from '../helpers/qemu.js';
import { runQmigrate } from '../helpers/qmigrate.js';

const OK = '{"qom-type":"authz-simple","id":"a","identity":"x"';
const TEXTS = [
  OK,
  `${OK},"identity":"y"}`,
  `${OK},}`,
  `${OK}}}`,
  `${OK}} 1`,
  `${OK}} @`,
  `${OK}} [`,
  '{"qom-type":"authz-simple","id":"a","identity":"x',
  '{"qom-type":"authz-simple","id":"a","identity":12',
  '{"qom-type":"authz-simple","id":"a","identity":tru',
  '{"qom-type":"authz-simple","id":"a","identity":1e',
  "{'qom-type':'authz-simple','id':'a','identity':'\\xff'}",
];

test('object_add with malformed JSON answers as QEMU 10.0', async (t) => {
  const bin = requireQemu(t, '10.0');
  if (!bin) return;
  const q = await startQemu(bin);
  t.after(() => q.stop());
  const vm = new Vm();
  t.after(() => vm.close());
  for (const text of [...TEXTS, `${OK}}`]) {
    const args = { 'command-line': `object_add ${text}` };
    const theirs = await q.qmp.execute('human-monitor-command', args);
    const ours = await vm.execute('human-monitor-command', args).then(
      (r) => ({ return: r }),
      (e: Error) => ({ error: e.message }),
    );
    assert.deepEqual(ours, theirs, text);
  }
});

test('-object with malformed JSON is refused as QEMU 10.0 refuses it', { timeout: 120_000 }, async (t) => {
  for (const text of TEXTS.slice(1, 6)) {
    const theirs = await qemuStderr(t, ['-object', text]);
    if (theirs === undefined) return;
    const ours = await runQmigrate([
      'vm',
      '-machine',
      'none',
      '-display',
      'none',
      '-nodefaults',
      '-object',
      text,
    ]);
    assert.equal(ours.code, 1, text);
    assert.equal(ours.stderr.replaceAll('qmigrate: ', ''), theirs, text);
  }
});
