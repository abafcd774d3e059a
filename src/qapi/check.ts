/**
 * The argument checker: QMP arguments (JSON values) in, typed values or QEMU's exact errors
 * out. It walks the schema the way QEMU's generated visitors drive the QObject input visitor
 * (qapi/qobject-input-visitor.c, qapi/qapi-visit-core.c), so that the first error found, its
 * wording and the member path in it are the ones QEMU 10.0 reports.
 */

import { genericError, QapiError } from './errors.js';
import { intValue, type QNum, toQNum } from './json.js';
import {
  schema as defaultSchema,
  type Member,
  type ObjectType,
  type Schema,
  type TypeRef,
} from './schema.js';

type Frame =
  | { kind: 'dict'; name: string | null; value: Record<string, unknown>; unvisited: Set<string> }
  | { kind: 'list'; name: string | null; value: unknown[]; index: number };

const INT_RANGES: Record<string, [bigint, bigint]> = {
  int8: [-128n, 127n],
  int16: [-32768n, 32767n],
  int32: [-2147483648n, 2147483647n],
};
const UINT_MAX: Record<string, bigint> = { uint8: 255n, uint16: 65535n, uint32: 4294967295n };
const U64 = 1n << 64n;

function isDict(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && toQNum(v) === undefined;
}

/** QEMU's QType of a JSON value, as alternates dispatch on it. */
function qtypeOf(v: unknown): 'qstring' | 'qnull' | 'qnum' | 'qbool' | 'qdict' | 'qlist' | undefined {
  if (typeof v === 'string') return 'qstring';
  if (v === null) return 'qnull';
  if (typeof v === 'boolean') return 'qbool';
  if (toQNum(v)) return 'qnum';
  if (Array.isArray(v)) return 'qlist';
  if (isDict(v)) return 'qdict';
  return undefined;
}

const BUILTIN_QTYPE: Record<string, string> = {
  str: 'qstring',
  null: 'qnull',
  bool: 'qbool',
  number: 'qnum',
  int: 'qnum',
  int8: 'qnum',
  int16: 'qnum',
  int32: 'qnum',
  int64: 'qnum',
  uint8: 'qnum',
  uint16: 'qnum',
  uint32: 'qnum',
  uint64: 'qnum',
  size: 'qnum',
};

class Visitor {
  readonly #stack: Frame[] = [];
  readonly #root: unknown;
  readonly #schema: Schema;

  constructor(schema: Schema, root: unknown) {
    this.#schema = schema;
    this.#root = root;
  }

  /** QEMU's full_name(): the dotted / indexed path of `name` in the current container. */
  fullName(name: string | null, skip = 0): string {
    let out = '';
    let n = skip;
    let cur = name;
    for (let i = this.#stack.length - 1; i >= 0; i--) {
      const so = this.#stack[i]!;
      if (n) n--;
      else if (so.kind === 'dict') out = `.${cur ?? '<anonymous>'}${out}`;
      else out = `[${so.index}]${out}`;
      cur = so.name;
    }
    if (cur !== null) return cur + out;
    if (out.startsWith('.')) return out.slice(1);
    return out || '<anonymous>';
  }

  /** Peeks at (consume=false) or takes (consume=true) the next value: root, member or element. */
  #get(name: string | null, consume: boolean): { found: boolean; value?: unknown } {
    const tos = this.#stack[this.#stack.length - 1];
    if (!tos) return { found: true, value: this.#root };
    if (tos.kind === 'dict') {
      const key = name as string;
      if (!Object.hasOwn(tos.value, key) || tos.value[key] === undefined) return { found: false };
      if (consume) tos.unvisited.delete(key);
      return { found: true, value: tos.value[key] };
    }
    const next = tos.index + 1;
    if (consume) tos.index = next;
    if (next >= tos.value.length) return { found: false };
    return { found: true, value: tos.value[next] };
  }

  #need(name: string | null, consume = true): unknown {
    const r = this.#get(name, consume);
    if (!r.found) throw genericError(`Parameter '${this.fullName(name)}' is missing`);
    return r.value;
  }

  #typeError(name: string | null, expected: string): QapiError {
    return genericError(`Invalid parameter type for '${this.fullName(name)}', expected: ${expected}`);
  }

  present(name: string): boolean {
    return this.#get(name, false).found;
  }

  visit(type: TypeRef, name: string | null): unknown {
    if (typeof type !== 'string') return this.visitList(type[0], name);
    if (this.#schema.isBuiltin(type)) return this.visitBuiltin(type, name);
    const t = this.#schema.type(type);
    switch (t.meta) {
      case 'enum':
        return this.visitEnum(
          t.values.map((v) => v.name),
          name,
        );
      case 'object':
        return this.visitStruct(t, name);
      case 'alternate': {
        const v = this.#need(name, false);
        const qt = qtypeOf(v);
        for (const variant of t.variants) {
          const want = this.#schema.isBuiltin(variant.type)
            ? BUILTIN_QTYPE[variant.type]
            : this.#schema.type(variant.type).meta === 'enum'
              ? 'qstring'
              : 'qdict';
          if (want === qt || (variant.type === 'any' && qt)) return this.visit(variant.type, name);
        }
        throw genericError(`Invalid parameter type for '${name ?? 'null'}', expected: ${t.name}`);
      }
    }
  }

  visitBuiltin(type: string, name: string | null): unknown {
    const v = this.#need(name);
    switch (type) {
      case 'str':
        if (typeof v !== 'string') throw this.#typeError(name, 'string');
        return v;
      case 'bool':
        if (typeof v !== 'boolean') throw this.#typeError(name, 'boolean');
        return v;
      case 'null':
        if (v !== null) throw this.#typeError(name, 'null');
        return null;
      case 'any':
        return v;
      case 'number': {
        const q = toQNum(v);
        if (!q) throw this.#typeError(name, 'number');
        return q.kind === 'double' ? q.value : Number(q.value);
      }
      case 'int':
      case 'int64':
      case 'int8':
      case 'int16':
      case 'int32': {
        const q = toQNum(v);
        if (q?.kind !== 'i64') throw this.#typeError(name, 'integer');
        const range = INT_RANGES[type];
        if (range && (q.value < range[0] || q.value > range[1])) {
          throw genericError(`Parameter '${name ?? 'null'}' expects ${type}_t`);
        }
        return intValue(q.value);
      }
      default: {
        // uint8..uint64 and size all read as uint64 first; negatives wrap, as in QEMU.
        const q: QNum | undefined = toQNum(v);
        if (!q || q.kind === 'double')
          throw genericError(`Parameter '${this.fullName(name)}' expects uint64`);
        const u = q.value < 0n ? q.value + U64 : q.value;
        const max = UINT_MAX[type];
        if (max !== undefined && u > max)
          throw genericError(`Parameter '${name ?? 'null'}' expects ${type}_t`);
        return intValue(u);
      }
    }
  }

  visitEnum(values: readonly string[], name: string | null): string {
    const v = this.visitBuiltin('str', name) as string;
    if (!values.includes(v)) throw genericError(`Parameter '${name ?? 'null'}' does not accept value '${v}'`);
    return v;
  }

  visitList(elem: string, name: string | null): unknown[] {
    const v = this.#need(name);
    if (!Array.isArray(v)) throw this.#typeError(name, 'array');
    this.#stack.push({ kind: 'list', name, value: v, index: -1 });
    const out: unknown[] = [];
    for (let i = 0; i < v.length; i++) out.push(this.visit(elem, null));
    this.#stack.pop();
    return out;
  }

  /** start_struct + members + check_struct + end_struct. */
  visitStruct(t: ObjectType, name: string | null): Record<string, unknown> {
    const v = this.#need(name);
    if (!isDict(v)) throw this.#typeError(name, 'object');
    this.#stack.push({ kind: 'dict', name, value: v, unvisited: new Set(Object.keys(v)) });
    const out: Record<string, unknown> = {};
    this.visitMembers(t, out);
    this.checkStruct();
    this.#stack.pop();
    return out;
  }

  /** The generated visit_type_X_members(): base, own members, then the union branch. */
  visitMembers(t: ObjectType, out: Record<string, unknown>): void {
    if (t.base) this.visitMembers(this.#schema.object(t.base), out);
    for (const m of t.members) this.visitMember(m, out);
    if (t.discriminator && t.variants) {
      const branch = t.variants.get(out[t.discriminator] as string);
      if (branch) this.visitMembers(this.#schema.object(branch), out);
    }
  }

  visitMember(m: Member, out: Record<string, unknown>): void {
    if (m.optional && !this.present(m.name)) return;
    out[m.name] = this.visit(m.type, m.name);
  }

  checkStruct(): void {
    const tos = this.#stack[this.#stack.length - 1];
    if (tos?.kind !== 'dict') return;
    // QEMU reports whichever leftover key its hash table yields first; we take the first in
    // the object's own order, which is the same whenever there is only one.
    for (const key of tos.unvisited) throw genericError(`Parameter '${this.fullName(key)}' is unexpected`);
  }

  /** The marshaller's visit of a command's (or boxed type's) arguments at the top level. */
  visitArguments(argType: string | undefined, args: Record<string, unknown>): Record<string, unknown> {
    this.#stack.push({ kind: 'dict', name: null, value: args, unvisited: new Set(Object.keys(args)) });
    const out: Record<string, unknown> = {};
    if (argType) this.visitMembers(this.#schema.object(argType), out);
    this.checkStruct();
    this.#stack.pop();
    return out;
  }
}

/**
 * Checks a value against a schema type, with the value at the root (as QEMU's
 * qobject_input_visitor_new() then visit_type_X(v, NULL, ...)).
 * @throws {QapiError} with QEMU's message for the first violation.
 */
export function checkType(type: TypeRef, value: unknown, schema: Schema = defaultSchema): unknown {
  return new Visitor(schema, value).visit(type, null);
}

/**
 * Checks a command's `arguments` and returns them typed (absent optional members stay absent,
 * integers come back as number, or bigint beyond 2^53).
 * @throws {QapiError} CommandNotFound for an unknown command; GenericError with QEMU's text
 *   for arguments that are not an object or do not match the command's schema.
 */
export function checkCommand(
  command: string,
  args: unknown,
  schema: Schema = defaultSchema,
): Record<string, unknown> {
  const cmd = schema.commands.get(command);
  if (!cmd) throw new QapiError(`The command ${command} has not been found`, 'CommandNotFound');
  if (args === undefined) args = {};
  if (!isDict(args)) throw genericError("QMP input member 'arguments' must be an object");
  return new Visitor(schema, args).visitArguments(cmd.argType, args);
}
