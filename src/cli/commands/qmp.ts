/**
 * `qmigrate qmp ADDR`: a shell for any QMP monitor (QEMU's or a qmigrate vm's), after QEMU's
 * python/qemu/qmp/qmp_shell.py. At a terminal: a prompt with history kept in a file, Tab
 * completion from the monitor's own schema, events printed above the line being typed.
 * Otherwise: one request per input line, one JSON reply per output line, an exit code.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { clearLine, createInterface, cursorTo, type Interface } from 'node:readline';
import { formatQmpEndpoint, parseQmpEndpoint } from '../../orchestrator/endpoint.js';
import type { QmpEndpoint } from '../../orchestrator/types.js';
import { stringifyJson } from '../../qapi/json.js';
import { QmpClient, readX509CredsDir } from '../../qmp/client.js';
import { ConnectError, ExecAbortedError, ProtocolError, QmpError } from '../../qmp/errors.js';
import type { QmpEvent } from '../../qmp/events.js';
import { type Completion, completeHmp, hmpCommandNames, QmpCompleter } from '../../qmp/shell-complete.js';
import { parseShellLine, type ShellLine } from '../../qmp/shell-syntax.js';
import { CliFailure, CliUsageError, PeerUnreachableError } from '../errors.js';

export interface QmpShellFlags {
  /** `-H`: each line is an HMP command, sent through human-monitor-command. */
  hmp?: boolean;
  /** `-p`: replies and events as indented JSON. */
  pretty?: boolean;
  /** `-v`: print each request before it is sent. */
  verbose?: boolean;
  history?: string;
  /** Seconds to wait for the connection and the monitor's greeting. */
  timeout: number;
  /** Where events go (default: the terminal at a terminal, stderr otherwise). */
  events?: 'stdout' | 'stderr';
  /** A credentials dir for a monitor with tls-creds (ca-cert.pem, client-cert.pem, ...). */
  tls?: string;
}

export interface ShellIo {
  input: NodeJS.ReadableStream;
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  /** Standard input is a terminal: prompt, history, completion. */
  interactive: boolean;
}

/** How many lines the history file keeps (qmp_shell.py keeps 1024 through readline). */
export const HISTORY_SIZE = 1000;

/**
 * Runs the shell on `addr` (a socket path, `unix:PATH`, `HOST:PORT` or `tcp:HOST:PORT`) and
 * resolves to the exit code. Input not a terminal: 0, or 1 when a command failed or the
 * monitor went away, 2 when a line could not be parsed (the shell goes on with the next
 * line). At a terminal: 0 when quit (Ctrl-D, Ctrl-C at an empty line, `quit`), 1 when the
 * monitor went away.
 * @throws {CliUsageError} for a bad address or --tls dir.
 * @throws {PeerUnreachableError} when no QMP session opens within the timeout.
 */
export async function runQmpShell(
  addr: string,
  flags: QmpShellFlags,
  io: ShellIo,
  signal?: AbortSignal,
): Promise<number> {
  const ep = endpointOf(addr, flags.tls);
  const events: { sink: (e: QmpEvent) => void } = { sink: () => {} };
  const client = await connectShell(ep, flags.timeout, signal, (e) => events.sink(e));
  try {
    const session = new Session(client, flags, io);
    events.sink = (e) => session.event(e);
    return io.interactive
      ? await interactive(session, historyPath(flags), io, signal)
      : await piped(session, io, signal);
  } finally {
    await client.close().catch(() => {});
  }
}

function endpointOf(addr: string, tlsDir: string | undefined): QmpEndpoint {
  let ep: QmpEndpoint;
  try {
    ep = parseQmpEndpoint(addr);
  } catch (e) {
    throw new CliUsageError((e as Error).message);
  }
  if (tlsDir === undefined) return ep;
  if (ep.kind !== 'tcp')
    throw new CliUsageError(`--tls applies to a monitor over TCP (HOST:PORT), not ${addr}`);
  try {
    return { ...ep, tls: readX509CredsDir(tlsDir) };
  } catch (e) {
    throw new CliUsageError(`--tls: ${(e as Error).message}`);
  }
}

async function connectShell(
  ep: QmpEndpoint,
  timeoutS: number,
  signal: AbortSignal | undefined,
  onEvent: (e: QmpEvent) => void,
): Promise<QmpClient> {
  try {
    return await QmpClient.connect(ep.kind === 'unix' ? ep.path : { host: ep.host, port: ep.port }, {
      timeout: timeoutS * 1000,
      signal,
      onEvent,
      // A raw {"exec-oob": ...} line needs the capability; QEMU offers it on every QMP monitor.
      oob: true,
      ...(ep.kind === 'tcp' && ep.tls ? { tls: ep.tls } : {}),
    });
  } catch (e) {
    if (signal?.aborted) throw signal.reason;
    if (!(e instanceof ConnectError)) throw e;
    // The client's own prefix names the address again (HOST:PORT, where HOST may be `::1`).
    let why = e.message.replace(/^cannot open a QMP session with (?:.*?:\d+|[^:]*): /, '');
    // A QEMU monitor's socket serves one client; the next waits in its backlog, ungreeted.
    // A TLS monitor reached without TLS waits, silent, for a ClientHello.
    if (why.startsWith('no QMP session within'))
      why += ` (a QEMU monitor serves one client at a time: is another one connected to it?${ep.kind === 'tcp' && !ep.tls ? ' A monitor with tls-creds needs --tls DIR.' : ''})`;
    throw new PeerUnreachableError(`cannot reach the monitor at ${formatQmpEndpoint(ep)}: ${why}`, {
      cause: e,
    });
  }
}

/** The history file: --history, else $XDG_STATE_HOME/qmigrate/ (default ~/.local/state). */
export function historyPath(flags: Pick<QmpShellFlags, 'history' | 'hmp'>): string {
  if (flags.history !== undefined) return flags.history;
  const state = process.env.XDG_STATE_HOME || join(homedir(), '.local', 'state');
  return join(state, 'qmigrate', flags.hmp ? 'hmp_history' : 'qmp_history');
}

/** A reply as the shell shows it, and whether the command succeeded. */
interface Outcome {
  reply: Record<string, unknown>;
  ok: boolean;
}

/** One QMP session seen through the shell: runs lines, formats replies and events. */
class Session {
  readonly client: QmpClient;
  readonly flags: QmpShellFlags;
  readonly io: ShellIo;
  /** Set once `quit` succeeded: the monitor closing then is what was asked for. */
  quitting = false;
  /** Why the session ended when the monitor sent something that is not QMP. */
  lost: ProtocolError | undefined;
  /** At a terminal: prints an event above the prompt and the line being typed. */
  showEvent: ((text: string) => void) | undefined;

  constructor(client: QmpClient, flags: QmpShellFlags, io: ShellIo) {
    this.client = client;
    this.flags = flags;
    this.io = io;
  }

  /** The request a line stands for: with -H, the whole line is an HMP command. */
  parse(line: string): ShellLine {
    // Blank lines and # comments are nothing with -H too (HMP has no command named #).
    if (!this.flags.hmp || line.trim() === '' || line.trim().startsWith('#')) return parseShellLine(line);
    return {
      kind: 'request',
      oob: false,
      command: 'human-monitor-command',
      arguments: { 'command-line': line.trim() },
    };
  }

  /**
   * Sends a request and waits for its reply (or `signal`).
   * @throws {ExecAbortedError} when `signal` aborts; the monitor may still run the command.
   * @throws {ExecInterruptedError} / {StateError} when the monitor has gone away.
   */
  async run(req: Extract<ShellLine, { kind: 'request' }>, signal?: AbortSignal): Promise<Outcome> {
    if (this.flags.verbose) {
      const msg: Record<string, unknown> = { [req.oob ? 'exec-oob' : 'execute']: req.command };
      if (req.arguments) msg.arguments = req.arguments;
      if (req.id) msg.id = req.id.value;
      this.io.stderr.write(`${this.format(msg)}\n`);
    }
    const id = req.id ? { id: req.id.value } : {};
    try {
      const ret = await this.client.executeRaw(req.command, req.arguments, { oob: req.oob, signal });
      const hmpQuit =
        req.command === 'human-monitor-command' &&
        /^(q|quit)\s*$/.test(String(req.arguments?.['command-line']));
      if (req.command === 'quit' || hmpQuit) this.quitting = true;
      return { reply: { return: ret, ...id }, ok: true };
    } catch (e) {
      if (!(e instanceof QmpError)) {
        // The client drops a session whose peer breaks QMP (e.g. a reply without an id).
        const cause = (e as Error).cause;
        if (cause instanceof ProtocolError) this.lost = cause;
        throw e;
      }
      return { reply: { error: { class: e.errorClass, desc: e.desc }, ...id }, ok: false };
    }
  }

  /** How the session ended, when it ended without a `quit`. */
  lostText(): string {
    return this.lost
      ? `the monitor ${this.lost.message.replace(/^peer /, '')}; the connection is closed`
      : 'the monitor closed the connection';
  }

  /** JSON as QEMU writes it on one line, or indented with -p. */
  format(value: unknown): string {
    return this.flags.pretty ? pretty(value, '') : stringifyJson(value);
  }

  event(e: QmpEvent): void {
    const to = this.flags.events;
    if (this.showEvent && to === undefined) {
      const t = e.timestamp;
      const at = t ? localTime(new Date(t.seconds * 1000 + t.microseconds / 1000)) : '';
      const data = e.data === undefined ? '' : ` ${this.format(e.data)}`;
      this.showEvent(`event ${e.event} at ${at}${data}`);
      return;
    }
    (to === 'stdout' ? this.io.stdout : this.io.stderr).write(`${this.format(e)}\n`);
  }
}

/** `HH:MM:SS.mmm` in local time: when an event happened, as a person at the terminal reads it. */
function localTime(d: Date): string {
  const two = (n: number) => String(n).padStart(2, '0');
  const ms = String(d.getMilliseconds()).padStart(3, '0');
  return `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}.${ms}`;
}

/** Indented JSON (two spaces), members in the order they came; leaves as QEMU writes them. */
function pretty(v: unknown, indent: string): string {
  const inner = `${indent}  `;
  if (Array.isArray(v)) {
    if (v.length === 0) return '[]';
    return `[\n${v.map((x) => inner + pretty(x, inner)).join(',\n')}\n${indent}]`;
  }
  if (v !== null && typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype) {
    const entries = Object.entries(v);
    if (entries.length === 0) return '{}';
    const body = entries.map(([k, x]) => `${inner}${stringifyJson(k)}: ${pretty(x, inner)}`);
    return `{\n${body.join(',\n')}\n${indent}}`;
  }
  return stringifyJson(v);
}

/**
 * Standard input is not a terminal: each line is one request; each reply is printed whole
 * (`{"return": ...}` or `{"error": ...}`) as one JSON line on stdout. A line that does not
 * parse is reported on stderr with its number and skipped.
 */
async function piped(session: Session, io: ShellIo, signal?: AbortSignal): Promise<number> {
  const rl = createInterface({ input: io.input, terminal: false, crlfDelay: Number.POSITIVE_INFINITY });
  signal?.addEventListener('abort', () => rl.close(), { once: true });
  let code = 0;
  let n = 0;
  try {
    for await (const text of rl) {
      n++;
      let req: ShellLine;
      try {
        req = session.parse(text);
      } catch (e) {
        io.stderr.write(`qmigrate: line ${n}: ${(e as Error).message} (not sent)\n`);
        code = 2;
        continue;
      }
      if (req.kind === 'empty') continue;
      const out = await runOrLost(session, req, n, signal);
      io.stdout.write(`${session.format(out.reply)}\n`);
      if (!out.ok && code === 0) code = 1;
    }
  } finally {
    rl.close();
  }
  return code;
}

/** Runs a request; a monitor that went away becomes a CliFailure saying so. */
async function runOrLost(
  session: Session,
  req: Extract<ShellLine, { kind: 'request' }>,
  n: number,
  signal?: AbortSignal,
): Promise<Outcome> {
  try {
    return await session.run(req, signal);
  } catch (e) {
    if (signal?.aborted) throw signal.reason;
    if (session.client.isClosed)
      throw new CliFailure(
        `line ${n}: ${session.lostText()}${session.quitting ? ' (after quit)' : ''}; '${req.command}' was not answered`,
        { cause: e },
      );
    throw e;
  }
}

/** The completer at a terminal: the monitor's own command names and schema. */
async function completerFor(session: Session, signal?: AbortSignal): Promise<(line: string) => Completion> {
  const c = session.client;
  if (session.flags.hmp) {
    const hmp = (line: string) =>
      c
        .executeRaw('human-monitor-command', { 'command-line': line }, { timeout: 5000, signal })
        .then(String, () => '');
    const names = hmpCommandNames(await hmp('help'), await hmp('help info'));
    return (line) => completeHmp(names, line);
  }
  const list = (command: string) =>
    c.executeRaw(command, undefined, { timeout: 10_000, signal }).then(
      (r) => (Array.isArray(r) ? (r as unknown[]) : []),
      () => [],
    );
  const commands = (await list('query-commands')).map((x) => String((x as { name?: unknown }).name));
  const completer = new QmpCompleter(commands, await list('query-qmp-schema'));
  return (line) => completer.complete(line);
}

function readHistory(path: string): string[] {
  try {
    const lines = readFileSync(path, 'utf8')
      .split('\n')
      .filter((l) => l.trim() !== '');
    return lines.slice(-HISTORY_SIZE).reverse();
  } catch {
    return [];
  }
}

/**
 * Adds `line` at the end of the history file (oldest first, owner-only when created), as a
 * line typed last: an earlier copy of it goes, and the file keeps its last HISTORY_SIZE lines.
 * The file is read again each time, so shells sharing it keep each other's lines.
 * @throws {Error} from the file system (the caller warns once).
 */
export function appendHistory(path: string, line: string): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  let lines: string[] = [];
  try {
    lines = readFileSync(path, 'utf8')
      .split('\n')
      .filter((l) => l.trim() !== '' && l !== line);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  lines.push(line);
  writeFileSync(path, `${lines.slice(-HISTORY_SIZE).join('\n')}\n`, { mode: 0o600 });
}

/** Readline's `history` listener: saves the line just entered; a failure is said once. */
function historyWriter(path: string, err: NodeJS.WritableStream): (history: string[]) => void {
  let warned = false;
  return (history) => {
    const line = history[0];
    if (line === undefined || line.trim() === '') return;
    try {
      appendHistory(path, line);
    } catch (e) {
      // After readline has ended the line being typed (it does right after this event).
      if (!warned) {
        const text = `qmigrate: cannot save the history in ${path}: ${(e as Error).message}\n`;
        queueMicrotask(() => err.write(text));
      }
      warned = true;
    }
  };
}

/** The prompt, the banner, and what the monitor's greeting says it is. */
function banner(session: Session): { prompt: string; text: string } {
  const { qemu: v, package: pkg } = session.client.greeting.QMP.version;
  const keys = 'Tab completes, Ctrl-C clears the line, Ctrl-D quits';
  return {
    prompt: session.flags.hmp ? '(qemu) ' : '(QEMU) ',
    text: `Connected to QEMU ${v.major}.${v.minor}.${v.micro}${pkg?.trim() ? ` (${pkg.trim()})` : ''}${session.flags.hmp ? ', HMP' : ''}. ${keys}.`,
  };
}

/**
 * At a terminal: a readline prompt. Lines run one at a time, in order; Ctrl-C clears the
 * line, or stops waiting for a reply, or (at an empty line) ends the shell, as Ctrl-D does.
 */
async function interactive(
  session: Session,
  history: string,
  io: ShellIo,
  signal?: AbortSignal,
): Promise<number> {
  // Before the prompt the terminal is not in raw mode: Ctrl-C is a SIGINT, which aborts `signal`.
  const complete = await completerFor(session, signal);
  if (signal?.aborted) throw signal.reason;
  const { prompt, text } = banner(session);
  io.stdout.write(`${text}\n`);
  const rl = createInterface({
    input: io.input,
    output: io.stdout,
    terminal: true,
    prompt,
    completer: (line: string) => complete(line),
    history: readHistory(history),
    historySize: HISTORY_SIZE,
    removeHistoryDuplicates: true,
  });
  rl.on('history', historyWriter(history, io.stderr));
  const state: ShellState = { busy: undefined, ended: false };
  session.showEvent = (line) => {
    if (state.busy) return void io.stdout.write(`${line}\n`);
    clearLine(io.stdout, 0);
    cursorTo(io.stdout, 0);
    io.stdout.write(`${line}\n`);
    rl.prompt(true);
  };
  return new Promise<number>((resolve) => {
    let done = false;
    const finish = (code: number) => {
      if (done) return;
      done = true;
      // A wait stopped here is the session's end (a signal, Ctrl-D, the monitor gone), no Ctrl-C.
      state.ended = true;
      state.busy?.abort();
      rl.removeAllListeners('close');
      rl.close();
      resolve(code);
    };
    signal?.addEventListener('abort', () => finish(1), { once: true });
    // A tick later: the waiting command's rejection (which says why) has been seen.
    void session.client.closed.then(() =>
      setImmediate(() => {
        if (done) return;
        // Over the prompt the shell wrote after the last reply.
        clearLine(io.stdout, 0);
        cursorTo(io.stdout, 0);
        if (session.quitting) io.stdout.write('The monitor quit.\n');
        else io.stderr.write(`qmigrate: ${session.lostText()}\n`);
        finish(session.quitting ? 0 : 1);
      }),
    );
    rl.on('close', () => finish(0));
    rl.on('SIGINT', () => onCtrlC(rl, state, io, () => finish(0)));
    wireLines(rl, session, state);
    rl.prompt();
  });
}

/** What the prompt's handlers share: the wait for a reply under way, and whether the shell ended. */
interface ShellState {
  busy: AbortController | undefined;
  ended: boolean;
}

/** Ctrl-C: stop waiting for a reply; else clear the line; else (an empty line) end. */
function onCtrlC(rl: Interface, state: ShellState, io: ShellIo, end: () => void): void {
  if (state.busy) {
    state.busy.abort();
    return;
  }
  if (rl.line === '') {
    io.stdout.write('\n');
    end();
    return;
  }
  // As a shell does: the line stays on screen with ^C after it, and a new prompt starts
  // below (readline redraws from the row the cursor is on).
  rl.write(null, { ctrl: true, name: 'e' });
  io.stdout.write('^C\n');
  rl.write(null, { ctrl: true, name: 'u' });
}

/** Runs the lines typed, one at a time and in order, and prompts again when all are done. */
function wireLines(rl: Interface, session: Session, state: ShellState) {
  const queue: string[] = [];
  const io = session.io;
  const pump = async () => {
    if (state.busy) return;
    while (queue.length) {
      const line = queue.shift()!;
      let req: ShellLine;
      try {
        req = session.parse(line);
      } catch (e) {
        io.stdout.write(`error: ${(e as Error).message} (nothing sent)\n`);
        continue;
      }
      if (req.kind === 'empty') continue;
      const stop = new AbortController();
      state.busy = stop;
      try {
        const out = await session.run(req, stop.signal);
        io.stdout.write(show(session, out));
      } catch (e) {
        if (session.client.isClosed || state.ended) return;
        queue.length = 0;
        io.stdout.write(
          e instanceof ExecAbortedError
            ? `^C: stopped waiting for '${req.command}'; the monitor may still run it (its reply will be dropped)\n`
            : `error: ${(e as Error).message}\n`,
        );
      } finally {
        state.busy = undefined;
      }
    }
    if (!state.ended) rl.prompt();
  };
  rl.on('line', (line) => {
    queue.push(line);
    void pump();
  });
}

/** A reply as a person reads it: the return value (HMP: its text), or `error: Class: desc`. */
function show(session: Session, out: Outcome): string {
  if (!out.ok) {
    const e = out.reply.error as { class: string; desc: string };
    return `error: ${e.class}: ${e.desc}\n`;
  }
  const ret = out.reply.return;
  if (session.flags.hmp && typeof ret === 'string') {
    const text = ret.replace(/\r\n/g, '\n');
    return text === '' || text.endsWith('\n') ? text : `${text}\n`;
  }
  return `${session.format(ret)}\n`;
}
