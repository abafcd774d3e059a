/**
 * The line syntax of `qmigrate qmp`, a QMP shell: `command key=value ...` with dotted keys
 * for nested members, or one raw JSON request. It follows python/qemu/qmp/qmp_shell.py
 * (`key=value`, `a.b=` nesting, JSON values, its "leaf and non-leaf" and "multiple times"
 * refusals) and QEMU's keyval (util/keyval.c: keys that are all 0, 1, 2, ... make a list).
 */
import { ArgumentError } from '../errors.js';
import { parseJson, stringifyJson } from '../qapi/json.js';

/** One parsed line: nothing to send (blank or `#` comment), or a request. */
export type ShellLine =
  | { kind: 'empty' }
  | {
      kind: 'request';
      /** `execute`, or `exec-oob` for a raw line that says so. */
      oob: boolean;
      command: string;
      arguments?: Record<string, unknown>;
      /** The raw line's own `id`, present when it carried one (any JSON value). */
      id?: { value: unknown };
    };

/**
 * Splits a line into words at blanks outside quotes and outside `{...}`/`[...]`, so that
 * `arg={"a": 1, "b": [2, 3]}` and `desc="two words"` stay one word each.
 * @throws {ArgumentError} for an unclosed quote or bracket.
 */
export function splitWords(line: string): string[] {
  const words: string[] = [];
  let word = '';
  let depth = 0;
  let quote = '';
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (quote) {
      word += c;
      if (c === '\\' && i + 1 < line.length) word += line[++i];
      else if (c === quote) quote = '';
      continue;
    }
    if (c === '"' || c === "'") quote = c;
    else if (c === '{' || c === '[') depth++;
    else if ((c === '}' || c === ']') && depth > 0) depth--;
    else if (/\s/.test(c) && depth === 0) {
      if (word) words.push(word);
      word = '';
      continue;
    }
    word += c;
  }
  if (quote) throw new ArgumentError(`unclosed ${quote} in '${word}'`);
  if (depth > 0) throw new ArgumentError(`unclosed bracket in '${word}'`);
  if (word) words.push(word);
  return words;
}

/**
 * A `key=value` value: JSON where it is JSON (numbers, true, false, null, "strings" and
 * QEMU's 'strings', objects, arrays), else the text as a string (`uri=tcp:0:4444`). Text that
 * starts like a JSON object, array or string must be JSON.
 * @throws {ArgumentError} naming the key when such text is not JSON.
 */
export function parseValue(key: string, text: string): unknown {
  try {
    return parseJson(text);
  } catch (e) {
    if (/^["'{[]/.test(text))
      throw new ArgumentError(`the value of '${key}' is not JSON: ${(e as Error).message}`);
    return text;
  }
}

const INDEX = /^(0|[1-9]\d*)$/;

/**
 * Builds `arguments` from `key=value` words. `a.b=1 a.c=2` gives `{a: {b: 1, c: 2}}`; an
 * object whose keys are all indexes (`l.0=x l.1=y`) becomes a list, as in QEMU's keyval.
 * @throws {ArgumentError} for a word without `=`, an empty key part, a key given twice, a key
 *   used both as a value and as an object, or list indexes with a gap.
 */
export function buildArguments(words: readonly string[]): Record<string, unknown> {
  const root: Record<string, unknown> = {};
  const built = new Set<object>([root]);
  for (const w of words) {
    const eq = w.indexOf('=');
    if (eq < 0) throw new ArgumentError(`expected key=value, got '${w}'`);
    const key = w.slice(0, eq);
    const path = key.split('.');
    if (path.some((p) => p === '')) throw new ArgumentError(`key '${key}' has an empty part`);
    let node = root;
    for (let i = 0; i < path.length - 1; i++) {
      const part = path[i]!;
      const next = Object.hasOwn(node, part) ? node[part] : undefined;
      if (next === undefined) {
        const obj: Record<string, unknown> = {};
        built.add(obj);
        setMember(node, part, obj);
        node = obj;
      } else if (typeof next === 'object' && next !== null && built.has(next)) {
        node = next as Record<string, unknown>;
      } else {
        throw new ArgumentError(
          `'${path.slice(0, i + 1).join('.')}' is used both as a value and as an object`,
        );
      }
    }
    const leaf = path[path.length - 1]!;
    if (Object.hasOwn(node, leaf)) {
      const was = node[leaf];
      throw new ArgumentError(
        typeof was === 'object' && was !== null && built.has(was)
          ? `'${key}' is used both as a value and as an object`
          : `'${key}' is given more than once`,
      );
    }
    setMember(node, leaf, parseValue(key, w.slice(eq + 1)));
  }
  return listify(root, '', built) as Record<string, unknown>;
}

/**
 * `obj[key] = value` as an own member even for `__proto__`, whose assignment would set the
 * prototype instead: a key is any text the monitor may take.
 */
function setMember(obj: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}

/** Turns each object built from dotted keys whose keys are all 0..n-1 into a list. */
function listify(node: Record<string, unknown>, at: string, built: Set<object>): unknown {
  for (const [k, v] of Object.entries(node)) {
    if (typeof v === 'object' && v !== null && built.has(v))
      setMember(node, k, listify(v as Record<string, unknown>, at ? `${at}.${k}` : k, built));
  }
  const keys = Object.keys(node);
  if (at === '' || keys.length === 0 || !keys.every((k) => INDEX.test(k))) return node;
  const n = keys.length;
  for (let i = 0; i < n; i++) {
    if (!(String(i) in node))
      throw new ArgumentError(`list '${at}' has no element ${i} (indexes must run 0, 1, 2, ...)`);
  }
  return Array.from({ length: n }, (_, i) => node[String(i)]);
}

/**
 * A raw JSON request line: an object with `execute` (or `exec-oob`), optional `arguments`
 * (an object) and optional `id`.
 * @throws {ArgumentError} when it is not JSON or not such an object; QEMU would refuse it, and
 *   the shell says why before anything is sent.
 */
function parseRawLine(line: string): ShellLine {
  let msg: unknown;
  try {
    msg = parseJson(line);
  } catch (e) {
    throw new ArgumentError(`not a JSON request: ${(e as Error).message}`);
  }
  if (typeof msg !== 'object' || msg === null || Array.isArray(msg))
    throw new ArgumentError('a JSON request must be an object');
  const m = msg as Record<string, unknown>;
  const oob = 'exec-oob' in m;
  const command = oob ? m['exec-oob'] : m.execute;
  if ('execute' in m && oob) throw new ArgumentError("a JSON request has 'execute' or 'exec-oob', not both");
  if (typeof command !== 'string')
    throw new ArgumentError("a JSON request needs 'execute' (or 'exec-oob') with a command name");
  const extra = Object.keys(m).filter((k) => !['execute', 'exec-oob', 'arguments', 'id'].includes(k));
  if (extra.length) throw new ArgumentError(`a JSON request takes no member '${extra[0]}'`);
  const args = m.arguments;
  if (args !== undefined && (typeof args !== 'object' || args === null || Array.isArray(args)))
    throw new ArgumentError("'arguments' of a JSON request must be an object");
  return {
    kind: 'request',
    oob,
    command,
    ...(args === undefined ? {} : { arguments: args as Record<string, unknown> }),
    ...('id' in m ? { id: { value: m.id } } : {}),
  };
}

/** qobject/json-streamer.c: QEMU drops a message of more tokens, or of more bytes of tokens. */
export const QEMU_JSON_MAX_TOKENS = 2 * 1024 * 1024;
export const QEMU_JSON_MAX_SIZE = 64 * 1024 * 1024;

/**
 * How many JSON tokens `v` is as QEMU's lexer counts them (brackets, commas, colons, keys,
 * scalars).
 * @throws {ArgumentError} naming the member holding a number JSON cannot carry (1e999 is
 *   Infinity, which would go out as `inf`).
 */
function countTokens(v: unknown, at: string): number {
  if (typeof v === 'number' && !Number.isFinite(v))
    throw new ArgumentError(`the value of '${at}' is not a finite number`);
  if (typeof v === 'string' && LONE_SURROGATE.test(v)) throw loneSurrogate(`the value of '${at}'`);
  if (typeof v !== 'object' || v === null) return 1;
  const members = Array.isArray(v) ? v.map((x, i) => [String(i), x] as const) : Object.entries(v);
  let n = 2 + Math.max(members.length - 1, 0) + (Array.isArray(v) ? 0 : 2 * members.length);
  for (const [k, x] of members) {
    const path = at ? `${at}.${k}` : k;
    if (LONE_SURROGATE.test(k)) throw loneSurrogate(`the key '${path}'`);
    n += countTokens(x, path);
  }
  return n;
}

/** A UTF-16 half without its other half: no UTF-8 encodes it, and QEMU's parser refuses it. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

function loneSurrogate(what: string): ArgumentError {
  return new ArgumentError(`${what} holds a lone UTF-16 surrogate, which QMP's JSON cannot carry`);
}

/**
 * Refuses arguments QEMU could not read. Past its limits QEMU answers a parse error with no
 * id (a client cannot tell which request failed), and past the token count it parses the
 * rest of the line as further messages: QEMU 10.0 then aborts on its request queue assertion.
 * @throws {ArgumentError} saying which limit, or which number, is the problem.
 */
function checkSendable(args: Record<string, unknown>): void {
  // {"execute": "c", "arguments": ARGS, "id": "..."}: 12 tokens around the arguments.
  const tokens = countTokens(args, '') + 12;
  if (tokens > QEMU_JSON_MAX_TOKENS)
    throw new ArgumentError(
      `the request is ${tokens} JSON tokens, more than the ${QEMU_JSON_MAX_TOKENS} tokens QEMU reads in one message`,
    );
  const size = Buffer.byteLength(stringifyJson(args));
  if (size > QEMU_JSON_MAX_SIZE - 1024)
    throw new ArgumentError(
      `the request is ${size} bytes of JSON, more than the ${QEMU_JSON_MAX_SIZE} QEMU reads in one message`,
    );
}

/**
 * Parses one line of the shell. A line starting with `{` is a raw JSON request; a blank line
 * or one starting with `#` is nothing; anything else is `command key=value ...`.
 * @throws {ArgumentError} with a one-line reason when the line cannot be sent.
 */
export function parseShellLine(line: string): ShellLine {
  const text = line.trim();
  if (text === '' || text.startsWith('#')) return { kind: 'empty' };
  if (text.startsWith('{')) {
    const raw = parseRawLine(text);
    if (raw.kind === 'request' && raw.arguments) checkSendable(raw.arguments);
    // The id is not sent (the client uses its own) but comes back in the reply's JSON line.
    if (raw.kind === 'request' && raw.id) countTokens(raw.id.value, 'id');
    return raw;
  }
  const [command, ...rest] = splitWords(text);
  if (command === undefined) return { kind: 'empty' };
  if (command.includes('=')) throw new ArgumentError(`a line starts with a command name, not '${command}'`);
  const args = buildArguments(rest);
  checkSendable(args);
  return { kind: 'request', oob: false, command, ...(rest.length ? { arguments: args } : {}) };
}
