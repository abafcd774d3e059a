// schema.json is QEMU 10.0's: for every command and event qmigrate serves, the arguments,
// return type and flags resolved from our schema equal those a real QEMU 10.0 reports in
// query-qmp-schema (whose type names are masked, so the comparison is structural).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { introspect } from '../../src/qapi/introspect.js';
import { INTEGER_TYPES, type Schema, schema, type TypeRef } from '../../src/qapi/schema.js';
import { requireQemu, startQemu } from '../helpers/qemu.js';

type Info = Record<string, unknown> & { name: string; 'meta-type': string };

/** A name-free description of a type, as introspection can express it. */
function fromIntrospection(byName: Map<string, Info>, name: string, seen: string[] = []): unknown {
  const t = byName.get(name);
  if (!t) throw new Error(`introspection lacks ${name}`);
  if (seen.includes(name)) return { recursive: true };
  const next = [...seen, name];
  switch (t['meta-type']) {
    case 'builtin':
      return name;
    case 'enum':
      return {
        enum: (t.members as { name: string; features?: string[] }[]).map((m) => [m.name, m.features ?? []]),
      };
    case 'array':
      return { array: fromIntrospection(byName, t['element-type'] as string, next) };
    case 'alternate':
      return {
        alternate: (t.members as { type: string }[])
          .map((m) => JSON.stringify(fromIntrospection(byName, m.type, next)))
          .sort(),
      };
    default: {
      const members = (
        t.members as { name: string; type: string; default?: null; features?: string[] }[]
      ).map((m) => [m.name, 'default' in m, m.features ?? [], fromIntrospection(byName, m.type, next)]);
      const variants = (t.variants as { case: string; type: string }[] | undefined)?.map((v) => [
        v.case,
        fromIntrospection(byName, v.type, next),
      ]);
      return { members, tag: t.tag ?? null, variants: variants ?? null };
    }
  }
}

function fromSchema(s: Schema, ref: TypeRef | undefined, seen: string[] = []): unknown {
  if (ref === undefined) return { members: [], tag: null, variants: null };
  if (typeof ref !== 'string') return { array: fromSchema(s, ref[0], seen) };
  if (s.isBuiltin(ref)) return (INTEGER_TYPES as readonly string[]).includes(ref) ? 'int' : ref;
  if (seen.includes(ref)) return { recursive: true };
  const next = [...seen, ref];
  const t = s.type(ref);
  if (t.meta === 'enum') return { enum: t.values.map((v) => [v.name, v.features]) };
  if (t.meta === 'alternate')
    return { alternate: t.variants.map((v) => JSON.stringify(fromSchema(s, v.type, next))).sort() };
  const members = s.allMembers(ref).map((m) => [m.name, m.optional, m.features, fromSchema(s, m.type, next)]);
  const variants = t.variants ? [...t.variants].map(([c, branch]) => [c, fromSchema(s, branch, next)]) : null;
  return { members, tag: t.discriminator ?? null, variants };
}

type Desc = {
  members: [string, boolean, string[], { enum?: [string, string[]][] }][];
  variants: [string, unknown][];
};

/**
 * object-add takes a subset of QEMU 10.0's object types (the ones qmigrate implements): QEMU's
 * description narrowed to those types, so that every type and property we have is QEMU's.
 */
function narrowed(command: string, ours: unknown, theirs: unknown): unknown {
  if (command !== 'object-add' || !(ours as Desc).variants) return theirs;
  const o = ours as Desc;
  const t = structuredClone(theirs) as Desc;
  const cases = new Set(o.variants.map(([c]) => c));
  const tag = t.members.find(([name]) => name === 'qom-type')![3];
  tag.enum = tag.enum!.filter(([v]) => cases.has(v));
  t.variants = t.variants.filter(([c]) => cases.has(c));
  return t;
}

test('every served command and event matches QEMU 10.0 introspection', async (t) => {
  const bin = requireQemu(t, '10.0');
  if (!bin) return;
  const q = await startQemu(bin);
  t.after(() => q.stop());
  const reply = (await q.qmp.execute('query-qmp-schema')) as { return: Info[] };
  const byName = new Map(reply.return.map((e) => [e.name, e]));
  for (const c of schema.commands.values()) {
    const theirs = byName.get(c.name);
    assert.ok(theirs && theirs['meta-type'] === 'command', `QEMU 10.0 has no command ${c.name}`);
    const ours = fromSchema(schema, c.argType);
    assert.deepEqual(
      ours,
      narrowed(c.name, ours, fromIntrospection(byName, theirs['arg-type'] as string)),
      `${c.name} arguments`,
    );
    assert.deepEqual(
      fromSchema(schema, c.returns),
      fromIntrospection(byName, theirs['ret-type'] as string),
      `${c.name} returns`,
    );
    assert.equal(c.allowOob, theirs['allow-oob'] === true, `${c.name} allow-oob`);
    assert.deepEqual(c.features, theirs.features ?? [], `${c.name} features`);
  }
  for (const e of schema.events.values()) {
    const theirs = byName.get(e.name);
    assert.ok(theirs && theirs['meta-type'] === 'event', `QEMU 10.0 has no event ${e.name}`);
    assert.deepEqual(
      fromSchema(schema, e.argType),
      fromIntrospection(byName, theirs['arg-type'] as string),
      e.name,
    );
  }
});

test("our query-qmp-schema output resolves to the same structures as QEMU 10.0's", async (t) => {
  const bin = requireQemu(t, '10.0');
  if (!bin) return;
  const q = await startQemu(bin);
  t.after(() => q.stop());
  const theirs = new Map(
    ((await q.qmp.execute('query-qmp-schema')) as { return: Info[] }).return.map((e) => [e.name, e]),
  );
  const ours = new Map(introspect(schema).map((e) => [e.name, e as Info]));
  for (const name of [...schema.commands.keys(), ...schema.events.keys()]) {
    const a = ours.get(name)!;
    const b = theirs.get(name)!;
    for (const key of ['arg-type', 'ret-type'] as const) {
      if (a[key] === undefined) continue;
      const mine = fromIntrospection(ours, a[key] as string);
      assert.deepEqual(
        mine,
        narrowed(name, mine, fromIntrospection(theirs, b[key] as string)),
        `${name} ${key}`,
      );
    }
    assert.deepEqual(Object.keys(a).sort(), Object.keys(b).sort(), `${name}: same SchemaInfo members`);
  }
});
