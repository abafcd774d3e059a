/**
 * The QAPI schema model: schema.json (the single source of truth, QAPI's own expression
 * language written as strict JSON) resolved into entities that the argument checker, the
 * type generator and introspection walk. Mirrors scripts/qapi/schema.py in QEMU: inline
 * member lists become implicit object types named as QEMU names them (`q_obj_<name>-arg`).
 */
import { ArgumentError } from '../errors.js';
import rawSchema from './schema.json' with { type: 'json' };

/** The integer builtins: introspection reports all of them as `int`. */
export const INTEGER_TYPES = [
  'int',
  'int8',
  'int16',
  'int32',
  'int64',
  'uint8',
  'uint16',
  'uint32',
  'uint64',
  'size',
] as const;
export const BUILTIN_TYPES = ['str', ...INTEGER_TYPES, 'number', 'bool', 'null', 'any'] as const;
export type BuiltinType = (typeof BUILTIN_TYPES)[number];

/** A reference to a type: a name, or a one-element array for a list of that type. */
export type TypeRef = string | readonly [string];

export interface Member {
  readonly name: string;
  readonly type: TypeRef;
  readonly optional: boolean;
  readonly features: readonly string[];
}

interface EntityBase {
  readonly name: string;
  readonly doc?: string;
  readonly features: readonly string[];
}
export interface EnumType extends EntityBase {
  readonly meta: 'enum';
  readonly values: readonly { readonly name: string; readonly features: readonly string[] }[];
}
export interface ObjectType extends EntityBase {
  readonly meta: 'object';
  /** Every member, the base's first, in schema order. For a union these are the base's. */
  readonly members: readonly Member[];
  readonly base?: string;
  /** Set on flat unions: the discriminator member and the branch type of each value. */
  readonly discriminator?: string;
  readonly variants?: ReadonlyMap<string, string>;
  /** True for the implicit types QAPI makes of inline member lists. */
  readonly implicit: boolean;
}
export interface AlternateType extends EntityBase {
  readonly meta: 'alternate';
  readonly variants: readonly { readonly name: string; readonly type: string }[];
}
export interface Command extends EntityBase {
  readonly meta: 'command';
  /** Name of the argument object type (implicit or, when boxed, a named one). */
  readonly argType?: string;
  readonly boxed: boolean;
  readonly returns?: TypeRef;
  readonly allowOob: boolean;
  readonly allowPreconfig: boolean;
}
export interface Event extends EntityBase {
  readonly meta: 'event';
  readonly argType?: string;
  readonly boxed: boolean;
}
export type NamedType = EnumType | ObjectType | AlternateType;

type RawMembers = Record<string, string | [string] | { type: string | [string]; features?: string[] }>;
interface RawExpr {
  enum?: string;
  struct?: string;
  union?: string;
  alternate?: string;
  command?: string;
  event?: string;
  data?: unknown;
  base?: string | RawMembers;
  discriminator?: string;
  returns?: string | [string];
  boxed?: boolean;
  'allow-oob'?: boolean;
  'allow-preconfig'?: boolean;
  features?: (string | { name: string })[];
  doc?: string;
}

function featureNames(f: RawExpr['features']): string[] {
  return (f ?? []).map((x) => (typeof x === 'string' ? x : x.name));
}

function members(raw: RawMembers | undefined): Member[] {
  return Object.entries(raw ?? {}).map(([key, spec]) => {
    const optional = key.startsWith('*');
    const name = optional ? key.slice(1) : key;
    if (typeof spec === 'string' || Array.isArray(spec)) return { name, type: spec, optional, features: [] };
    return { name, type: spec.type, optional, features: spec.features ?? [] };
  });
}

export class Schema {
  readonly types = new Map<string, NamedType>();
  readonly commands = new Map<string, Command>();
  readonly events = new Map<string, Event>();

  /** @throws {ArgumentError} for a duplicate type, an unknown expression or an unknown type name. */
  constructor(exprs: readonly RawExpr[]) {
    for (const e of exprs) this.#add(e);
    this.#checkRefs();
  }

  #addObject(t: ObjectType): void {
    if (this.types.has(t.name)) throw new ArgumentError(`schema: duplicate type ${t.name}`);
    this.types.set(t.name, t);
  }

  /** One expression of the schema file, by kind (scripts/qapi/schema.py _def_exprs). */
  #add(e: RawExpr): void {
    const features = featureNames(e.features);
    const doc = e.doc;
    if (e.enum !== undefined) {
      const values = (e.data as (string | { name: string; features?: string[] })[]).map((v) =>
        typeof v === 'string' ? { name: v, features: [] } : { name: v.name, features: v.features ?? [] },
      );
      this.types.set(e.enum, { meta: 'enum', name: e.enum, doc, features, values });
    } else if (e.struct !== undefined) {
      const own = members(e.data as RawMembers);
      const base = typeof e.base === 'string' ? e.base : undefined;
      // Base members are looked up lazily: a base may be defined later in the file.
      this.#addObject({ meta: 'object', name: e.struct, doc, features, members: own, base, implicit: false });
    } else if (e.union !== undefined) {
      this.#addUnion(e, e.union, doc, features);
    } else if (e.alternate !== undefined) {
      const variants = Object.entries(e.data as Record<string, string | { type: string }>).map(
        ([name, v]) => ({
          name,
          type: typeof v === 'string' ? v : v.type,
        }),
      );
      this.types.set(e.alternate, { meta: 'alternate', name: e.alternate, doc, features, variants });
    } else if (e.command !== undefined || e.event !== undefined) {
      this.#addCommandOrEvent(e, doc, features);
    } else {
      throw new ArgumentError(`schema: unknown expression ${JSON.stringify(e).slice(0, 80)}`);
    }
  }

  /** A union: its base (named, or implicit from inline members) and its variants by tag value. */
  #addUnion(e: RawExpr, union: string, doc: RawExpr['doc'], features: string[]): void {
    let base: string;
    if (typeof e.base === 'string') base = e.base;
    else {
      base = `q_obj_${union}-base`;
      this.#addObject({
        meta: 'object',
        name: base,
        features: [],
        members: members(e.base),
        implicit: true,
      });
    }
    const variants = new Map<string, string>();
    for (const [k, v] of Object.entries(e.data as Record<string, string | { type: string }>)) {
      variants.set(k, typeof v === 'string' ? v : v.type);
    }
    this.#addObject({
      meta: 'object',
      name: union,
      doc,
      features,
      members: [],
      base,
      discriminator: e.discriminator,
      variants,
      implicit: false,
    });
  }

  /** A command or an event, with an implicit argument type for inline members. */
  #addCommandOrEvent(e: RawExpr, doc: RawExpr['doc'], features: string[]): void {
    const name = (e.command ?? e.event) as string;
    let argType: string | undefined;
    if (typeof e.data === 'string') argType = e.data;
    else if (e.data !== undefined && Object.keys(e.data as object).length > 0) {
      argType = `q_obj_${name}-arg`;
      this.#addObject({
        meta: 'object',
        name: argType,
        features: [],
        members: members(e.data as RawMembers),
        implicit: true,
      });
    }
    const boxed = e.boxed === true;
    if (e.command !== undefined) {
      this.commands.set(name, {
        meta: 'command',
        name,
        doc,
        features,
        argType,
        boxed,
        returns: e.returns,
        allowOob: e['allow-oob'] === true,
        allowPreconfig: e['allow-preconfig'] === true,
      });
    } else {
      this.events.set(name, { meta: 'event', name, doc, features, argType, boxed });
    }
  }

  #checkRefs(): void {
    const check = (ref: TypeRef | undefined, where: string) => {
      if (ref === undefined) return;
      const name = typeof ref === 'string' ? ref : ref[0];
      if (!this.isBuiltin(name) && !this.types.has(name))
        throw new ArgumentError(`schema: ${where} uses unknown ${name}`);
    };
    for (const t of this.types.values()) {
      if (t.meta === 'object') {
        check(t.base, t.name);
        for (const m of t.members) check(m.type, `${t.name}.${m.name}`);
        for (const v of t.variants?.values() ?? []) check(v, t.name);
      } else if (t.meta === 'alternate') for (const v of t.variants) check(v.type, t.name);
    }
    for (const c of this.commands.values()) {
      check(c.argType, c.name);
      check(c.returns, c.name);
    }
    for (const e of this.events.values()) check(e.argType, e.name);
  }

  isBuiltin(name: string): name is BuiltinType {
    return (BUILTIN_TYPES as readonly string[]).includes(name);
  }

  /** @throws {ArgumentError} when the schema has no type `name`. */
  type(name: string): NamedType {
    const t = this.types.get(name);
    if (!t) throw new ArgumentError(`schema: no type ${name}`);
    return t;
  }

  /** @throws {ArgumentError} when `name` is not an object type of the schema. */
  object(name: string): ObjectType {
    const t = this.type(name);
    if (t.meta !== 'object') throw new ArgumentError(`schema: ${name} is not an object type`);
    return t;
  }

  /** All members of an object type (base chain first), without union branches. */
  allMembers(name: string): Member[] {
    const t = this.object(name);
    return [...(t.base ? this.allMembers(t.base) : []), ...t.members];
  }

  /** @throws {ArgumentError} when `name` is not an enum type of the schema. */
  enumValues(name: string): string[] {
    const t = this.type(name);
    if (t.meta !== 'enum') throw new ArgumentError(`schema: ${name} is not an enum`);
    return t.values.map((v) => v.name);
  }
}

/** The schema qmigrate serves: QEMU 10.0's, for the commands in schema.json. */
export const schema = new Schema(rawSchema as unknown as RawExpr[]);
