// The line syntax and completion of `qmigrate qmp` (src/qmp/shell-syntax.ts,
// src/qmp/shell-complete.ts), without a monitor: what a line becomes, what it is refused
// for, and what Tab offers from qmigrate's own introspected schema.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { introspect } from '../../src/qapi/introspect.js';
import { schema as qmigrateSchema } from '../../src/qapi/schema.js';
import { completeHmp, hmpCommandNames, QmpCompleter } from '../../src/qmp/shell-complete.js';
import { parseShellLine } from '../../src/qmp/shell-syntax.js';

test('a line becomes a request: dotted keys nest, index keys make lists, JSON values parse', () => {
  assert.deepEqual(parseShellLine('  query-status  '), {
    kind: 'request',
    oob: false,
    command: 'query-status',
  });
  assert.deepEqual(parseShellLine('# note'), { kind: 'empty' });
  assert.deepEqual(
    parseShellLine(`x a.b.c=1 a.d='q r' l.0.k=v l.1.k=w j={"s": [1, 2]} n=-1.5 u=unix:/x t=true z=null`),
    {
      kind: 'request',
      oob: false,
      command: 'x',
      arguments: {
        a: { b: { c: 1 }, d: 'q r' },
        l: [{ k: 'v' }, { k: 'w' }],
        j: { s: [1, 2] },
        n: -1.5,
        u: 'unix:/x',
        t: true,
        z: null,
      },
    },
  );
  // A JSON value's own keys are left alone, even all-digit ones.
  assert.deepEqual(parseShellLine('x m={"0": 1}'), {
    kind: 'request',
    oob: false,
    command: 'x',
    arguments: { m: { '0': 1 } },
  });
  assert.deepEqual(parseShellLine('{"exec-oob": "migrate-pause", "id": 3}'), {
    kind: 'request',
    oob: true,
    command: 'migrate-pause',
    id: { value: 3 },
  });
});

test('a bad line is refused with a one-line reason', () => {
  for (const [line, why] of [
    ['x a=1 a=2', "'a' is given more than once"],
    ['x a.b=1 a=2', "'a' is used both as a value and as an object"],
    ['x a=1 a.b=2', "'a' is used both as a value and as an object"],
    ['x a..b=1', "key 'a..b' has an empty part"],
    ['x a="open', `unclosed " in 'a="open'`],
    ['x a=[1,', "unclosed bracket in 'a=[1,'"],
    ['x a={"k" 1}', "the value of 'a' is not JSON"],
    ['x l.0=a l.2=b', "list 'l' has no element 1"],
    ['k=v', "a line starts with a command name, not 'k=v'"],
    ['{"execute": "x", "foo": 1}', "a JSON request takes no member 'foo'"],
    ['{"execute": "x", "arguments": []}', "'arguments' of a JSON request must be an object"],
    ['{"execute": "x"', 'not a JSON request'],
  ] as const) {
    assert.throws(
      () => parseShellLine(line),
      (e: Error) => e.message.startsWith(why) && !e.message.includes('\n'),
      line,
    );
  }
});

test('completion from the schema: commands, nested members, list elements, union variants, enums', () => {
  const schema = introspect(qmigrateSchema);
  const commands = schema.filter((e) => e['meta-type'] === 'command').map((e) => e.name);
  const c = new QmpCompleter(commands, schema);
  assert.deepEqual(c.complete('query-migrate-p'), [['query-migrate-parameters'], 'query-migrate-p']);
  assert.deepEqual(c.complete('migrate ch'), [['channels.'], 'ch']);
  assert.deepEqual(c.complete('migrate channels.'), [['channels.0.'], 'channels.']);
  assert.deepEqual(c.complete('migrate channels.0.'), [
    ['channels.0.channel-type=', 'channels.0.addr.'],
    'channels.0.',
  ]);
  // addr is a union on transport: the members of its socket variant (SocketAddress) are offered.
  assert.ok(c.complete('migrate channels.0.addr.').at(0)?.includes('channels.0.addr.path='));
  assert.deepEqual(c.complete('migrate channels.0.channel-type=m'), [
    ['channels.0.channel-type=main'],
    'channels.0.channel-type=m',
  ]);
  assert.deepEqual(c.complete('migrate detach=t'), [['detach=true'], 'detach=t']);
  assert.deepEqual(c.complete('no-such-command a'), [[], 'a']);
});

test('HMP names come from help and help info', () => {
  const names = hmpCommandNames(
    'help|? [cmd] -- show the help\r\nmigrate [-d] uri -- migrate\r\n\t\t\t continued\r\ninfo [subcommand] -- show\r\n',
    'info status  -- show the current VM status\r\ninfo migrate  -- show migration status\r\n',
  );
  assert.deepEqual(names, ['help', 'info', 'info migrate', 'info status', 'migrate']);
  assert.deepEqual(completeHmp(names, 'info m'), [['info migrate'], 'info m']);
});

test('keys named like members of every JS object (constructor, toString, __proto__) are plain keys', () => {
  const line = parseShellLine('x constructor=1 toString.a=2 __proto__.b=3 o.hasOwnProperty=4');
  assert.equal(line.kind, 'request');
  const args = (line as { arguments: Record<string, unknown> }).arguments;
  assert.deepEqual(Object.keys(args), ['constructor', 'toString', '__proto__', 'o']);
  assert.equal(args.constructor, 1);
  assert.deepEqual({ ...(args.toString as object) }, { a: 2 });
  assert.deepEqual(Object.getOwnPropertyDescriptor(args, '__proto__')?.value, { b: 3 });
  assert.equal(Object.getPrototypeOf(args), Object.prototype, 'no prototype set through __proto__');
  assert.equal((args.o as Record<string, unknown>).hasOwnProperty, 4);
  assert.throws(
    () => parseShellLine('x constructor=1 constructor=2'),
    /'constructor' is given more than once/,
  );
});

test('numbers JSON cannot carry and messages over QEMU json-streamer limits are refused before sending', () => {
  // 1e999 is Infinity: written as `inf`, which QEMU answers with an id-less parse error.
  assert.throws(() => parseShellLine('x n=1e999'), /'n'.*not a finite number/);
  assert.throws(() => parseShellLine('x n=[1, -1e999]'), /'n\.1' is not a finite number/);
  assert.throws(
    () => parseShellLine('{"execute": "x", "arguments": {"a": {"b": 1e400}}}'),
    /'a\.b'.*not a finite number/,
  );
  // qobject/json-streamer.c: at most 2 Mi tokens per message. Past that QEMU 10.0 answers an
  // error for each of the remaining values, and its request queue assertion aborts it.
  const many = `[${'1,'.repeat(1_100_000)}1]`;
  assert.throws(() => parseShellLine(`x l=${many}`), /more than the 2097152 tokens QEMU reads/);
  const fits = `[${'1,'.repeat(1_000_000)}1]`;
  assert.equal(parseShellLine(`x l=${fits}`).kind, 'request');
});

test('a lone UTF-16 surrogate in a value or key, or a non-finite raw id, is a line that does not parse', () => {
  assert.throws(() => parseShellLine('x s="a\\ud800"'), /the value of 's' holds a lone UTF-16 surrogate/);
  assert.throws(
    () => parseShellLine('{"execute": "x", "arguments": {"\\udc00k": 1}}'),
    /the key '\udc00k' holds a lone UTF-16 surrogate/,
  );
  assert.throws(() => parseShellLine('{"execute": "x", "id": [1e999]}'), /'id\.0' is not a finite number/);
  assert.equal(parseShellLine('x s="\\ud83d\\ude00 é"').kind, 'request');
});

test("Tab after a union's tag offers that variant's members only, and not the keys already given", () => {
  const schema = introspect(qmigrateSchema);
  const commands = schema.filter((e) => e['meta-type'] === 'command').map((e) => e.name);
  const c = new QmpCompleter(commands, schema);
  const line = 'migrate channels.0.addr.transport=socket channels.0.addr.type=unix channels.0.addr.';
  const [got] = c.complete(line);
  assert.ok(got.includes('channels.0.addr.path='), got.join(' '));
  for (const not of ['host=', 'port=', 'args.', 'filename=', 'transport=', 'type='])
    assert.ok(!got.includes(`channels.0.addr.${not}`), `${not} offered: ${got.join(' ')}`);
  // Without the tags every variant's members are offered, as before.
  const [all] = c.complete('migrate channels.0.addr.');
  assert.ok(all.includes('channels.0.addr.host=') && all.includes('channels.0.addr.path='), all.join(' '));
  assert.deepEqual(c.complete('migrate channels.0.addr.transport=file channels.0.addr.transport=s')[0], [
    'channels.0.addr.transport=socket',
  ]);
});
