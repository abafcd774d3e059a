/**
 * The human monitor (HMP) for migration: parses a command line as QEMU 10.0 does and runs it
 * through QMP commands on a backend, exactly as QEMU's hmp_* handlers call their qmp_*
 * functions, printing what QEMU prints (qemu/qemu: monitor/hmp.c handle_hmp_command and
 * help_cmd, monitor/hmp-cmds.c, migration/migration-hmp-cmds.c, monitor/qmp-cmds.c
 * qmp_human_monitor_command).
 */
import { QapiError } from '../qapi/errors.js';
import { parseObjectOption } from '../qapi/object-option.js';
import { schema } from '../qapi/schema.js';
import type {
  Memdev,
  MigrationCapabilityStatus,
  MigrationChannel,
  MigrationInfo,
  MigrationParameters,
  ObjectOptions,
  StatusInfo,
  VersionInfo,
} from '../qapi/types.js';
import { uriToChannel } from '../qapi/uri.js';
import { fromBytes, MonitorOutput, toBytes } from './bytes.js';
import { type CommandDef, type CommandId, compareCmd, HMP_COMMANDS } from './commands.js';
import {
  formatCapabilities,
  formatInfoMigrate,
  formatMemdevs,
  formatParameters,
  formatStatus,
  formatVersion,
} from './format.js';
import { type HmpError, parameterArgs } from './params.js';
import { type ArgValue, parseCommandLine, splitWords } from './parse.js';

/** Where HMP sends its QMP commands. */
export interface HmpBackend {
  /** Runs a QMP command; resolves to its `return` value or rejects with a QapiError (src/qapi/errors.ts). */
  execute(command: string, args?: Record<string, unknown>): Promise<unknown>;
}

/** How a line is run: `interactive` is a readline monitor, which may wait for `migrate`. */
export interface ExecOptions {
  interactive: boolean;
  /** Poll interval of a synchronous `migrate` (QEMU: 1000 ms). */
  pollMs?: number;
}

/** The output of one line as a byte string, and whether it was `quit`. */
export interface ExecResult {
  output: string;
  quit: boolean;
}

/** A QMP error as HMP sees it: QapiError, or any error carrying QMP's `desc`. */
function qmpErrorDesc(e: unknown): string | undefined {
  if (e instanceof QapiError) return e.desc;
  if (e instanceof Error && 'desc' in e && typeof e.desc === 'string') return e.desc;
  return undefined;
}

const FAILED = Symbol('failed');

let execLine: (hmp: Hmp, line: string, options: ExecOptions) => Promise<ExecResult>;

/**
 * Runs a byte-string line on `hmp` as a readline monitor or as `human-monitor-command` does;
 * for serve.ts, which drives an interactive monitor.
 * @throws whatever the backend throws that is not a QMP error.
 */
export function executeLine(hmp: Hmp, line: string, options: ExecOptions): Promise<ExecResult> {
  return execLine(hmp, line, options);
}

export class Hmp {
  readonly #backend: HmpBackend;
  readonly #version: string;
  /** Lines run one at a time, as the monitor does. */
  #queue: Promise<unknown> = Promise.resolve();

  static {
    execLine = (hmp, line, options) => hmp.#enqueue(line, options);
  }

  constructor(backend: HmpBackend, info: { version: string }) {
    this.#backend = backend;
    this.#version = info.version;
  }

  /**
   * Runs one command line; resolves to exactly the text QEMU 10.0's `human-monitor-command`
   * returns for it (\r\n line ends).
   * @throws the backend's rejection when it is not a QMP error (e.g. a lost connection).
   */
  async run(commandLine: string): Promise<string> {
    const r = await this.#enqueue(toBytes(commandLine), { interactive: false });
    return fromBytes(r.output);
  }

  #enqueue(line: string, options: ExecOptions): Promise<ExecResult> {
    const next = this.#queue.then(() => this.#exec(line, options));
    this.#queue = next.catch(() => undefined);
    return next;
  }

  async #exec(line: string, options: ExecOptions): Promise<ExecResult> {
    const out = new MonitorOutput();
    const parsed = parseCommandLine(line, HMP_COMMANDS, out);
    let quit = false;
    if (parsed.kind === 'command') quit = await this.#dispatch(parsed.cmd, parsed.args, out, options);
    return { output: out.take(), quit };
  }

  /** Calls QMP; a QMP error is printed as hmp_handle_error() does and yields FAILED. */
  async #call(out: MonitorOutput, command: string, args?: Record<string, unknown>): Promise<unknown> {
    try {
      return await this.#backend.execute(command, args);
    } catch (e) {
      const desc = qmpErrorDesc(e);
      if (desc === undefined) throw e;
      out.print(`Error: ${desc}\n`);
      return FAILED;
    }
  }

  /** Calls QMP for a handler that passes NULL as errp: errors vanish. */
  async #callIgnoringErrors(command: string): Promise<void> {
    try {
      await this.#backend.execute(command);
    } catch (e) {
      if (qmpErrorDesc(e) === undefined) throw e;
    }
  }

  /**
   * Runs a parsed command through its handler (hmp-commands.hx), printing into `out`.
   * @returns true for `quit`.
   */
  async #dispatch(
    cmd: CommandDef,
    args: Map<string, ArgValue>,
    out: MonitorOutput,
    options: ExecOptions,
  ): Promise<boolean> {
    const str = (key: string) => args.get(key) as string;
    switch (cmd.id) {
      case 'help': {
        const name = args.get('name');
        helpCmd(out, typeof name === 'string' ? name : undefined);
        break;
      }
      case 'info':
        helpCmd(out, 'info');
        break;
      case 'migrate':
        await this.#migrate(
          out,
          str('uri'),
          args.get('detach') === true,
          args.get('resume') === true,
          options,
        );
        break;
      case 'migrate_incoming': {
        const channel = channelOf(out, str('uri'));
        if (channel)
          await this.#call(out, 'migrate-incoming', { channels: [channel], 'exit-on-error': false });
        break;
      }
      case 'migrate_cancel':
        await this.#callIgnoringErrors('migrate_cancel');
        break;
      // hmp_migrate_pause(), hmp_migrate_recover(), hmp_migrate_start_postcopy(): QMP, errors printed.
      case 'migrate_pause':
        await this.#call(out, 'migrate-pause');
        break;
      case 'migrate_recover':
        await this.#call(out, 'migrate-recover', { uri: fromBytes(str('uri')) });
        break;
      case 'migrate_start_postcopy':
        await this.#call(out, 'migrate-start-postcopy');
        break;
      case 'migrate_set_capability':
        await this.#migrateSetCapability(out, str('capability'), args.get('state') === true);
        break;
      case 'migrate_set_parameter': {
        const r = parameterArgs(fromBytes(str('parameter')), fromBytes(str('value')));
        if (r.ok) await this.#call(out, 'migrate-set-parameters', r.args);
        else printError(out, r.error);
        break;
      }
      case 'object_add':
        await this.#objectAdd(out, fromBytes(str('object')));
        break;
      case 'object_del':
        await this.#call(out, 'object-del', { id: fromBytes(str('id')) });
        break;
      case 'stop':
        await this.#callIgnoringErrors('stop');
        break;
      case 'cont':
        await this.#call(out, 'cont');
        break;
      case 'quit':
        await this.#callIgnoringErrors('quit');
        return true;
      case 'info memdev':
      case 'info migrate':
      case 'info migrate_capabilities':
      case 'info migrate_parameters':
      case 'info status':
      case 'info version':
        await this.#info(cmd.id, out);
        break;
    }
    return false;
  }

  /** `object_add TEXT`: -object's syntax (keyval or JSON), then object-add (qom/qom-hmp-cmds.c). */
  async #objectAdd(out: MonitorOutput, text: string): Promise<void> {
    let opts: ObjectOptions;
    try {
      opts = parseObjectOption(text);
    } catch (e) {
      if (!(e instanceof QapiError)) throw e;
      out.print(`Error: ${e.message}\n`);
      return;
    }
    await this.#call(out, 'object-add', opts as unknown as Record<string, unknown>);
  }

  /** The `info` commands (hmp-commands-info.hx): a query, printed as QEMU prints it. */
  async #info(id: CommandId, out: MonitorOutput): Promise<void> {
    switch (id) {
      case 'info memdev': {
        const memdevs = await this.#call(out, 'query-memdev');
        if (memdevs !== FAILED) out.print(formatMemdevs(memdevs as Memdev[]));
        break;
      }
      case 'info migrate': {
        const info = await this.#call(out, 'query-migrate');
        if (info !== FAILED) out.print(formatInfoMigrate(info as MigrationInfo));
        break;
      }
      case 'info migrate_capabilities': {
        const caps = await this.#call(out, 'query-migrate-capabilities');
        if (caps !== FAILED) out.print(formatCapabilities(caps as MigrationCapabilityStatus[]));
        break;
      }
      case 'info migrate_parameters': {
        const params = await this.#call(out, 'query-migrate-parameters');
        if (params !== FAILED) out.print(formatParameters(params as MigrationParameters));
        break;
      }
      case 'info status': {
        const st = await this.#call(out, 'query-status');
        if (st !== FAILED) out.print(formatStatus(st as StatusInfo));
        break;
      }
      case 'info version':
        try {
          out.print(formatVersion((await this.#backend.execute('query-version')) as VersionInfo));
        } catch (e) {
          // A backend without query-version still knows which QEMU it stands in for.
          if (e instanceof QapiError && e.errorClass === 'CommandNotFound') out.print(`${this.#version}\n`);
          else {
            const desc = qmpErrorDesc(e);
            if (desc === undefined) throw e;
            out.print(`Error: ${desc}\n`);
          }
        }
        break;
    }
  }

  /** hmp_migrate_set_capability(): the name must be a MigrationCapability. */
  async #migrateSetCapability(out: MonitorOutput, cap: string, state: boolean): Promise<void> {
    if (!schema.enumValues('MigrationCapability').includes(fromBytes(cap))) {
      out.printBytes(`Error: invalid parameter value: ${cap}\n`);
      return;
    }
    await this.#call(out, 'migrate-set-capabilities', {
      capabilities: [{ capability: fromBytes(cap), state }],
    });
  }

  /** hmp_migrate(): channels from the URI, then wait unless -d (readline monitors only). */
  async #migrate(out: MonitorOutput, uri: string, detach: boolean, resume: boolean, options: ExecOptions) {
    const channel = channelOf(out, uri);
    if (!channel) return;
    if ((await this.#call(out, 'migrate', { channels: [channel], resume })) === FAILED) return;
    if (detach) return;
    if (!options.interactive) {
      // monitor_suspend() fails on a monitor without readline, such as human-monitor-command.
      out.print('terminal does not allow synchronous migration, continuing detached\n');
      return;
    }
    // hmp_migrate_status_cb(): poll until the status leaves setup/active. A failure's
    // error-desc goes to QEMU's stderr (error_report outside the monitor), not to the monitor.
    for (;;) {
      let info: MigrationInfo;
      try {
        info = (await this.#backend.execute('query-migrate')) as MigrationInfo;
      } catch (e) {
        if (qmpErrorDesc(e) === undefined) throw e;
        return;
      }
      if (info.status !== undefined && info.status !== 'setup' && info.status !== 'active') return;
      await new Promise((r) => setTimeout(r, options.pollMs ?? 1000));
    }
  }
}

/** migrate_uri_parse() as HMP uses it: the error is printed and undefined returned. */
function channelOf(out: MonitorOutput, uri: string): MigrationChannel | undefined {
  try {
    return uriToChannel(fromBytes(uri));
  } catch (e) {
    if (!(e instanceof QapiError)) throw e;
    out.print(`Error: ${e.desc}\n`);
    return undefined;
  }
}

/** error_reportf_err(err, "Error: "): the message, then the hint if there is one. */
function printError(out: MonitorOutput, e: HmpError): void {
  out.print(`Error: ${e.message}\n${e.hint ?? ''}`);
}

/** help_cmd(): `help`, `help CMD...`, `info` (the info table). Words past 16 print nothing. */
function helpCmd(out: MonitorOutput, name: string | undefined): void {
  let words: string[] = [];
  if (name !== undefined) {
    const w = splitWords(name);
    if (!w) return;
    words = w;
  }
  helpDump(out, HMP_COMMANDS, words, 0);
}

function helpDump(out: MonitorOutput, table: readonly CommandDef[], words: string[], index: number): void {
  const dumpOne = (cmd: CommandDef) => {
    const prefix = words
      .slice(0, index)
      .map((w) => `${w} `)
      .join('');
    out.printBytes(`${prefix}${cmd.name} ${cmd.params} -- ${cmd.help}\n`);
  };
  const word = words[index];
  if (word === undefined) {
    for (const cmd of table) dumpOne(cmd);
    return;
  }
  const cmd = table.find((c) => compareCmd(word, c.name));
  if (!cmd) {
    out.printBytes(`unknown command: '${words.slice(0, index + 1).join(' ')}'\n`);
    return;
  }
  if (cmd.subTable) helpDump(out, cmd.subTable, words, index + 1);
  else dumpOne(cmd);
}
