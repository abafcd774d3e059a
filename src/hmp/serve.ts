/**
 * An interactive HMP monitor on a byte stream, as QEMU 10.0 runs `-monitor
 * unix:PATH,server=on,wait=off` or `-monitor stdio`: banner and prompt on connect, readline
 * echo, commands run one at a time with input held back meanwhile, `\r\n` line ends, and
 * TAB completion (qemu/qemu: monitor/hmp.c monitor_event, monitor_read, monitor_command_cb,
 * monitor_find_completion; migration/migration-hmp-cmds.c *_completion).
 */
import type { Duplex } from 'node:stream';
import { InternalError } from '../errors.js';
import { schema } from '../qapi/schema.js';
import { isSpace } from './bytes.js';
import { type CommandDef, compareCmd, HMP_COMMANDS } from './commands.js';
import { executeLine, type Hmp } from './hmp.js';
import { PARAMETER_NAMES } from './params.js';
import { MAX_ARGS, splitWords } from './parse.js';
import { type Completions, Readline } from './readline.js';

/** monitor_find_completion_by_table(). */
function completeByTable(table: readonly CommandDef[], args: string[]): Completions | undefined {
  if (args.length <= 1) {
    const name = args[0] ?? '';
    const items: string[] = [];
    for (const cmd of table) {
      for (const alias of cmd.name.split('|')) if (alias.startsWith(name)) items.push(alias.slice(0, 126));
    }
    return { index: name.length, items };
  }
  const cmd = table.find((c) => compareCmd(args[0]!, c.name));
  if (!cmd) return undefined;
  if (cmd.subTable) return completeByTable(cmd.subTable, args.slice(1));
  const str = args[args.length - 1]!;
  const of = (names: readonly string[]) => ({
    index: str.length,
    items: names.filter((n) => n.startsWith(str)),
  });
  if (cmd.completion === 'capability') {
    if (args.length === 2) return of(schema.enumValues('MigrationCapability'));
    if (args.length === 3) return of(['on', 'off']);
    return { index: str.length, items: [] };
  }
  if (cmd.completion === 'parameter') {
    return args.length === 2 ? of(PARAMETER_NAMES) : { index: str.length, items: [] };
  }
  // help's argument is itself a command line.
  if (cmd.id === 'help') return completeByTable(HMP_COMMANDS, args.slice(1));
  return undefined;
}

/** monitor_find_completion(): complete the word under the cursor of `line` (bytes). */
export function completeLine(line: string): Completions | undefined {
  const args = splitWords(line);
  if (!args) return undefined;
  if (line.length > 0 && isSpace(line[line.length - 1])) {
    if (args.length >= MAX_ARGS) return undefined;
    args.push('');
  }
  return completeByTable(HMP_COMMANDS, args);
}

/**
 * Unsent output past which the monitor stops taking input until the client reads. QEMU has no
 * such limit: its echo redraws the whole line for every byte typed, and a client that types
 * long lines and never reads grows QEMU 10.0 by 25 to 50 MiB a second, for good.
 */
export const HMP_OUTPUT_LIMIT = 64 << 10;

/** Input bytes (a command line counts 64) handled before the monitor lets others run. */
const BURST = 4096;

/**
 * An interactive monitor on a byte stream (unix socket or stdio), as QEMU's `-monitor
 * unix:...,server=on,wait=off` / `-monitor stdio` behaves: banner, `(qemu) ` prompt,
 * readline echo, CRLF, output; `quit` ends it.
 *
 * Input is taken from the stream only while no command runs (QEMU suspends the monitor) and
 * the client reads its output; otherwise reading stops, so the bytes wait in the kernel.
 *
 * Backend failures that are not QMP errors end the session (the stream is destroyed with
 * the error).
 */
export function serveHmp(stream: Duplex, hmp: Hmp, info: { version: string }): void {
  let closed = false;
  const writeRaw = (bytes: string) => {
    if (!closed && bytes) stream.write(Buffer.from(bytes, 'latin1'));
  };
  // Readline and the banner print as monitor_printf does: \n goes out as \r\n.
  const write = (bytes: string) => writeRaw(bytes.replaceAll('\n', '\r\n'));
  const rl = new Readline(write, completeLine);
  /** Input read and not yet handled: the rest of the last chunk, from `pos`. */
  let input: Buffer | undefined;
  let pos = 0;
  let busy = false;
  let burst = 0;
  let yielding = false;

  const finish = (error?: Error) => {
    if (closed) return;
    closed = true;
    input = undefined;
    if (error) stream.destroy(error);
    else stream.end();
  };

  // A command keeps the monitor suspended: its output, then the prompt, then more input.
  const runLine = async (line: string) => {
    busy = true;
    try {
      const r = await executeLine(hmp, line, { interactive: true });
      writeRaw(r.output);
      if (r.quit) {
        finish();
        return;
      }
      rl.showPrompt();
    } catch (e) {
      // HMP reports command errors as output: anything thrown here is a bug.
      finish(e instanceof Error ? e : new InternalError(`HMP command threw ${String(e)}`));
      return;
    }
    busy = false;
    pump();
  };

  const pump = () => {
    while (input && !busy && !closed && !yielding) {
      if (stream.writableLength > HMP_OUTPUT_LIMIT) break; // 'drain' calls pump again
      if (burst >= BURST) {
        yielding = true;
        setImmediate(() => {
          yielding = false;
          burst = 0;
          pump();
        });
        break;
      }
      burst++;
      const b = input[pos++]!;
      if (pos === input.length) {
        input = undefined;
        pos = 0;
      }
      const line = rl.handleByte(b);
      if (line !== undefined) {
        burst += 63;
        void runLine(line);
      }
    }
    if (!input) burst = 0;
    if (closed) return;
    if (input) stream.pause();
    else stream.resume();
  };

  // CHR_EVENT_OPENED: the banner names QEMU_VERSION, without the package string.
  write(`QEMU ${info.version} monitor - type 'help' for more information\n`);
  rl.showPrompt();

  stream.on('data', (chunk: Buffer | string) => {
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
    // Reading is paused while input is held, so the concat is only a guard.
    input = input ? Buffer.concat([input.subarray(pos), bytes]) : bytes;
    pos = 0;
    pump();
  });
  stream.on('drain', pump);
  stream.on('end', () => finish());
  stream.on('close', () => {
    closed = true;
    input = undefined;
  });
  stream.on('error', () => {
    closed = true;
    input = undefined;
  });
}
