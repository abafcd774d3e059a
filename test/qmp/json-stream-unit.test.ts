// Unit tests of the QMP input streamer: the value conventions of src/qapi/json.ts, independence
// from how the input is split, the limits (scaled down) and end of input.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { inspect } from 'node:util';
import { JsonDouble } from '../../src/qapi/json.js';
import { JsonStreamer, type StreamItem } from '../../src/qapi/json-stream.js';

type Limits = ConstructorParameters<typeof JsonStreamer>[1];

function run(chunks: (string | Uint8Array)[], limits?: Limits): StreamItem[] {
  const items: StreamItem[] = [];
  const s = new JsonStreamer((item) => items.push(item), limits);
  for (const c of chunks) s.feed(typeof c === 'string' ? Buffer.from(c, 'utf8') : c);
  return items;
}

/** The one value the text parses to (a trailing newline ends a top-level number). */
function value(text: string): unknown {
  const items = run([`${text}\n`]);
  assert.equal(items.length, 1, `${text}: ${inspect(items)}`);
  const [item] = items;
  assert.ok(item && 'value' in item, `${text}: ${inspect(items)}`);
  return item.value;
}

const errors = (items: StreamItem[]) => items.map((i) => ('error' in i ? i.error : 'value'));

describe('value conventions', () => {
  test('integers: number when safe, bigint within int64/uint64, double beyond', () => {
    assert.equal(value('0'), 0);
    assert.equal(value('-42'), -42);
    assert.ok(Object.is(value('-0'), 0), '-0 is the integer 0');
    assert.equal(value('9007199254740991'), 9007199254740991);
    assert.equal(value('9007199254740992'), 9007199254740992n);
    assert.equal(value('-9007199254740993'), -9007199254740993n);
    assert.equal(value('9223372036854775807'), 9223372036854775807n);
    assert.equal(value('9223372036854775808'), 9223372036854775808n); // QNUM_U64
    assert.equal(value('18446744073709551615'), 18446744073709551615n);
    assert.equal(value('-9223372036854775808'), -9223372036854775808n);
    assert.deepEqual(value('18446744073709551616'), new JsonDouble(2 ** 64));
    assert.deepEqual(value('-9223372036854775809'), new JsonDouble(-(2 ** 63)));
    assert.deepEqual(value('123456789012345678901234567890'), new JsonDouble(1.2345678901234568e29));
  });

  test('doubles: plain numbers, JsonDouble when integral', () => {
    assert.equal(value('1.5'), 1.5);
    assert.equal(value('-2.5e-3'), -0.0025);
    assert.equal(value('0.1'), 0.1);
    for (const [text, v] of [
      ['1.0', 1],
      ['1e3', 1000],
      ['1E5', 100000],
      ['1e+2', 100],
      ['2.50e1', 25],
    ] as const) {
      const got = value(text);
      assert.ok(got instanceof JsonDouble, text);
      assert.equal(got.value, v, text);
    }
    const negZero = value('-0.0');
    assert.ok(negZero instanceof JsonDouble && Object.is(negZero.value, -0));
    assert.equal(value('1e999'), Number.POSITIVE_INFINITY);
    assert.equal(value('-1e999'), Number.NEGATIVE_INFINITY);
    assert.deepEqual(value('1e-400'), new JsonDouble(0));
  });

  test('objects are plain, and __proto__ is an ordinary key', () => {
    const v = value('{"__proto__": {"polluted": 1}, "constructor": 2, "a": [true, false, null]}') as Record<
      string,
      unknown
    >;
    assert.equal(Object.getPrototypeOf(v), Object.prototype);
    assert.deepEqual(Object.keys(v), ['__proto__', 'constructor', 'a']);
    assert.ok(Object.hasOwn(v, '__proto__'));
    assert.deepEqual(Object.getOwnPropertyDescriptor(v, '__proto__')?.value, { polluted: 1 });
    assert.equal((v as { polluted?: unknown }).polluted, undefined);
    assert.equal(({} as { polluted?: unknown }).polluted, undefined);
    assert.deepEqual(v.a, [true, false, null]);
    assert.deepEqual(value('{}'), {});
    assert.deepEqual(value('[]'), []);
    assert.deepEqual(value('{"":{"":[]}}'), { '': { '': [] } });
  });

  test('strings: escapes, single quotes, UTF-8 and modified-UTF-8 NUL', () => {
    assert.equal(value(String.raw`"\"\\\/\b\f\n\r\t\'"`), '"\\/\b\f\n\r\t\'');
    assert.equal(value(String.raw`'it\'s "x"'`), 'it\'s "x"');
    assert.equal(value(String.raw`"\u0041\u00E9\u20ac\ud83d\ude00\u0000"`), 'Aé€😀\0');
    assert.equal(value('"é€😀\u007f"'), 'é€😀\u007f');
    const items = run([Buffer.from('"a\xc0\x80b"', 'latin1')]);
    assert.deepEqual(items, [{ value: 'a\0b' }]);
  });

  test('string errors', () => {
    const bad = (bytes: string) => errors(run([Buffer.from(bytes, 'latin1')]));
    assert.deepEqual(bad(String.raw`"\x"`), ['JSON parse error, invalid escape sequence in string']);
    assert.deepEqual(bad(String.raw`"\udc00"`), [
      'JSON parse error, \\udc00 is not a valid Unicode character',
    ]);
    assert.deepEqual(bad(String.raw`"\ud800\u0041"`), [
      'JSON parse error, \\ud800 is not a valid Unicode character',
    ]);
    assert.deepEqual(bad(String.raw`"\udbff\udfff"`), [
      'JSON parse error, \\udbff\\udfff is not a valid Unicode character',
    ]);
    assert.deepEqual(bad(String.raw`"\u12"`), ['JSON parse error, \\u12" is not a valid Unicode character']);
    assert.deepEqual(bad('"\xef\xbf\xbf"'), ['JSON parse error, invalid UTF-8 sequence in string']);
    assert.deepEqual(bad('"\xe0\x80\x80"'), ['JSON parse error, invalid UTF-8 sequence in string']);
    assert.deepEqual(bad('"ab\xff'), ["JSON parse error, stray '\"ab\ufffd'"]);
    assert.deepEqual(bad('"a\x00'), ["JSON parse error, stray '\"a'"]);
  });

  test('a long keyword is cut to QEMU message buffer size', () => {
    const [desc] = errors(run([`${'q'.repeat(3000)} `]));
    assert.equal(desc, `JSON parse error, invalid keyword '${'q'.repeat(1023 - 17)}`);
  });
});

describe('splitting', () => {
  const sample = Buffer.concat([
    Buffer.from(
      '{"execute": "qom-get", "arguments": {"path": "/machine", \'property\': "t\\u00e9st\\ud83d\\ude00é€😀"},' +
        ' "id": [12345678901234567890, -0.5e-3, 1.0, true, null, {"__proto__": []}]}',
      'utf8',
    ),
    Buffer.from('\r\n 42 [1,] foo 01\n"\\x" "a\x01b"\n-}\n{"a":1,"a":2} \xff\n[[[]]]\t"tail"', 'latin1'),
  ]);
  const whole = run([sample]);

  test('the sample exercises values and errors', () => {
    assert.equal(whole.filter((i) => 'value' in i).length, 4);
    assert.equal(whole.filter((i) => 'error' in i).length, 8);
  });

  test('a split at any byte gives identical items', () => {
    for (let i = 0; i <= sample.length; i++) {
      assert.deepEqual(run([sample.subarray(0, i), sample.subarray(i)]), whole, `split at ${i}`);
    }
  });

  test('one byte at a time gives identical items', () => {
    assert.deepEqual(run([...sample].map((b) => Uint8Array.of(b))), whole);
  });

  test('stopping after every item and feeding the rest again gives identical items', () => {
    for (let split = 0; split <= sample.length; split++) {
      const items: StreamItem[] = [];
      const s = new JsonStreamer((item) => {
        items.push(item);
        return false;
      });
      for (const part of [sample.subarray(0, split), sample.subarray(split)]) {
        let rest = part;
        let idle = 0;
        while (rest.length) {
          const before = items.length;
          const taken = s.feed(rest);
          assert.ok(items.length - before <= 1, `one item per feed (split at ${split})`);
          assert.ok(taken === rest.length || items.length > before, 'stops only after an item');
          // A byte that ends the token before it is left for the next feed, once.
          idle = taken === 0 ? idle + 1 : 0;
          assert.ok(idle < 2, `no progress at split ${split}`);
          rest = rest.subarray(taken);
        }
      }
      assert.deepEqual(items, whole, `split at ${split}`);
    }
  });

  test('the streamer does not keep references to the caller buffers', () => {
    const items: StreamItem[] = [];
    const s = new JsonStreamer((item) => items.push(item));
    const buf = Buffer.from('["abc", 12');
    s.feed(buf);
    buf.fill(0x20);
    s.feed(Buffer.from('3]'));
    assert.deepEqual(items, [{ value: ['abc', 123] }]);
  });
});

describe('limits (scaled down, same rules as QEMU)', () => {
  test('token size: the message total plus one must stay within the limit', () => {
    const limits = { maxTokenSize: 10 };
    assert.deepEqual(run(['"abcdefg"'], limits), [{ value: 'abcdefg' }]); // 9 bytes
    assert.deepEqual(errors(run(['"abcdefgh"'], limits)), ['JSON token size limit exceeded']); // 10 bytes
    // [ 1 , 2 , 3 , 4 , 5 ]: the tenth token brings the total to 10, and 10 + 1 is too much.
    assert.deepEqual(errors(run(['[1,2,3,4,5]'], limits)), [
      'JSON token size limit exceeded',
      'JSON parse error, expecting value',
    ]);
    assert.deepEqual(run(['[1,2,3,4]'], limits), [{ value: [1, 2, 3, 4] }]);
  });

  test('an oversized token is cut off and the rest lexed afresh', () => {
    const items = run(['"abcdefghijk"\n'], { maxTokenSize: 10 });
    assert.deepEqual(errors(items), [
      'JSON token size limit exceeded',
      "JSON parse error, invalid keyword 'k'",
      "JSON parse error, stray '\"\n'",
    ]);
    // Same when the token arrives in pieces.
    assert.deepEqual(run(['"abc', 'defg', 'hijk"', '\n'], { maxTokenSize: 10 }), items);
  });

  test('token count', () => {
    assert.deepEqual(run(['[1,2]'], { maxTokenCount: 5 }), [{ value: [1, 2] }]);
    assert.deepEqual(errors(run(['[1,2]'], { maxTokenCount: 4 })), ['JSON token count limit exceeded']);
    assert.deepEqual(errors(run(['[1,2,3]'], { maxTokenCount: 4 })), [
      'JSON token count limit exceeded',
      'value',
      'JSON parse error, expecting value',
    ]);
  });

  test('nesting counts brackets and braces together', () => {
    assert.deepEqual(run(['[{"a":[]}]'], { maxNesting: 3 }), [{ value: [{ a: [] }] }]);
    assert.deepEqual(errors(run(['[{"a":[[]]}]'], { maxNesting: 3 })), [
      'JSON nesting depth limit exceeded',
      'JSON parse error, expecting value',
      'JSON parse error, expecting value',
      'JSON parse error, expecting value',
      'JSON parse error, expecting value',
    ]);
  });

  test('default limits: 1024 levels pass, 1025 do not', () => {
    const deep = (n: number) => `${'['.repeat(n)}${']'.repeat(n)}`;
    assert.deepEqual(errors(run([deep(1024)])), ['value']);
    const over = errors(run([deep(1025)]));
    assert.equal(over[0], 'JSON nesting depth limit exceeded');
    assert.equal(over.length, 1026);
  });

  test('a raised nesting limit does not overflow the stack', () => {
    const n = 200_000;
    const items = run([`${'['.repeat(n)}${']'.repeat(n)}`], { maxNesting: n, maxTokenCount: 2 * n });
    assert.equal(items.length, 1);
    let v = (items[0] as { value: unknown }).value;
    let depth = 0;
    while (Array.isArray(v) && v.length) {
      v = v[0];
      depth++;
    }
    assert.equal(depth, n - 1);
  });
});

describe('end of input and throughput', () => {
  test('end() drops a partial message without a reply and starts afresh', () => {
    const items: StreamItem[] = [];
    const s = new JsonStreamer((item) => items.push(item));
    s.feed(Buffer.from('{"execute": "x", "id": "unterminated'));
    s.end();
    assert.deepEqual(items, []);
    s.feed(Buffer.from('12'));
    s.end(); // a top-level number still waiting for its terminator is dropped too
    s.feed(Buffer.from('[7]'));
    assert.deepEqual(items, [{ value: [7] }]);
  });

  test('a 32 MiB string in 64 KiB chunks is linear', () => {
    const body = Buffer.alloc(32 * 1024 * 1024, 'x');
    const items: StreamItem[] = [];
    const s = new JsonStreamer((item) => items.push(item));
    const t0 = performance.now();
    s.feed(Buffer.from('{"id": "'));
    for (let i = 0; i < body.length; i += 65536) s.feed(body.subarray(i, i + 65536));
    s.feed(Buffer.from('"}'));
    const ms = performance.now() - t0;
    assert.equal(items.length, 1);
    assert.equal(((items[0] as { value: { id: string } }).value.id as string).length, body.length);
    assert.ok(ms < 5000, `${ms} ms`);
  });
});
