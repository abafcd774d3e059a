// Property test: whatever JSON arrives, the checker answers with a typed value or a QMP
// error (QapiError), never anything else, for every command of the schema.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { checkCommand } from '../../src/qapi/check.js';
import { QapiError } from '../../src/qapi/errors.js';
import { JsonDouble } from '../../src/qapi/json.js';
import { type Member, schema } from '../../src/qapi/schema.js';

const commands = [...schema.commands.keys()];
const memberNames = [
  ...new Set(
    [...schema.types.values()].flatMap((t) =>
      t.meta === 'object' ? [...t.members.map((m: Member) => m.name), t.discriminator ?? 'type'] : [],
    ),
  ),
];
const enumValues = [
  ...new Set(
    [...schema.types.values()].flatMap((t) => (t.meta === 'enum' ? t.values.map((v) => v.name) : [])),
  ),
];

/** JSON-like values biased towards the schema's own names, so the visitor goes deep. */
const { value } = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small' },
    fc.constantFrom(...enumValues),
    fc.string(),
    fc.integer(),
    fc.bigInt({ min: -(1n << 70n), max: 1n << 70n }),
    fc.double().map((d) => (Number.isInteger(d) ? new JsonDouble(d) : d)),
    fc.boolean(),
    fc.constant(null),
    fc.array(tie('value'), { maxLength: 4 }),
    fc.dictionary(fc.constantFrom(...memberNames, 'bogus'), tie('value'), { maxKeys: 6 }),
  ),
}));

test('random arguments give a typed value or a QapiError, never another throw', () => {
  fc.assert(
    fc.property(fc.constantFrom(...commands, 'no-such-command'), value, (command, args) => {
      try {
        checkCommand(command, args);
      } catch (e) {
        assert.ok(e instanceof QapiError, `${command}: ${e}`);
        assert.ok(e.desc.length > 0);
      }
    }),
    { numRuns: 20000 },
  );
});

test('arbitrary JS values (not only JSON) are answered with QapiError too', () => {
  fc.assert(
    fc.property(fc.constantFrom(...commands), fc.anything(), (command, args) => {
      try {
        checkCommand(command, args);
      } catch (e) {
        assert.ok(e instanceof QapiError, `${command}: ${e}`);
      }
    }),
    { numRuns: 5000 },
  );
});
