// comparePreflight on facts as QEMU reports them: every difference found, one line each,
// states first; RAM blocks by name and size; capabilities and multifd parameters once the
// plan's own are set; QEMU's blocked-reasons; channels a pre-8.2 peer cannot take.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { comparePreflight, type SideFacts } from '../../src/orchestrator/preflight.js';
import type { MigratePlan } from '../../src/orchestrator/types.js';

const MiB = 1 << 20;

function side(over: Partial<SideFacts> = {}): SideFacts {
  return {
    version: { qemu: { major: 10, minor: 0, micro: 0 }, package: '' },
    versionText: '10.0.0',
    channels: true,
    runState: 'running',
    migration: {},
    memdevs: [{ id: 'pc.ram', size: 1024 * MiB }],
    capabilities: { multifd: false, 'mapped-ram': false, events: false },
    parameters: { 'multifd-channels': 2, 'multifd-compression': 'none' },
    ...over,
  };
}

const plan: MigratePlan = {
  from: { kind: 'unix', path: 's' },
  to: { kind: 'unix', path: 'd' },
  uri: 'unix:m.sock',
  capabilities: {},
  parameters: {},
  onTimeout: 'cancel',
};

test('a good pair has no problems', () => {
  assert.deepEqual(
    comparePreflight({ source: side(), destination: side({ runState: 'inmigrate' }) }, plan),
    [],
  );
});

test('every difference, one line each, the states first', () => {
  const problems = comparePreflight(
    {
      source: side({
        runState: 'inmigrate',
        migration: { status: 'active', 'blocked-reasons': ['a device cannot be migrated'] },
        memdevs: [
          { id: 'pc.ram', size: 1024 * MiB },
          { id: 'm1', size: 3 * MiB + 1 },
        ],
        capabilities: { multifd: true },
        parameters: { 'multifd-channels': 4, 'multifd-compression': 'none' },
      }),
      destination: side({
        runState: 'paused',
        memdevs: [
          { id: 'pc.ram', size: 512 * MiB },
          { id: 'extra', size: 2 * MiB },
        ],
        capabilities: { multifd: true },
      }),
    },
    plan,
  );
  assert.deepEqual(problems, [
    "destination is not waiting for a migration: its run state is 'paused', not 'inmigrate' (start it with -incoming defer)",
    "source is itself waiting for an incoming migration (run state 'inmigrate'); it has no guest to send",
    "source already has a migration in progress (status 'active')",
    'source cannot migrate: a device cannot be migrated',
    "destination RAM block 'pc.ram' is 512 MiB, source's is 1024 MiB",
    "destination has no RAM block 'm1' (source's is 3145729 bytes; destination has 'pc.ram', 'extra')",
    "destination has a RAM block 'extra' (2 MiB) that the source lacks",
    "parameter 'multifd-channels' is 2 on the destination and 4 on the source; with multifd it must be the same",
  ]);
});

test("the plan's capabilities and parameters count: set on both, they agree", () => {
  const facts = {
    source: side(),
    destination: side({ runState: 'inmigrate', capabilities: { multifd: true, 'mapped-ram': false } }),
  };
  assert.deepEqual(comparePreflight(facts, plan), [
    "capability 'multifd' is on on the destination and off on the source; it must be the same on both (set it with --capability multifd=off)",
  ]);
  const fixed = { ...plan, capabilities: { multifd: true }, parameters: { 'multifd-channels': 3 } };
  assert.deepEqual(comparePreflight(facts, fixed), []);
});

test('RAM is not compared when a side has no query-memdev; a pre-8.2 side cannot take two channels', () => {
  const facts = {
    source: side({ memdevs: undefined, channels: false, versionText: '7.2.0' }),
    destination: side({ runState: 'inmigrate', memdevs: [{ id: 'x', size: MiB }] }),
  };
  assert.deepEqual(comparePreflight(facts, plan), []);
  const addr = { transport: 'socket', type: 'unix', path: 'm' } as const;
  const two: MigratePlan = {
    ...plan,
    uri: undefined,
    channels: [
      { 'channel-type': 'main', addr },
      { 'channel-type': 'cpr', addr },
    ],
  };
  assert.deepEqual(comparePreflight(facts, two), [
    "source is QEMU 7.2.0, which takes no 'channels' (8.2+); give a single main channel or --uri",
  ]);
});

test('a source that already migrated away (postmigrate): refused in the preflight, before the destination is set up', () => {
  assert.deepEqual(
    comparePreflight(
      { source: side({ runState: 'postmigrate' }), destination: side({ runState: 'inmigrate' }) },
      plan,
    ),
    [
      "source's guest has already migrated away (run state 'postmigrate'): QEMU will not migrate it again until 'cont'",
    ],
  );
});
