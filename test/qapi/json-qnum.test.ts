// The JSON layer keeps what QEMU's parser keeps: integer vs double, and 64-bit integers.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { JsonDouble, JsonSyntaxError, parseJson, stringifyJson, toQNum } from '../../src/qapi/json.js';

test('integers, doubles and 64-bit values', () => {
  assert.equal(parseJson('1'), 1);
  assert.ok(parseJson('1.0') instanceof JsonDouble);
  assert.ok(parseJson('1e3') instanceof JsonDouble);
  assert.equal(parseJson('1.5'), 1.5);
  assert.equal(parseJson('18446744073709551615'), 18446744073709551615n);
  assert.equal(parseJson('-9223372036854775808'), -9223372036854775808n);
  assert.ok(parseJson('18446744073709551616') instanceof JsonDouble);
  assert.deepEqual(toQNum(parseJson('9223372036854775808')), { kind: 'u64', value: 9223372036854775808n });
  assert.deepEqual(toQNum(parseJson('2.0')), { kind: 'double', value: 2 });
});

test('objects, arrays, strings and QEMU single quotes', () => {
  assert.deepEqual(parseJson(`{"a": [1, "x", true, null], 'b': 'it''s'}`.replace("''", "\\'")), {
    a: [1, 'x', true, null],
    b: "it's",
  });
  assert.equal(parseJson('"\\u00e9\\n"'), 'é\n');
  assert.deepEqual(Object.keys(parseJson('{"__proto__": 1}') as object), ['__proto__']);
});

test('malformed input is a JsonSyntaxError', () => {
  for (const t of ['', '{', '{"a" 1}', '[1,]', 'tru', '"\\x"', '1 2', '{"a":1,}']) {
    assert.throws(() => parseJson(t), JsonSyntaxError, t);
  }
});

test('stringify writes bigint exactly, QEMU spacing', () => {
  assert.equal(
    stringifyJson({ a: 18446744073709551615n, b: [1, new JsonDouble(2)] }),
    '{"a": 18446744073709551615, "b": [1, 2]}',
  );
});
