/**
 * `query-qmp-schema`: the schema in QEMU's introspection form (qapi/introspect.json, built as
 * scripts/qapi/introspect.py does): commands and events by name, every type they reach under
 * a masked numeric name, all integer widths shown as `int`, optional members with
 * `default: null`. A client finds `channels` on `migrate` here exactly as on QEMU 10.0.
 */
import { INTEGER_TYPES, type Schema, type TypeRef } from './schema.js';

const JSON_TYPE: Record<string, string> = {
  str: 'string',
  any: 'value',
  bool: 'boolean',
  int: 'int',
  null: 'null',
  number: 'number',
};

export type SchemaInfo = Record<string, unknown> & { name: string; 'meta-type': string };

const withFeatures = <T extends object>(o: T, features: readonly string[]) =>
  features.length ? { ...o, features: [...features] } : o;

export function introspect(schema: Schema): SchemaInfo[] {
  const masked = new Map<string, string>();
  const queue: string[] = [];
  const EMPTY = '';
  const name = (key: string): string => {
    let n = masked.get(key);
    if (n === undefined) {
      n = String(masked.size);
      masked.set(key, n);
      queue.push(key);
    }
    return n;
  };
  const use = (ref: TypeRef | undefined): string => {
    if (ref === undefined) return name(EMPTY);
    if (typeof ref !== 'string') {
      const elem = use(ref[0]);
      const arr = `[${elem}]`;
      if (!masked.has(arr)) {
        masked.set(arr, arr);
        queue.push(arr);
      }
      return arr;
    }
    if (schema.isBuiltin(ref)) {
      const b = (INTEGER_TYPES as readonly string[]).includes(ref) ? 'int' : ref;
      if (!masked.has(b)) {
        masked.set(b, b);
        queue.push(b);
      }
      return b;
    }
    return name(ref);
  };

  const out: SchemaInfo[] = [];
  for (const c of schema.commands.values()) {
    const info: SchemaInfo = {
      name: c.name,
      'meta-type': 'command',
      'arg-type': use(c.argType),
      'ret-type': use(c.returns),
    };
    if (c.allowOob) info['allow-oob'] = true;
    out.push(withFeatures(info, c.features));
  }
  for (const e of schema.events.values()) {
    out.push(withFeatures({ name: e.name, 'meta-type': 'event', 'arg-type': use(e.argType) }, e.features));
  }
  for (let i = 0; i < queue.length; i++) {
    const key = queue[i]!;
    const id = masked.get(key)!;
    if (key === EMPTY) {
      out.push({ name: id, 'meta-type': 'object', members: [] });
    } else if (key.startsWith('[')) {
      out.push({ name: id, 'meta-type': 'array', 'element-type': key.slice(1, -1) });
    } else if (JSON_TYPE[key]) {
      out.push({ name: key, 'meta-type': 'builtin', 'json-type': JSON_TYPE[key] });
    } else {
      const t = schema.type(key);
      if (t.meta === 'enum') {
        out.push(
          withFeatures(
            {
              name: id,
              'meta-type': 'enum',
              members: t.values.map((v) => withFeatures({ name: v.name }, v.features)),
              values: t.values.map((v) => v.name),
            },
            t.features,
          ),
        );
      } else if (t.meta === 'alternate') {
        out.push({
          name: id,
          'meta-type': 'alternate',
          members: t.variants.map((v) => ({ type: use(v.type) })),
        });
      } else {
        const members = schema
          .allMembers(key)
          .map((m) =>
            withFeatures(
              { name: m.name, ...(m.optional ? { default: null } : {}), type: use(m.type) },
              m.features,
            ),
          );
        const info: SchemaInfo = { name: id, 'meta-type': 'object', members };
        if (t.discriminator && t.variants) {
          info.tag = t.discriminator;
          info.variants = [...t.variants].map(([c, branch]) => ({ case: c, type: use(branch) }));
        }
        out.push(withFeatures(info, t.features));
      }
    }
  }
  return out;
}
