// src/qapi/types.ts is generated from schema.json; this fails when someone edits one without
// regenerating the other (`npm run gen`).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { generateMethods, generateTypes } from '../../src/qapi/gen-types.js';
import { schema } from '../../src/qapi/schema.js';

test('types.ts is what the schema generates', () => {
  const onDisk = readFileSync(new URL('../../src/qapi/types.ts', import.meta.url), 'utf8');
  assert.equal(onDisk, generateTypes(schema), 'src/qapi/types.ts is stale: run `npm run gen`');
});

test('qmp/methods.ts is what the schema generates', () => {
  const onDisk = readFileSync(new URL('../../src/qmp/methods.ts', import.meta.url), 'utf8');
  assert.equal(onDisk, generateMethods(schema), 'src/qmp/methods.ts is stale: run `npm run gen`');
});

test('the schema serves every command and event qmigrate needs', () => {
  const commands = `migrate migrate-incoming migrate_cancel migrate-continue migrate-pause migrate-recover
    migrate-start-postcopy migrate-set-capabilities query-migrate-capabilities migrate-set-parameters
    query-migrate-parameters query-migrate qmp_capabilities query-version query-commands query-qmp-schema
    query-status query-memdev stop cont quit human-monitor-command getfd closefd add-fd pmemsave
    object-add object-del`.split(/\s+/);
  assert.deepEqual([...schema.commands.keys()].sort(), commands.sort());
  assert.deepEqual([...schema.events.keys()].sort(), ['MIGRATION', 'MIGRATION_PASS', 'RESUME', 'STOP']);
  assert.deepEqual(schema.enumValues('MigrationAddressType'), ['socket', 'exec', 'rdma', 'file']);
  assert.deepEqual(schema.enumValues('MigrationChannelType'), ['main', 'cpr']);
});
