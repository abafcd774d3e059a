/**
 * Fuzz targets: a QMP session of an in-process VM (src/qmp/server.ts and dispatch.ts, QEMU's
 * monitor/qmp.c and qapi/qmp-dispatch.c) fed requests for every command of the schema, with
 * arguments built from the schema, ids, exec-oob and qmp_capabilities anywhere; then the same
 * bytes mutated. Migration, incoming and pmemsave are stubbed after the argument check.
 */
import assert from 'node:assert/strict';
import { Duplex } from 'node:stream';
import fc from 'fast-check';
import { JsonDouble, stringifyJson } from '../../../src/qapi/json.js';
import { type NamedType, schema, type TypeRef } from '../../../src/qapi/schema.js';
import { Vm } from '../../../src/vm/vm.js';
import type { FuzzTarget } from './target.js';

const COMMANDS = [...schema.commands.keys()];
const CLASSES = new Set([
  'GenericError',
  'CommandNotFound',
  'DeviceNotActive',
  'DeviceNotFound',
  'KVMMissingCap',
]);
const REPLY_WAIT_MS = 5000;

type Gen = fc.GeneratorValue;

// fc.gen() memoises by its arguments, comparing them one by one: long argument lists (the
// schema's command names) made it quadratic. So each arbitrary is built once, and drawn through
// one thunk of its own.
const thunks = new Map<unknown, () => fc.Arbitrary<unknown>>();
function draw<T>(g: Gen, key: unknown, make: () => fc.Arbitrary<T>): T {
  let t = thunks.get(key);
  if (!t) {
    const a = make();
    t = () => a;
    thunks.set(key, t);
  }
  return g(t) as T;
}
const nat = (g: Gen, max: number) => draw(g, `nat${max}`, () => fc.nat(max));

/** Any JSON value, small. */
const junk = fc.oneof(
  fc.constant(null),
  fc.boolean(),
  fc.integer(),
  fc.bigInt({ min: -(1n << 64n), max: 1n << 65n }),
  fc
    .double({ noNaN: true, noDefaultInfinity: true })
    .map((d) => (Number.isInteger(d) ? new JsonDouble(d) : d)),
  fc.string({ maxLength: 8 }),
  fc.constant([]),
  fc.constant({}),
);

/** A value of a schema type, sometimes something else, as a client might send it. */
function schemaValue(g: Gen, type: TypeRef, depth: number): unknown {
  if (depth > 5 || nat(g, 19) === 0) return draw(g, junk, () => junk);
  if (typeof type !== 'string') {
    const n = nat(g, 3);
    return Array.from({ length: n }, () => schemaValue(g, type[0], depth + 1));
  }
  switch (type) {
    case 'str':
      return draw(g, 'str', () =>
        fc.oneof(fc.string({ maxLength: 12 }), fc.constantFrom('', 'on', 'off', '1', 'tcp:127.0.0.1:0')),
      );
    case 'bool':
      return draw(g, 'bool', () => fc.boolean());
    case 'number':
      return draw(g, 'double', () => fc.double({ noNaN: true, noDefaultInfinity: true }));
    case 'null':
      return null;
    case 'any':
      return draw(g, junk, () => junk);
    case 'int8':
    case 'uint8':
    case 'int16':
    case 'uint16':
    case 'int32':
    case 'uint32':
    case 'int':
    case 'int64':
    case 'uint64':
    case 'size':
      return draw(g, 'int', () =>
        fc.oneof(fc.integer({ min: -2, max: 100 }), fc.bigInt({ min: -(1n << 63n), max: (1n << 64n) - 1n })),
      );
  }
  const t: NamedType | undefined = schema.types.get(type);
  if (!t) return draw(g, junk, () => junk);
  if (t.meta === 'enum') return draw(g, t, () => fc.constantFrom(...t.values.map((v) => v.name), 'bogus'));
  if (t.meta === 'alternate') {
    const v = draw(g, t, () => fc.constantFrom(...t.variants));
    return schemaValue(g, v.type, depth + 1);
  }
  const out: Record<string, unknown> = {};
  for (const m of t.members) {
    if (m.optional && draw(g, 'bool', () => fc.boolean())) continue;
    if (!m.optional && nat(g, 30) === 0) continue;
    out[m.name] = schemaValue(g, m.type, depth + 1);
  }
  if (t.discriminator && t.variants?.size) {
    const [tag, branch] = draw(g, t, () => fc.constantFrom(...t.variants!.entries()));
    out[t.discriminator] = tag;
    Object.assign(out, schemaValue(g, branch, depth + 1));
  }
  if (nat(g, 9) === 0)
    out[draw(g, 'odd', () => fc.constantFrom('bogus', '__proto__', 'id'))] = draw(g, junk, () => junk);
  return out;
}

/** One request: its text and what its reply must carry. */
interface Request {
  text: string;
  /** The id echoed back (stringified), or undefined when the request has none. */
  id: string | undefined;
  inBand: boolean;
}

function request(g: Gen, i: number): Request {
  const shape = nat(g, 9);
  if (shape === 0) {
    // Not a request object at all, or one with odd members.
    const v = draw(g, 'notRequest', () =>
      fc.oneof(junk, fc.dictionary(fc.constantFrom('execute', 'exec-oob', 'arguments', 'x'), junk)),
    );
    return { text: stringifyJson(v), id: undefined, inBand: true };
  }
  const command =
    shape === 1
      ? 'qmp_capabilities'
      : shape === 2
        ? draw(g, 'name', () => fc.string({ maxLength: 10 }))
        : draw(g, COMMANDS, () => fc.constantFrom(...COMMANDS));
  const def = schema.commands.get(command);
  const req: Record<string, unknown> = {};
  const oob = nat(g, 5) === 0;
  req[oob ? 'exec-oob' : 'execute'] = command;
  if (command === 'qmp_capabilities' && draw(g, 'bool', () => fc.boolean()))
    req.arguments = { enable: draw(g, 'caps', () => fc.constantFrom(['oob'], [], ['x'])) };
  else if (def?.argType && nat(g, 7) !== 0) req.arguments = schemaValue(g, def.argType, 0);
  else if (nat(g, 9) === 0) req.arguments = draw(g, junk, () => junk);
  const idKind = nat(g, 4);
  if (idKind > 0) req.id = idKind === 1 ? `s${i}` : idKind === 2 ? [i, { n: i }] : i;
  return {
    text: stringifyJson(req),
    id: req.id === undefined ? undefined : stringifyJson(req.id),
    inBand: !oob,
  };
}

const requests = fc
  .array(fc.gen(), { minLength: 1, maxLength: 12 })
  .map((gs) => gs.map((g, i) => request(g, i)));

/** An in-process VM whose commands that reach out of the process only check their arguments. */
function lightVm(): Vm {
  const vm = new Vm({ ram: [{ idstr: 'pc.ram', host: Buffer.alloc(64 << 10) }] });
  for (const c of ['migrate', 'migrate-incoming', 'pmemsave'] as const) vm.dispatcher.register(c, () => ({}));
  return vm;
}

/** A session on an in-memory stream: what the client reads, line by line. */
function session(vm: Vm) {
  let out = '';
  const d = new Duplex({
    read() {},
    write(chunk: Buffer, _enc, cb) {
      out += chunk.toString('latin1');
      cb();
    },
  });
  const qmp = vm.server.attach(d);
  // Parsed as they come, once each: a reply can be large (query-qmp-schema).
  const parsed: Record<string, unknown>[] = [];
  let pos = 0;
  const replies = () => {
    for (let nl = out.indexOf('\r\n', pos); nl >= 0; nl = out.indexOf('\r\n', pos)) {
      const m = JSON.parse(out.slice(pos, nl)) as Record<string, unknown>;
      if (!('event' in m) && !('QMP' in m)) parsed.push(m);
      pos = nl + 2;
    }
    return parsed;
  };
  return {
    send: (b: Buffer | string) => d.push(typeof b === 'string' ? Buffer.from(b, 'latin1') : b),
    replies,
    /** Waits until `done(replies)` holds, for REPLY_WAIT_MS at most. */
    async until(done: (r: Record<string, unknown>[]) => boolean, what: string) {
      const end = Date.now() + REPLY_WAIT_MS;
      while (!done(replies())) {
        if (Date.now() > end)
          throw new Error(`no ${what} within ${REPLY_WAIT_MS} ms; got ${out.slice(-2000)}`);
        await new Promise((r) => setTimeout(r, 2));
      }
    },
    /** Hangs up and waits until the session has seen it. */
    close: async () => {
      d.destroy();
      await qmp.closed;
    },
  };
}

function checkShape(r: Record<string, unknown>): void {
  if ('error' in r) {
    const e = r.error as { class: string; desc: string };
    assert.ok(CLASSES.has(e.class), `error class ${e.class}`);
    assert.equal(typeof e.desc, 'string');
    assert.ok(e.desc.length > 0 && !e.desc.startsWith('internal error'), `desc: ${e.desc}`);
  } else assert.ok('return' in r, JSON.stringify(r));
}

const FINAL = '{"execute":"qmp_capabilities","id":"caps"}\n{"execute":"query-status","id":"final"}\n';

/** The session still answers: query-status, negotiated first if it was not yet. */
async function stillAnswers(s: ReturnType<typeof session>): Promise<void> {
  s.send(FINAL);
  await s.until((r) => r.some((m) => m.id === 'final'), 'reply to the final query-status');
  const final = s.replies().find((m) => m.id === 'final')!;
  assert.equal(typeof (final.return as { status?: unknown })?.status, 'string', JSON.stringify(final));
}

export const targets: FuzzTarget[] = [
  {
    name: 'qmp/dispatch',
    ciRuns: 300,
    property: () =>
      fc.asyncProperty(requests, async (reqs) => {
        const vm = lightVm();
        const s = session(vm);
        try {
          s.send(reqs.map((r) => `${r.text}\n`).join(''));
          await s.until((r) => r.length >= reqs.length, `${reqs.length} replies`);
          const got = s.replies();
          assert.equal(got.length, reqs.length, 'one reply per request');
          got.forEach(checkShape);
          const ids = (list: (string | undefined)[]) => list.filter((x) => x !== undefined).sort();
          assert.deepEqual(
            ids(got.map((r) => (r.id === undefined ? undefined : stringifyJson(r.id)))),
            ids(reqs.map((r) => r.id)),
            'each id once',
          );
          // In-band replies keep the order of their requests.
          const order = reqs.filter((r) => r.inBand && r.id !== undefined).map((r) => r.id);
          const seen = got
            .map((r) => (r.id === undefined ? undefined : stringifyJson(r.id)))
            .filter((id) => order.includes(id));
          assert.deepEqual(seen, order, 'in-band order');
          await stillAnswers(s);
        } finally {
          await s.close();
          await vm.close();
        }
      }),
  },
  {
    name: 'qmp/dispatch-mutated',
    ciRuns: 300,
    property: () =>
      fc.asyncProperty(
        requests,
        fc.array(fc.tuple(fc.nat(), fc.nat(3), fc.uint8Array({ maxLength: 3 })), { maxLength: 6 }),
        async (reqs, edits) => {
          let b = Buffer.from(reqs.map((r) => `${r.text}\n`).join(''), 'latin1');
          for (const [at, del, ins] of edits) {
            const i = at % (b.length + 1);
            b = Buffer.concat([b.subarray(0, i), ins, b.subarray(Math.min(b.length, i + del))]);
          }
          const vm = lightVm();
          const s = session(vm);
          try {
            s.send(b);
            // 0xFF resets QEMU's parser whatever came before (a lexer error ends any message).
            s.send('\xff\n');
            await stillAnswers(s);
            s.replies().forEach(checkShape);
          } finally {
            await s.close();
            await vm.close();
          }
        },
      ),
  },
];
