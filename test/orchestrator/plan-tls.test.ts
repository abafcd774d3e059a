// The TLS part of a plan: both credentials objects first (destination, then source), the
// destination a server with verify-peer, the source a client; tls-creds on both and
// tls-hostname on the source only; the clean-up restores what the preflight read and deletes
// the objects. The preflight refuses a side without object-add or the tls parameters.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { cleanupCommands, planCommands } from '../../src/orchestrator/plan.js';
import { comparePreflight, type SideFacts } from '../../src/orchestrator/preflight.js';
import type { MigratePlan } from '../../src/orchestrator/types.js';

const plan: MigratePlan = {
  from: { kind: 'unix', path: 's' },
  to: { kind: 'unix', path: 'd' },
  uri: 'tcp:10.0.0.2:4444',
  capabilities: {},
  parameters: { 'max-bandwidth': 0 },
  tls: { sourceDir: '/pki/a', destinationDir: '/pki/b', hostname: 'dst.example', id: 't1' },
  onTimeout: 'cancel',
};

test('planCommands with TLS: objects first, then tls-creds (and the source alone tls-hostname)', () => {
  const cmds = planCommands(plan);
  assert.deepEqual(cmds.slice(0, 2), [
    {
      side: 'destination',
      execute: 'object-add',
      arguments: {
        'qom-type': 'tls-creds-x509',
        id: 't1',
        dir: '/pki/b',
        endpoint: 'server',
        'verify-peer': true,
      },
    },
    {
      side: 'source',
      execute: 'object-add',
      arguments: {
        'qom-type': 'tls-creds-x509',
        id: 't1',
        dir: '/pki/a',
        endpoint: 'client',
        'verify-peer': true,
      },
    },
  ]);
  const params = cmds.filter((c) => c.execute === 'migrate-set-parameters');
  assert.deepEqual(
    params.map((c) => [c.side, c.arguments]),
    [
      ['destination', { 'tls-creds': 't1' }],
      ['source', { 'max-bandwidth': 0, 'tls-creds': 't1', 'tls-hostname': 'dst.example' }],
    ],
  );
  assert.equal(planCommands({ ...plan, tls: undefined }).filter((c) => c.execute === 'object-add').length, 0);
});

test('cleanupCommands: the parameters as they were, then object-del, on both sides', () => {
  const before = {
    source: { 'tls-creds': '', 'tls-hostname': 'old' },
    destination: { 'tls-creds': 'theirs' },
  };
  assert.deepEqual(cleanupCommands(plan, before), [
    {
      side: 'source',
      execute: 'migrate-set-parameters',
      arguments: { 'tls-creds': '', 'tls-hostname': 'old' },
      phase: 'cleanup',
    },
    { side: 'source', execute: 'object-del', arguments: { id: 't1' }, phase: 'cleanup' },
    {
      side: 'destination',
      execute: 'migrate-set-parameters',
      arguments: { 'tls-creds': 'theirs' },
      phase: 'cleanup',
    },
    { side: 'destination', execute: 'object-del', arguments: { id: 't1' }, phase: 'cleanup' },
  ]);
  assert.deepEqual(cleanupCommands({ ...plan, tls: undefined }), []);
});

function side(over: Partial<SideFacts> = {}): SideFacts {
  return {
    version: { qemu: { major: 7, minor: 2, micro: 0 }, package: '' },
    versionText: '7.2.0',
    channels: false,
    runState: 'running',
    migration: {},
    capabilities: {},
    parameters: { 'tls-creds': '' },
    commands: ['object-add', 'migrate'],
    ...over,
  };
}

test('preflight with TLS: a side without object-add or tls-creds is named', () => {
  const good = { source: side(), destination: side({ runState: 'inmigrate' }) };
  assert.deepEqual(comparePreflight(good, plan), []);
  const bad = {
    source: side({ parameters: {} }),
    destination: side({ runState: 'inmigrate', commands: ['migrate'] }),
  };
  assert.deepEqual(comparePreflight(bad, plan), [
    'destination (QEMU 7.2.0) has no object-add: qmigrate cannot create its TLS credentials there',
    "source (QEMU 7.2.0) has no 'tls-creds' migration parameter: it cannot migrate over TLS",
  ]);
  assert.deepEqual(comparePreflight(bad, { ...plan, tls: undefined }), []);
});
