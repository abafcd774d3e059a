/**
 * The HMP command-line parser: command lookup (with `info` subcommands), the args_type
 * driven argument parser and QEMU's tokeniser, with QEMU 10.0's messages to the monitor
 * (qemu/qemu: monitor/hmp.c get_str, parse_cmdline, monitor_parse_command,
 * monitor_parse_arguments, handle_hmp_command). Works on byte strings (see bytes.ts).
 */
import { isGraph, isSpace, type MonitorOutput } from './bytes.js';
import { type CommandDef, compareCmd } from './commands.js';

/** QEMU's get_str() copies into a 1024-byte buffer: longer tokens are cut silently. */
const ARG_BUF = 1023;
/** parse_cmdline() gives up beyond this many words. */
export const MAX_ARGS = 16;

export type ArgValue = string | boolean;

export type ParseResult =
  | { kind: 'empty' }
  | { kind: 'failed' }
  | { kind: 'command'; cmd: CommandDef; args: Map<string, ArgValue> };

/**
 * get_str(): one whitespace-delimited word, or a double-quoted string with \n \r \\ \' \"
 * escapes. Undefined when there is no word or the quoting is bad (QEMU reports that on its
 * stdout, not on the monitor).
 */
function getStr(s: string, at: number): { value: string; end: number } | undefined {
  let p = at;
  while (isSpace(s[p])) p++;
  if (p >= s.length) return undefined;
  let value = '';
  const put = (c: string) => {
    if (value.length < ARG_BUF) value += c;
  };
  if (s[p] === '"') {
    p++;
    while (p < s.length && s[p] !== '"') {
      if (s[p] === '\\') {
        const c = s[p + 1];
        p += 2;
        if (c === 'n') put('\n');
        else if (c === 'r') put('\r');
        else if (c === '\\' || c === "'" || c === '"') put(c);
        else return undefined;
      } else put(s[p++]!);
    }
    if (s[p] !== '"') return undefined;
    p++;
  } else {
    while (p < s.length && !isSpace(s[p])) put(s[p++]!);
  }
  return { value, end: p };
}

/** parse_cmdline(): all words of a line, or undefined on bad quoting or too many words. */
export function splitWords(s: string): string[] | undefined {
  const words: string[] = [];
  let p = 0;
  for (;;) {
    while (isSpace(s[p])) p++;
    if (p >= s.length) return words;
    if (words.length >= MAX_ARGS) return undefined;
    const w = getStr(s, p);
    if (!w) return undefined;
    words.push(w.value);
    p = w.end;
  }
}

/** get_command_name(): the name runs to a space, a '/' or the end. */
function commandName(s: string, at: number): { name: string; end: number } | undefined {
  let p = at;
  while (isSpace(s[p])) p++;
  if (p >= s.length) return undefined;
  const start = p;
  while (p < s.length && s[p] !== '/' && !isSpace(s[p])) p++;
  return { name: s.slice(start, p), end: p };
}

/**
 * monitor_parse_command(): finds the command (descending into `info`'s table while words
 * remain) and returns it with the position after its name and the spaces that follow.
 */
function findCommand(
  line: string,
  at: number,
  table: readonly CommandDef[],
  out: MonitorOutput,
): { cmd: CommandDef; pos: number } | 'empty' | 'failed' {
  const found = commandName(line, at);
  if (!found) return 'empty';
  const cmd = table.find((c) => compareCmd(found.name, c.name));
  if (!cmd) {
    // The whole line up to the bad name is quoted, leading spaces and `info` included.
    out.printBytes(`unknown command: '${line.slice(0, found.end)}'\n`);
    return 'failed';
  }
  let p = found.end;
  while (isSpace(line[p])) p++;
  if (cmd.subTable && p < line.length) return findCommand(line, p, cmd.subTable, out);
  return { cmd, pos: p };
}

/** is_valid_option(): strstr(typestr, "-c"); a NUL option letter finds any '-'. */
function isValidOption(c: string | undefined, typestr: string): boolean {
  return typestr.includes(c === undefined ? '-' : `-${c}`);
}

/**
 * monitor_parse_arguments()'s two cursors, `#t` in the command's args_type and `#p` in the
 * line, and the arguments read so far. Each reader returns QEMU's message for the monitor
 * when its argument does not parse, else undefined.
 */
class ArgReader {
  readonly args = new Map<string, ArgValue>();
  readonly #cmd: CommandDef;
  readonly #type: string;
  readonly #line: string;
  #t = 0;
  #p: number;

  constructor(cmd: CommandDef, line: string, at: number) {
    this.#cmd = cmd;
    this.#type = cmd.argsType;
    this.#line = line;
    this.#p = at;
  }

  /** key_get_info(): an optional ',' then `key:`; undefined at the end of args_type. */
  nextKey(): string | undefined {
    if (this.#type[this.#t] === ',') this.#t++;
    const colon = this.#type.indexOf(':', this.#t);
    if (colon < 0) return undefined;
    const key = this.#type.slice(this.#t, colon);
    this.#t = colon + 1;
    return key;
  }

  /** The argument's type letter, consumed. */
  nextType(): string | undefined {
    return this.#type[this.#t++];
  }

  /** What is left after the arguments: QEMU's message unless only spaces. */
  end(): string | undefined {
    while (isSpace(this.#line[this.#p])) this.#p++;
    if (this.#p < this.#line.length) return `${this.#cmd.name}: extraneous characters at the end of line\n`;
    return undefined;
  }

  /** Skips spaces; true for an optional argument (`?`) with the line at its end. */
  #absent(): boolean {
    while (isSpace(this.#line[this.#p])) this.#p++;
    if (this.#type[this.#t] === '?') {
      this.#t++;
      if (this.#p >= this.#line.length) return true;
    }
    return false;
  }

  /** `s`: one word, or a quoted string (get_str). */
  word(key: string): string | undefined {
    if (this.#absent()) return undefined;
    const w = getStr(this.#line, this.#p);
    if (!w) return `${this.#cmd.name}: string expected\n`;
    this.args.set(key, w.value);
    this.#p = w.end;
    return undefined;
  }

  /** `S`: the rest of the line. */
  rest(key: string): string | undefined {
    if (this.#absent()) return undefined;
    if (this.#p >= this.#line.length) return `${this.#cmd.name}: string expected\n`;
    this.args.set(key, this.#line.slice(this.#p));
    this.#p = this.#line.length;
    return undefined;
  }

  /** `b`: on or off. */
  onOff(key: string): string | undefined {
    const line = this.#line;
    while (isSpace(line[this.#p])) this.#p++;
    const beg = this.#p;
    while (isGraph(line[this.#p])) this.#p++;
    const word = line.slice(beg, this.#p);
    if (word === 'on') this.args.set(key, true);
    else if (word === 'off') this.args.set(key, false);
    else return "Expected 'on' or 'off'\n";
    return undefined;
  }

  /** `-x`: an optional flag (true when given); `-xs`: one with a word after it. */
  flag(key: string): string | undefined {
    const type = this.#type;
    const line = this.#line;
    const name = this.#cmd.name;
    const tmp = this.#p;
    const letter = type[this.#t++];
    if (letter === undefined) return `${name}: unknown type '-'\n`;
    while (isSpace(line[this.#p])) this.#p++;
    if (line[this.#p] !== '-') {
      if (type[this.#t] === 's') this.#t++;
      return undefined;
    }
    this.#p++;
    if (letter !== line[this.#p]) {
      if (!isValidOption(line[this.#p], type.slice(this.#t))) {
        // A bare '-' at the end makes QEMU print a NUL here, which cuts the line short.
        return `${name}: unsupported option -${line[this.#p] ?? '\0'}\n`;
      }
      // Another flag of this command: left for its own key.
      this.#p = tmp;
      return undefined;
    }
    if (type[this.#t] === 's') {
      this.#t++;
      const opt = line[this.#p++];
      const w = getStr(line, this.#p);
      if (!w) return `${name}: value expected for -${opt ?? '\0'}\n`;
      this.args.set(key, w.value);
      this.#p = w.end;
    } else {
      this.#p++;
      this.args.set(key, true);
    }
    return undefined;
  }
}

/**
 * monitor_parse_arguments() for the types our commands use (s, S, b and -x flags); prints
 * QEMU's message and returns undefined when the arguments do not parse.
 */
function parseArguments(
  cmd: CommandDef,
  line: string,
  at: number,
  out: MonitorOutput,
): Map<string, ArgValue> | undefined {
  const a = new ArgReader(cmd, line, at);
  for (let key = a.nextKey(); key !== undefined; key = a.nextKey()) {
    const c = a.nextType();
    const error =
      c === 's'
        ? a.word(key)
        : c === 'S'
          ? a.rest(key)
          : c === 'b'
            ? a.onOff(key)
            : c === '-'
              ? a.flag(key)
              : `${cmd.name}: unknown type '${c ?? '\0'}'\n`;
    if (error !== undefined) {
      out.printBytes(error);
      return undefined;
    }
  }
  const error = a.end();
  if (error !== undefined) {
    out.printBytes(error);
    return undefined;
  }
  return a.args;
}

/**
 * Parses one command line as handle_hmp_command() does, printing QEMU's messages for an
 * unknown command or bad arguments (followed by `Try "help <cmd>" ...`).
 */
export function parseCommandLine(
  line: string,
  table: readonly CommandDef[],
  out: MonitorOutput,
): ParseResult {
  const found = findCommand(line, 0, table, out);
  if (found === 'empty') return { kind: 'empty' };
  if (found === 'failed') return { kind: 'failed' };
  const args = parseArguments(found.cmd, line, found.pos, out);
  if (!args) {
    let end = found.pos;
    while (end > 0 && isSpace(line[end - 1])) end--;
    out.printBytes(`Try "help ${line.slice(0, end)}" for more information\n`);
    return { kind: 'failed' };
  }
  return { kind: 'command', cmd: found.cmd, args };
}
