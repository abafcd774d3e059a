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
  new HmpSession(stream, hmp).open(info.version);
}

/** One monitor's session: its readline, the input not yet handled, and the command running. */
class HmpSession {
  readonly #stream: Duplex;
  readonly #hmp: Hmp;
  readonly #rl: Readline;
  #closed = false;
  /** Input read and not yet handled: the rest of the last chunk, from `#pos`. */
  #input: Buffer | undefined;
  #pos = 0;
  #busy = false;
  #burst = 0;
  #yielding = false;

  constructor(stream: Duplex, hmp: Hmp) {
    this.#stream = stream;
    this.#hmp = hmp;
    // Readline and the banner print as monitor_printf does: \n goes out as \r\n.
    this.#rl = new Readline((bytes) => this.#write(bytes), completeLine);
  }

  /** CHR_EVENT_OPENED: the banner names QEMU_VERSION, without the package string. */
  open(version: string): void {
    const stream = this.#stream;
    this.#write(`QEMU ${version} monitor - type 'help' for more information\n`);
    this.#rl.showPrompt();
    stream.on('data', (chunk: Buffer | string) => {
      const bytes = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
      // Reading is paused while input is held, so the concat is only a guard.
      this.#input = this.#input ? Buffer.concat([this.#input.subarray(this.#pos), bytes]) : bytes;
      this.#pos = 0;
      this.#pump();
    });
    stream.on('drain', () => this.#pump());
    stream.on('end', () => this.#finish());
    stream.on('close', () => this.#gone());
    stream.on('error', () => this.#gone());
  }

  #writeRaw(bytes: string): void {
    if (!this.#closed && bytes) this.#stream.write(Buffer.from(bytes, 'latin1'));
  }

  #write(bytes: string): void {
    this.#writeRaw(bytes.replaceAll('\n', '\r\n'));
  }

  #finish(error?: Error): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#input = undefined;
    if (error) this.#stream.destroy(error);
    else this.#stream.end();
  }

  /** The stream closed or failed under the session: nothing more goes out. */
  #gone(): void {
    this.#closed = true;
    this.#input = undefined;
  }

  /** A command keeps the monitor suspended: its output, then the prompt, then more input. */
  async #runLine(line: string): Promise<void> {
    this.#busy = true;
    try {
      const r = await executeLine(this.#hmp, line, { interactive: true });
      this.#writeRaw(r.output);
      if (r.quit) {
        this.#finish();
        return;
      }
      this.#rl.showPrompt();
    } catch (e) {
      // HMP reports command errors as output: anything thrown here is a bug.
      this.#finish(e instanceof Error ? e : new InternalError(`HMP command threw ${String(e)}`));
      return;
    }
    this.#busy = false;
    this.#pump();
  }

  /**
   * Feeds held input to readline while no command runs and the client reads its output, a
   * burst at a time; reading from the stream stops while input is held.
   */
  #pump(): void {
    const stream = this.#stream;
    while (this.#input && !this.#busy && !this.#closed && !this.#yielding) {
      if (stream.writableLength > HMP_OUTPUT_LIMIT) break; // 'drain' calls pump again
      if (this.#burst >= BURST) {
        this.#yielding = true;
        setImmediate(() => {
          this.#yielding = false;
          this.#burst = 0;
          this.#pump();
        });
        break;
      }
      this.#burst++;
      const b = this.#input[this.#pos++]!;
      if (this.#pos === this.#input.length) {
        this.#input = undefined;
        this.#pos = 0;
      }
      const line = this.#rl.handleByte(b);
      if (line !== undefined) {
        this.#burst += 63;
        void this.#runLine(line);
      }
    }
    if (!this.#input) this.#burst = 0;
    if (this.#closed) return;
    if (this.#input) stream.pause();
    else stream.resume();
  }
}
