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

/**
 * The schema as `query-qmp-schema` returns it: commands, then events, then every type they
 * reach, in the order first reached, each under its masked name.
 */
export function introspect(schema: Schema): SchemaInfo[] {
  return new Introspection(schema).run();
}

/** The empty object type's key: commands without arguments or return value refer to it. */
const EMPTY = '';

/**
 * One run of the introspection (as scripts/qapi/introspect.py's visitor): names are handed
 * out as types are first used, and each used type is described once, in that order.
 */
class Introspection {
  readonly #schema: Schema;
  /** Type key -> the name it is shown under (a number, a builtin or an array's `[elem]`). */
  readonly #masked = new Map<string, string>();
  /** The types to describe, in the order they were first used. */
  readonly #queue: string[] = [];

  constructor(schema: Schema) {
    this.#schema = schema;
  }

  run(): SchemaInfo[] {
    const schema = this.#schema;
    const out: SchemaInfo[] = [];
    for (const c of schema.commands.values()) {
      const info: SchemaInfo = {
        name: c.name,
        'meta-type': 'command',
        'arg-type': this.#use(c.argType),
        'ret-type': this.#use(c.returns),
      };
      if (c.allowOob) info['allow-oob'] = true;
      out.push(withFeatures(info, c.features));
    }
    for (const e of schema.events.values()) {
      out.push(
        withFeatures({ name: e.name, 'meta-type': 'event', 'arg-type': this.#use(e.argType) }, e.features),
      );
    }
    // Describing a type may use more types: the queue grows as it is walked.
    for (let i = 0; i < this.#queue.length; i++) {
      const key = this.#queue[i]!;
      out.push(this.#describe(key, this.#masked.get(key)!));
    }
    return out;
  }

  /** The masked name of a named type, numbered in order of first use. */
  #name(key: string): string {
    let n = this.#masked.get(key);
    if (n === undefined) {
      n = String(this.#masked.size);
      this.#masked.set(key, n);
      this.#queue.push(key);
    }
    return n;
  }

  /** A name that is shown as it is (a builtin, an array), queued on first use. */
  #plain(key: string): string {
    if (!this.#masked.has(key)) {
      this.#masked.set(key, key);
      this.#queue.push(key);
    }
    return key;
  }

  /** The name a reference to `ref` shows: every integer width is `int`, arrays `[elem]`. */
  #use(ref: TypeRef | undefined): string {
    if (ref === undefined) return this.#name(EMPTY);
    if (typeof ref !== 'string') return this.#plain(`[${this.#use(ref[0])}]`);
    if (this.#schema.isBuiltin(ref)) {
      return this.#plain((INTEGER_TYPES as readonly string[]).includes(ref) ? 'int' : ref);
    }
    return this.#name(ref);
  }

  /** One SchemaInfo for the type `key`, shown as `id`. */
  #describe(key: string, id: string): SchemaInfo {
    if (key === EMPTY) return { name: id, 'meta-type': 'object', members: [] };
    if (key.startsWith('[')) return { name: id, 'meta-type': 'array', 'element-type': key.slice(1, -1) };
    if (JSON_TYPE[key]) return { name: key, 'meta-type': 'builtin', 'json-type': JSON_TYPE[key] };
    const t = this.#schema.type(key);
    if (t.meta === 'enum') {
      return withFeatures(
        {
          name: id,
          'meta-type': 'enum',
          members: t.values.map((v) => withFeatures({ name: v.name }, v.features)),
          values: t.values.map((v) => v.name),
        },
        t.features,
      );
    }
    if (t.meta === 'alternate') {
      return {
        name: id,
        'meta-type': 'alternate',
        members: t.variants.map((v) => ({ type: this.#use(v.type) })),
      };
    }
    const members = this.#schema
      .allMembers(key)
      .map((m) =>
        withFeatures(
          { name: m.name, ...(m.optional ? { default: null } : {}), type: this.#use(m.type) },
          m.features,
        ),
      );
    const info: SchemaInfo = { name: id, 'meta-type': 'object', members };
    if (t.discriminator && t.variants) {
      info.tag = t.discriminator;
      info.variants = [...t.variants].map(([c, branch]) => ({ case: c, type: this.#use(branch) }));
    }
    return withFeatures(info, t.features);
  }
}
