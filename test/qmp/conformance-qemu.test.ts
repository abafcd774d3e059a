// Conformance: the same raw QMP sessions played against a real QEMU 10.0 and against
// qmigrate's server must get the same bytes back, line for line, apart from event
// timestamps and the version in the greeting and in query-version.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { Vm } from '../../src/vm/vm.js';
import { requireQemu, startQemu } from '../helpers/qemu.js';
import { RawSession } from '../helpers/raw-session.js';

interface Session {
  name: string;
  incoming?: boolean;
  steps: (string | Buffer)[];
}

const NEGOTIATE = '{"execute":"qmp_capabilities"}\n';
const x = (o: unknown) => `${JSON.stringify(o)}\n`;

const SESSIONS: Session[] = [
  {
    name: 'negotiation mistakes',
    steps: [
      x({ execute: 'query-status' }),
      x({ execute: 'nope' }),
      x({ 'exec-oob': 'qmp_capabilities' }),
      x({ id: 1 }),
      x({}),
      x({ execute: 'qmp_capabilities', id: 1, arguments: { x: 1 } }),
      x({ execute: 'qmp_capabilities', arguments: { enable: ['bogus'] } }),
      x({ execute: 'qmp_capabilities', arguments: { enable: 'oob' } }),
      x({ execute: 'qmp_capabilities', arguments: { enable: ['oob'] }, id: { a: [1, 'two', null] } }),
      x({ execute: 'qmp_capabilities' }),
      x({ 'exec-oob': 'migrate-pause', id: 3 }),
      x({ 'exec-oob': 'query-status', id: 4 }),
      x({ execute: 'query-status', 'exec-oob': 'x' }),
      x({ 'exec-oob': 7 }),
    ],
  },
  {
    name: 'malformed JSON and bad requests',
    steps: [
      NEGOTIATE,
      'foo\n',
      '{"a": foo, "b": 1}\n',
      '{"execute":"query-status", "id": 01}\n',
      '{"execute":"query-status", "id": 1.}\n',
      '{"execute":"query-status", "id": +1}\n',
      '{"execute":"query-status", "id": %d}\n',
      '{"execute":"query-status", "id": "\\x41"}\n',
      '{"execute":"query-status", "id": [1,]}\n',
      '{1:2}\n',
      '{"execute":"query-status","id":1, "id":2}\n',
      Buffer.from([0xff, 0x0a]),
      '{"execute":"query-status"\n}\n',
      '{"execute":"query-status"}{"execute":"stop"}{"execute":"cont"}\n',
      "{'execute':'query-status','id':'single'}\n",
      '[1,2]\n',
      '"x"\n',
      '{"execute":1}\n',
      '{"exec":"query-status"}\n',
      '{"execute":"query-status","bogus":1}\n',
      '{"execute":"query-status","arguments":[]}\n',
      '{"execute":"query-status","control":{"run-oob":true}}\n',
      `${'['.repeat(1025)}${']'.repeat(1025)}\n`,
      `${'['.repeat(1000)}${']'.repeat(1000)}\n`,
      '{"execute":"query-status","id":"\\u00e9\\ud83d\\ude00\\u0000"}\n',
      '{"execute":"query-status","id":[2.0, 1e5, -0, -0.0, 0.1, 1e21, 1e-7, 18446744073709551615, 123456789012345678901234567890]}\n',
    ],
  },
  {
    name: 'commands, arguments and events',
    steps: [
      NEGOTIATE,
      x({ execute: 'query-status' }),
      x({ execute: 'stop' }),
      x({ execute: 'query-status', id: 'paused' }),
      x({ execute: 'stop' }),
      x({ execute: 'cont' }),
      x({ execute: 'cont' }),
      x({ execute: 'query-migrate' }),
      x({ execute: 'query-migrate-capabilities' }),
      x({ execute: 'query-migrate-parameters' }),
      x({
        execute: 'migrate-set-parameters',
        arguments: { 'downtime-limit': 42, 'max-bandwidth': -1, 'tls-creds': null },
      }),
      x({ execute: 'query-migrate-parameters' }),
      x({
        execute: 'migrate-set-capabilities',
        arguments: { capabilities: [{ capability: 'events', state: true }] },
      }),
      x({ execute: 'query-migrate-capabilities' }),
      x({ execute: 'no-such-command', id: 'x' }),
      x({ execute: 'no-such-command', id: [1, { a: true }] }),
      x({ execute: 'migrate', arguments: { channels: [] } }),
      x({ execute: 'migrate', arguments: { uri: 'foo:bar' } }),
      x({
        execute: 'migrate',
        arguments: { channels: [{ 'channel-type': 'main', addr: { transport: 'carrier-pigeon' } }] },
      }),
      x({ execute: 'migrate-incoming', arguments: { uri: 'tcp:127.0.0.1:0' } }),
      x({ execute: 'migrate_cancel' }),
      x({ execute: 'migrate-continue', arguments: { state: 'pre-switchover' } }),
      x({ execute: 'migrate-start-postcopy' }),
      x({ execute: 'migrate-recover', arguments: { uri: 'tcp:127.0.0.1:0' } }),
      x({ execute: 'getfd', arguments: { fdname: 'f' } }),
      x({ execute: 'closefd', arguments: { fdname: 'f' } }),
      x({ execute: 'add-fd', arguments: { 'fdset-id': 1 } }),
      x({ execute: 'query-status', arguments: { verbose: true } }),
      x({
        execute: 'migrate-set-capabilities',
        arguments: {
          capabilities: [
            { capability: 'multifd', state: true },
            { capability: 'postcopy-ram', state: true },
          ],
        },
      }),
    ],
  },
  {
    name: 'HMP through human-monitor-command',
    steps: [
      NEGOTIATE,
      ...[
        'info status',
        'info migrate',
        'info migrate_capabilities',
        'info migrate_parameters',
        'migrate_set_capability events on',
        'migrate_set_capability bogus on',
        'migrate_set_capability events maybe',
        'migrate_set_parameter downtime-limit 10k',
        'migrate_set_parameter max-bandwidth 1G',
        'migrate_set_parameter multifd-channels 0',
        'migrate_set_parameter multifd-channels 300',
        'migrate_set_parameter no-such-thing 1',
        'migrate_set_parameter tls-creds',
        'info migrate_parameters',
        'info migrate_capabilities',
        'bogus',
        '',
        'help migrate',
        'help migrate_set_parameter',
        'migrate foo:bar',
        'migrate',
        'migrate -d -r tcp:127.0.0.1',
        'migrate_incoming tcp:127.0.0.1:0',
        'migrate_cancel',
        'stop',
        'info status',
        'cont',
        'info status',
      ].map((line) => x({ execute: 'human-monitor-command', arguments: { 'command-line': line } })),
    ],
  },
  {
    name: 'a destination waiting for its migration',
    incoming: true,
    steps: [
      NEGOTIATE,
      x({ execute: 'query-status' }),
      x({ execute: 'stop' }),
      x({ execute: 'query-status' }),
      x({ execute: 'cont' }),
      x({ execute: 'migrate', arguments: { uri: 'exec:cat' } }),
      x({ execute: 'migrate-incoming', arguments: {} }),
      x({ execute: 'migrate-incoming', arguments: { uri: 'defer' } }),
      x({
        execute: 'migrate-set-capabilities',
        arguments: { capabilities: [{ capability: 'multifd', state: true }] },
      }),
      x({ execute: 'migrate-incoming', arguments: { uri: 'exec:cat' } }),
      x({ execute: 'query-migrate' }),
    ],
  },
];

/** Masks what legitimately differs: event time, and the version qmigrate reports. */
function normalise(line: string): string {
  return line
    .replace(/"timestamp": \{"seconds": \d+, "microseconds": \d+\}/g, '"timestamp": T')
    .replace(/"version": \{"qemu": \{[^}]*\}, "package": "[^"]*"\}/, '"version": V');
}

async function play(t: TestContext, s: Session): Promise<void> {
  const bin = requireQemu(t, '10.0');
  if (!bin) return;
  const dir = mkdtempSync(join(tmpdir(), 'qmigrate-conf-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const q = await startQemu(bin, s.incoming ? ['-incoming', 'defer'] : []);
  t.after(() => q.stop());
  q.qmp.close();
  const vm = new Vm(s.incoming ? { incoming: 'defer' } : {});
  t.after(() => vm.close());
  const ourPath = join(dir, 'ours.sock');
  await vm.server.listen({ kind: 'unix', path: ourPath });
  const theirs = await RawSession.open(join(q.dir, 'qmp.sock'));
  const ours = await RawSession.open(ourPath);
  t.after(() => {
    theirs.close();
    ours.close();
  });
  assert.equal(normalise(await ours.greeting()), normalise(await theirs.greeting()), 'greeting');
  for (const [i, step] of s.steps.entries()) {
    const a = (await theirs.step(step)).map(normalise);
    const b = (await ours.step(step)).map(normalise);
    assert.deepEqual(b, a, `step ${i}: ${String(step).slice(0, 120)}`);
  }
}

for (const s of SESSIONS) test(`qmigrate answers like QEMU 10.0: ${s.name}`, (t) => play(t, s));
