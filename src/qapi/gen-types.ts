/**
 * Generates src/qapi/types.ts from the schema: one TypeScript type per QAPI type, plus
 * per-command argument/return maps and an event map. The output is checked in, and a test
 * (test/qapi/types-current.test.ts) fails when it is stale; `npm run gen` rewrites it.
 * Generating (rather than deriving types from a JSON import) keeps the types readable in
 * editors and in the published .d.ts files.
 */
import type { Member, Schema, TypeRef } from './schema.js';

const SIXTY_FOUR = new Set(['int', 'int64', 'uint64', 'size']);

function pascal(name: string): string {
  return name
    .split(/[-_]/)
    .filter(Boolean)
    .map((p) => p[0]!.toUpperCase() + p.slice(1))
    .join('');
}

/** TS name of a schema type; implicit argument types get `<Command>Arguments`. */
function tsTypeName(name: string): string {
  const m = /^q_obj_(.*)-(arg|base)$/.exec(name);
  if (m && /^[A-Z0-9_]+$/.test(m[1]!)) return `${pascal(m[1]!.toLowerCase())}Event`;
  if (m) return `${pascal(m[1]!)}${m[2] === 'arg' ? 'Arguments' : 'Base'}`;
  // QAPI's `String` would shadow the global String type in TypeScript.
  return name === 'String' ? 'QapiString' : name;
}

function tsRef(schema: Schema, ref: TypeRef): string {
  if (typeof ref !== 'string') {
    const inner = tsRef(schema, ref[0]);
    return /[|&]/.test(inner) ? `(${inner})[]` : `${inner}[]`;
  }
  if (schema.isBuiltin(ref)) {
    if (ref === 'str') return 'string';
    if (ref === 'bool') return 'boolean';
    if (ref === 'null') return 'null';
    if (ref === 'any') return 'unknown';
    if (SIXTY_FOUR.has(ref)) return 'Integer64';
    return 'number';
  }
  return tsTypeName(ref);
}

const key = (n: string) => (/^[A-Za-z_$][\w$]*$/.test(n) ? n : `'${n}'`);

function memberLines(schema: Schema, members: readonly Member[]): string[] {
  return members.map((m) => {
    const dep = m.features.includes('deprecated') ? '  /** @deprecated */\n' : '';
    return `${dep}  ${key(m.name)}${m.optional ? '?' : ''}: ${tsRef(schema, m.type)};`;
  });
}

function doc(text: string | undefined, extra?: string): string {
  const lines = [text, extra].filter(Boolean) as string[];
  return lines.length ? `/** ${lines.join(' ')} */\n` : '';
}

export function generateTypes(schema: Schema): string {
  const out: string[] = [
    '// Generated from src/qapi/schema.json by `npm run gen` (src/qapi/gen-types.ts). Do not edit.',
    '',
    '/** QAPI 64-bit integers (int, int64, uint64, size): a number when exact, else a bigint. */',
    'export type Integer64 = number | bigint;',
    '',
  ];
  for (const t of schema.types.values()) {
    const name = tsTypeName(t.name);
    if (t.meta === 'enum') {
      out.push(`${doc(t.doc)}export type ${name} = ${t.values.map((v) => `'${v.name}'`).join(' | ')};`, '');
    } else if (t.meta === 'alternate') {
      out.push(
        `${doc(t.doc)}export type ${name} = ${t.variants.map((v) => tsRef(schema, v.type)).join(' | ')};`,
        '',
      );
    } else if (t.discriminator && t.variants) {
      const base = schema.allMembers(t.base!).filter((m) => m.name !== t.discriminator);
      const baseType = base.length
        ? ` & { ${memberLines(schema, base).join(' ').replace(/\s+/g, ' ')} }`
        : '';
      const branches = [...t.variants].map(
        ([value, branch]) =>
          `  | ({ ${key(t.discriminator!)}: '${value}' } & ${tsTypeName(branch)}${baseType})`,
      );
      out.push(`${doc(t.doc)}export type ${name} =\n${branches.join('\n')};`, '');
    } else {
      const ext = t.base ? ` extends ${tsTypeName(t.base)}` : '';
      const body = memberLines(schema, t.members);
      out.push(
        `${doc(t.doc)}export interface ${name}${ext} {\n${body.join('\n')}${body.length ? '\n' : ''}}`,
        '',
      );
    }
  }
  out.push('/** Every command: its argument object and its return value. */', 'export interface Commands {');
  for (const c of schema.commands.values()) {
    const args = c.argType ? tsTypeName(c.argType) : 'Record<string, never>';
    const ret = c.returns ? tsRef(schema, c.returns) : 'Record<string, never>';
    out.push(
      `${doc(c.doc).replace(/^/gm, '  ').trimEnd()}`,
      `  ${key(c.name)}: { args: ${args}; returns: ${ret} };`,
    );
  }
  out.push('}', '', '/** Every event: its data member. */', 'export interface Events {');
  for (const e of schema.events.values()) {
    const data = e.argType ? tsTypeName(e.argType) : 'Record<string, never>';
    out.push(`${doc(e.doc).replace(/^/gm, '  ').trimEnd()}`, `  ${key(e.name)}: ${data};`);
  }
  out.push('}', '', 'export type CommandName = keyof Commands;', 'export type EventName = keyof Events;', '');
  return out.join('\n');
}

/** camelCase method name of a command: `migrate-set-capabilities` -> `migrateSetCapabilities`. */
function methodName(command: string): string {
  const p = pascal(command);
  return p[0]!.toLowerCase() + p.slice(1);
}

/**
 * Generates src/qmp/methods.ts: one typed method per command, each a one-line call of the
 * client's generic `execute`, so the client's API follows the schema without hand copies.
 */
export function generateMethods(schema: Schema): string {
  const out: string[] = [
    '// Generated from src/qapi/schema.json by `npm run gen` (src/qapi/gen-types.ts). Do not edit.',
    "import type { CommandName, Commands } from '../qapi/types.js';",
    '',
    '/** Per-call options of every command. */',
    'export interface ExecuteOptions {',
    "  /** Milliseconds to wait for the reply (default: the client's commandTimeout, else forever). */",
    '  timeout?: number;',
    '  /** Stops waiting for the reply when aborted. */',
    '  signal?: AbortSignal;',
    '  /** Send as `exec-oob` (needs the oob capability). */',
    '  oob?: boolean;',
    '}',
    '',
    '/** One typed method per QMP command of the schema. */',
    'export abstract class QmpCommandMethods {',
    '  abstract execute<C extends CommandName>(',
    '    command: C,',
    "    args?: Commands[C]['args'],",
    '    options?: ExecuteOptions,',
    "  ): Promise<Commands[C]['returns']>;",
  ];
  for (const c of schema.commands.values()) {
    const name = methodName(c.name);
    const ret = `Promise<Commands['${c.name}']['returns']>`;
    out.push('');
    if (c.doc) out.push(`  /** ${c.doc} (\`${c.name}\`) */`);
    if (c.argType) {
      const required = schema.allMembers(c.argType).some((m) => !m.optional) || c.boxed;
      const q = required ? '' : '?';
      out.push(
        `  ${name}(args${q}: Commands['${c.name}']['args'], options?: ExecuteOptions): ${ret} {`,
        `    return this.execute('${c.name}', args, options);`,
        '  }',
      );
    } else {
      out.push(
        `  ${name}(options?: ExecuteOptions): ${ret} {`,
        `    return this.execute('${c.name}', undefined, options);`,
        '  }',
      );
    }
  }
  out.push('}', '');
  return out.join('\n');
}
