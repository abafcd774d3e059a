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
 * monitor_parse_arguments() for the types our commands use (s, S, b and -x flags); prints
 * QEMU's message and returns undefined when the arguments do not parse.
 */
function parseArguments(
  cmd: CommandDef,
  line: string,
  at: number,
  out: MonitorOutput,
): Map<string, ArgValue> | undefined {
  const args = new Map<string, ArgValue>();
  const type = cmd.argsType;
  let t = 0;
  let p = at;
  for (;;) {
    // key_get_info(): an optional ',' then `key:`.
    if (type[t] === ',') t++;
    const colon = type.indexOf(':', t);
    if (colon < 0) break;
    const key = type.slice(t, colon);
    t = colon + 1;
    const c = type[t++];
    switch (c) {
      case 's': {
        while (isSpace(line[p])) p++;
        if (type[t] === '?') {
          t++;
          if (p >= line.length) break;
        }
        const w = getStr(line, p);
        if (!w) {
          out.printBytes(`${cmd.name}: string expected\n`);
          return undefined;
        }
        args.set(key, w.value);
        p = w.end;
        break;
      }
      case 'S': {
        while (isSpace(line[p])) p++;
        if (type[t] === '?') {
          t++;
          if (p >= line.length) break;
        }
        if (p >= line.length) {
          out.printBytes(`${cmd.name}: string expected\n`);
          return undefined;
        }
        args.set(key, line.slice(p));
        p = line.length;
        break;
      }
      case 'b': {
        while (isSpace(line[p])) p++;
        const beg = p;
        while (isGraph(line[p])) p++;
        const word = line.slice(beg, p);
        if (word === 'on') args.set(key, true);
        else if (word === 'off') args.set(key, false);
        else {
          out.printBytes("Expected 'on' or 'off'\n");
          return undefined;
        }
        break;
      }
      case '-': {
        const tmp = p;
        const letter = type[t++];
        if (letter === undefined) {
          out.printBytes(`${cmd.name}: unknown type '${c}'\n`);
          return undefined;
        }
        while (isSpace(line[p])) p++;
        if (line[p] === '-') {
          p++;
          let skip = false;
          if (letter !== line[p]) {
            if (!isValidOption(line[p], type.slice(t))) {
              // A bare '-' at the end makes QEMU print a NUL here, which cuts the line short.
              out.printBytes(`${cmd.name}: unsupported option -${line[p] ?? '\0'}\n`);
              return undefined;
            }
            skip = true;
          }
          if (skip) p = tmp;
          else if (type[t] === 's') {
            t++;
            const opt = line[p++];
            const w = getStr(line, p);
            if (!w) {
              out.printBytes(`${cmd.name}: value expected for -${opt ?? '\0'}\n`);
              return undefined;
            }
            args.set(key, w.value);
            p = w.end;
          } else {
            p++;
            args.set(key, true);
          }
        } else if (type[t] === 's') t++;
        break;
      }
      default:
        out.printBytes(`${cmd.name}: unknown type '${c ?? '\0'}'\n`);
        return undefined;
    }
  }
  while (isSpace(line[p])) p++;
  if (p < line.length) {
    out.printBytes(`${cmd.name}: extraneous characters at the end of line\n`);
    return undefined;
  }
  return args;
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
