// planCommands: the exact commands for each side, in order - events on at both ends, the
// user's capabilities on both except those one side alone reads, source-only parameters on
// the source only, channels or the equivalent uri per side, a tcp port 0 replaced by the port
// the destination listens on.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ArgumentError } from '../../src/errors.js';
import { planCommands } from '../../src/orchestrator/plan.js';
import type { MigratePlan } from '../../src/orchestrator/types.js';

const tcp0 = { transport: 'socket', type: 'inet', host: '127.0.0.1', port: '0' } as const;

function plan(over: Partial<MigratePlan> = {}): MigratePlan {
  return {
    from: { kind: 'unix', path: 'src.qmp' },
    to: { kind: 'tcp', host: 'h', port: 4444 },
    channels: [{ 'channel-type': 'main', addr: tcp0 }],
    capabilities: {},
    parameters: {},
    onTimeout: 'cancel',
    ...over,
  };
}

test('multifd, downtime and bandwidth: the order and the side of each command', () => {
  const cmds = planCommands(
    plan({
      capabilities: { multifd: true, 'auto-converge': true, 'late-block-activate': true },
      parameters: { 'multifd-channels': 4, 'downtime-limit': 100, 'max-bandwidth': 1 << 30 },
    }),
  );
  assert.deepEqual(cmds, [
    {
      side: 'destination',
      execute: 'migrate-set-capabilities',
      arguments: {
        capabilities: [
          { capability: 'events', state: true },
          { capability: 'multifd', state: true },
          { capability: 'late-block-activate', state: true },
        ],
      },
    },
    { side: 'destination', execute: 'migrate-set-parameters', arguments: { 'multifd-channels': 4 } },
    {
      side: 'destination',
      execute: 'migrate-incoming',
      arguments: { channels: [{ 'channel-type': 'main', addr: tcp0 }] },
    },
    {
      side: 'source',
      execute: 'migrate-set-capabilities',
      arguments: {
        capabilities: [
          { capability: 'events', state: true },
          { capability: 'multifd', state: true },
          { capability: 'auto-converge', state: true },
        ],
      },
    },
    {
      side: 'source',
      execute: 'migrate-set-parameters',
      arguments: { 'multifd-channels': 4, 'downtime-limit': 100, 'max-bandwidth': 1 << 30 },
    },
    { side: 'source', execute: 'migrate', arguments: { channels: [{ 'channel-type': 'main', addr: tcp0 }] } },
  ]);
});

test('the listening port replaces port 0 in migrate only; a side without channels gets the uri', () => {
  const cmds = planCommands(plan(), {
    sourceChannels: false,
    listening: [{ type: 'inet', host: '127.0.0.1', port: '41234' }],
  });
  assert.deepEqual(cmds.find((c) => c.execute === 'migrate-incoming')?.arguments, {
    channels: [{ 'channel-type': 'main', addr: tcp0 }],
  });
  assert.deepEqual(cmds.find((c) => c.execute === 'migrate')?.arguments, { uri: 'tcp:127.0.0.1:41234' });
  // No parameters asked for: no migrate-set-parameters.
  assert.equal(cmds.filter((c) => c.execute === 'migrate-set-parameters').length, 0);
});

test('a uri plan sends uri to both sides, with the port read back on the source', () => {
  const cmds = planCommands(plan({ channels: undefined, uri: 'tcp:127.0.0.1:0' }), {
    listening: [{ type: 'inet', host: '127.0.0.1', port: '5000' }],
  });
  assert.deepEqual(cmds.find((c) => c.execute === 'migrate-incoming')?.arguments, { uri: 'tcp:127.0.0.1:0' });
  assert.deepEqual(cmds.find((c) => c.execute === 'migrate')?.arguments, { uri: 'tcp:127.0.0.1:5000' });
});

test('a plan with both or neither of channels and uri, or channels an old peer cannot take, is refused', () => {
  assert.throws(() => planCommands(plan({ uri: 'tcp:h:1' })), ArgumentError);
  assert.throws(() => planCommands(plan({ channels: undefined })), ArgumentError);
  const abstract = { transport: 'socket', type: 'unix', path: 'x', abstract: true } as const;
  assert.throws(
    () =>
      planCommands(plan({ channels: [{ 'channel-type': 'main', addr: abstract }] }), {
        destinationChannels: false,
      }),
    /the destination takes no 'channels' \(QEMU before 8.2\), and these channels have no URI form/,
  );
});
