/**
 * The text form of an object's options, as `-object` and HMP's `object_add` take it
 * (qom/object_interfaces.c user_creatable_parse_str): `TYPE,id=ID,prop=value,...` in keyval
 * syntax, or a JSON object. Each becomes object-add's arguments, checked against the schema
 * with the keyval visitor's texts (`Invalid parameter 'x'`, `expects 'on' or 'off'`).
 */
import { checkCommand } from './check.js';
import { genericError } from './errors.js';
import { qobjectFromJson } from './json-stream.js';
import { schema } from './schema.js';
import type { ObjectOptions } from './types.js';

/** `k=v,k=v` with `,,` for a literal comma; a first element without `=` is the qom-type. */
function keyval(text: string): [string, string][] {
  const out: [string, string][] = [];
  const parts: string[] = [];
  let cur = '';
  for (let i = 0; i < text.length; i++) {
    if (text[i] === ',' && text[i + 1] === ',') {
      cur += ',';
      i++;
    } else if (text[i] === ',') {
      parts.push(cur);
      cur = '';
    } else cur += text[i];
  }
  parts.push(cur);
  parts.forEach((p, i) => {
    const eq = p.indexOf('=');
    if (eq < 0 && i === 0) out.push(['qom-type', p]);
    else if (eq < 0) out.push([p, 'on']);
    else out.push([p.slice(0, eq), p.slice(eq + 1)]);
  });
  return out;
}

const BOOL: Record<string, boolean> = {
  on: true,
  yes: true,
  true: true,
  off: false,
  no: false,
  false: false,
};

/**
 * object-add's arguments from `-object` / `object_add` text.
 * @throws {QapiError} with QEMU 10.0's text for the first problem.
 */
export function parseObjectOption(text: string): ObjectOptions {
  if (text.startsWith('{')) {
    return checkCommand('object-add', qobjectFromJson(text)) as unknown as ObjectOptions;
  }
  const args: Record<string, unknown> = {};
  const pairs = keyval(text);
  const type = pairs.find(([k]) => k === 'qom-type')?.[1];
  const union = schema.object('ObjectOptions');
  const branch = type !== undefined ? union.variants?.get(type) : undefined;
  const members = new Map(
    [...schema.allMembers('ObjectOptions'), ...(branch ? schema.allMembers(branch) : [])].map((m) => [
      m.name,
      m,
    ]),
  );
  for (const [k, v] of pairs) {
    const m = members.get(k);
    // An unknown type is reported by the check below, before its properties.
    if (!m && branch) throw genericError(`Invalid parameter '${k}'`);
    if (m?.type === 'bool') {
      if (!Object.hasOwn(BOOL, v)) throw genericError(`Parameter '${k}' expects 'on' or 'off'`);
      args[k] = BOOL[v];
    } else if (m && typeof m.type !== 'string') {
      throw genericError(`Parameter '${k}' is a list: use -object's JSON form`);
    } else args[k] = v;
  }
  if (!branch)
    return checkCommand('object-add', { 'qom-type': type, id: args.id }) as unknown as ObjectOptions;
  return checkCommand('object-add', args) as unknown as ObjectOptions;
}
