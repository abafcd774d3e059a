/**
 * A QMP server, wire-compatible with QEMU 10.0's monitor/qmp.c: greeting, capabilities
 * negotiation, in-band commands one at a time per session and OOB ones at once, replies and
 * events written byte for byte as QEMU writes them, on unix and tcp sockets or any duplex
 * stream (stdio). Malformed input is answered as QEMU answers it (see qapi/json-stream.ts). A
 * session reads no further than QEMU's request queue allows, nor while its client leaves
 * replies unread.
 */

import { createServer, type Server, type Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { checkCommand } from '../qapi/check.js';
import { QapiError } from '../qapi/errors.js';
import { introspect } from '../qapi/introspect.js';
import { stringifyJson } from '../qapi/json.js';
import { JsonStreamer, type StreamItem } from '../qapi/json-stream.js';
import type { EventName, Events, VersionInfo } from '../qapi/types.js';
import { socketListen } from '../util/sockets.js';
import { type Dispatcher, type Reply, reply, type SessionContext } from './dispatch.js';
import { QmpServerError } from './errors.js';
import { QmpProtocol } from './protocol.js';

/** Where a monitor listens, in the shape QEMU's socket chardev options give. */
export type ListenSpec =
  | { kind: 'unix'; path: string; wait?: boolean; abstract?: boolean; tight?: boolean }
  | { kind: 'tcp'; host: string; port: number; wait?: boolean }
  | { kind: 'stdio' };

export interface QmpServerOptions {
  dispatcher: Dispatcher;
  version: VersionInfo;
  /** Advertise and allow out-of-band execution (QEMU does; default true). */
  oob?: boolean;
}

/** QEMU's event timestamp: wall-clock seconds and microseconds. */
function timestamp(): { seconds: number; microseconds: number } {
  const us = Math.floor((performance.timeOrigin + performance.now()) * 1000);
  return { seconds: Math.floor(us / 1e6), microseconds: us % 1e6 };
}

export class QmpServer {
  readonly dispatcher: Dispatcher;
  readonly #options: QmpServerOptions;
  readonly #sessions = new Set<QmpSession>();
  readonly #listeners: Server[] = [];
  #counter = 0;

  constructor(options: QmpServerOptions) {
    this.#options = options;
    this.dispatcher = options.dispatcher;
    const schemaInfo = introspect(this.dispatcher.schema);
    const d = this.dispatcher;
    if (!d.has('query-version')) d.register('query-version', () => options.version);
    if (!d.has('query-commands')) d.register('query-commands', () => d.commands.map((name) => ({ name })));
    if (!d.has('query-qmp-schema')) d.register('query-qmp-schema', () => schemaInfo as never);
    // Only reached after negotiation, where QEMU answers it with CommandNotFound.
    d.register('qmp_capabilities', () => {
      throw new QapiError('Capabilities negotiation is already complete, command ignored', 'CommandNotFound');
    });
  }

  get greeting(): { QMP: { version: VersionInfo; capabilities: string[] } } {
    return {
      QMP: { version: this.#options.version, capabilities: this.#options.oob === false ? [] : ['oob'] },
    };
  }

  /**
   * Starts listening. With `wait: true` resolves only once the first client has connected,
   * as QEMU's `wait=on` holds start-up until then.
   * @throws {SocketError} with QEMU's texts (path too long, `Failed to bind socket ...`).
   */
  async listen(spec: ListenSpec): Promise<{ address: string }> {
    if (spec.kind === 'stdio') {
      this.attach(Duplex.from({ readable: process.stdin, writable: process.stdout }), 'stdio');
      return { address: 'stdio' };
    }
    const server = createServer((sock: Socket) => this.attach(sock, `${describe(spec)}#${++this.#counter}`));
    // As `qmigrate vm`'s monitors (vm/chardev.ts MONITOR_MAX_CLIENTS): a connection past this
    // many at once is closed.
    server.maxConnections = QMP_MAX_CLIENTS;
    const first = new Promise<void>((res) => server.once('connection', () => res()));
    await socketListen(
      server,
      spec.kind === 'unix'
        ? { type: 'unix', path: spec.path, abstract: spec.abstract, tight: spec.tight }
        : { type: 'inet', host: spec.host, port: String(spec.port) },
    );
    this.#listeners.push(server);
    if ('wait' in spec && spec.wait) await first;
    const addr = server.address();
    return { address: typeof addr === 'string' ? `unix:${addr}` : `tcp:${addr?.address}:${addr?.port}` };
  }

  /** Serves QMP on an already connected stream. */
  attach(stream: Duplex, name = `session#${++this.#counter}`): QmpSession {
    const s = new QmpSession(this, stream, name, this.#options.oob !== false, (x) =>
      this.#sessions.delete(x),
    );
    this.#sessions.add(s);
    return s;
  }

  /** Sends an event to every negotiated session. */
  emit<N extends EventName>(event: N, data?: Events[N]): void {
    const msg: Record<string, unknown> = { timestamp: timestamp(), event };
    if (data !== undefined && Object.keys(data).length) msg.data = data;
    for (const s of this.#sessions) s.event(msg);
  }

  /** Stops listening and closes every session. */
  async close(): Promise<void> {
    for (const l of this.#listeners) l.close();
    await Promise.all([...this.#sessions].map((s) => s.close().catch(() => {})));
  }
}

function describe(spec: ListenSpec): string {
  return spec.kind === 'unix'
    ? `unix:${spec.path}`
    : spec.kind === 'tcp'
      ? `tcp:${spec.host}:${spec.port}`
      : 'stdio';
}

/** Clients a QmpServer listener serves at once (QEMU: one per chardev, the next ones wait). */
export const QMP_MAX_CLIENTS = 16;

/**
 * QEMU's QMP_REQ_QUEUE_LEN_MAX (include/monitor/monitor.h, used in monitor/qmp.c): with OOB
 * enabled, a session stops reading once this many in-band requests wait behind the one
 * running; without OOB it reads the next request only when the last one has been answered.
 * Measured on QEMU 10.0: an `exec-oob` sent behind K slow in-band requests is answered after
 * K - 8 of them.
 */
export const QMP_REQ_QUEUE_LEN_MAX = 8;

/**
 * Reply bytes a client has not taken past which its session stops reading requests, until
 * they drain. QEMU has no such limit: it keeps reading (one byte per read) and keeps every
 * reply in memory (measured on QEMU 10.0: a client that pipelined 400 k `query-status` and
 * read nothing for 20 s got all 400 k replies once it read).
 */
export const QMP_OUTPUT_SOFT_LIMIT = 64 << 10;

/**
 * Unsent bytes past which a session is dropped, when a message joins output already past the
 * soft limit. Reading stops at the soft limit, so only events (and the replies of the few
 * requests queued then) pile up past it, for a client that reads nothing at all; QEMU would
 * hold them until it disconnects.
 */
export const QMP_OUTPUT_HARD_LIMIT = 16 << 20;

/**
 * In-band items handled back to back before the session yields to the event loop, so that one
 * busy session cannot hold up the other monitors or a migration.
 */
const BURST = 64;

type ParsedRequest = ReturnType<Dispatcher['parseRequest']>;

/** An in-band item: a request to run, or an error reply decided when it was read. */
type InBand = { request: ParsedRequest; id: unknown } | { reply: Reply };

/** One client connection. */
export class QmpSession extends QmpProtocol implements SessionContext {
  readonly name: string;
  readonly fds: number[] = [];
  readonly #server: QmpServer;
  readonly #streamer: JsonStreamer;
  readonly #allowOob: boolean;
  readonly #onGone: (s: QmpSession) => void;
  #negotiated = false;
  #oob = false;
  /**
   * In-band items wait here and run one after another, as in QEMU's monitor, drained by
   * #service(); a flat queue, so each costs the same whatever is ahead of it.
   */
  #queue: InBand[] = [];
  /** An in-band request is executing. */
  #running = false;
  /** Out-of-band requests executing. */
  #oobRunning = 0;
  /** The part of the last chunk read not yet fed to the streamer (reading is paused meanwhile). */
  #input: Buffer | undefined;
  /** Items handled since the session last yielded to the event loop. */
  #burst = 0;
  #yielding = false;
  #servicing = false;

  constructor(
    server: QmpServer,
    stream: Duplex,
    name: string,
    allowOob: boolean,
    onGone: (s: QmpSession) => void,
  ) {
    super();
    this.#server = server;
    this.name = name;
    this.#allowOob = allowOob;
    this.#onGone = onGone;
    this.#streamer = new JsonStreamer((item) => this.#onItem(item));
    this.attach(stream);
    this.#send(server.greeting);
  }

  get negotiated(): boolean {
    return this.#negotiated;
  }

  /** In-band items read and not yet started (for tests and diagnostics). */
  get queued(): number {
    return this.#queue.length;
  }

  protected onData(chunk: Buffer): void {
    // Reading is paused while input is held, so this is only a guard.
    this.#input = this.#input ? Buffer.concat([this.#input, chunk]) : chunk;
    this.#service();
  }

  protected override onDrain(): void {
    this.#service();
  }

  protected onClose(): void {
    // As QEMU on CHR_EVENT_CLOSED: requests not yet started are dropped, the parser reset.
    this.#queue = [];
    this.#input = undefined;
    this.#streamer.end();
    this.#onGone(this);
  }

  /** @internal */
  event(msg: Record<string, unknown>): void {
    if (this.#negotiated) this.#send(msg);
  }

  #send(msg: unknown): void {
    const waiting = this.unsent;
    if (!this.write(`${stringifyJson(msg)}\r\n`)) return;
    // Only output piled on a backlog counts: one large reply to a client that keeps up goes out
    // whole, as QEMU sends it (a stray token of up to 64 MiB is quoted in its error).
    if (waiting > QMP_OUTPUT_SOFT_LIMIT && this.unsent > QMP_OUTPUT_HARD_LIMIT) {
      this.fail(
        new QmpServerError(
          'QMP_OUTPUT_OVERFLOW',
          `${this.name}: dropped, the client left ${QMP_OUTPUT_HARD_LIMIT >> 20} MiB of output unread`,
        ),
      );
    }
  }

  /**
   * Whether the session must stop reading: its in-band queue is full, an out-of-band request
   * runs, or its output backs up.
   */
  #full(): boolean {
    if (this.#oobRunning > 0) return true;
    const waiting = this.#queue.length;
    if (this.#oob ? waiting >= QMP_REQ_QUEUE_LEN_MAX : waiting > 0 || this.#running) return true;
    return this.unsent > QMP_OUTPUT_SOFT_LIMIT;
  }

  /**
   * Reads what there is room for and runs in-band items, until the queue is empty, a request
   * is running (its end calls this again) or the burst is used up (a later turn of the event
   * loop calls this again). Reading is paused whenever input is held back.
   */
  #service(): void {
    if (!this.#servicing && !this.#yielding && !this.isClosed) {
      this.#servicing = true;
      try {
        this.#serviceLoop();
      } finally {
        this.#servicing = false;
      }
    }
    this.reading = this.#input === undefined;
  }

  #serviceLoop(): void {
    for (;;) {
      this.#read();
      if (this.#running || this.isClosed) return;
      if (this.#queue.length === 0) {
        // Idle until the peer sends more: the burst is over.
        this.#burst = 0;
        return;
      }
      if (++this.#burst > BURST) {
        this.#yielding = true;
        setImmediate(() => {
          this.#yielding = false;
          this.#burst = 0;
          this.#service();
        });
        return;
      }
      const item = this.#queue.shift()!;
      if ('reply' in item) {
        this.#send(item.reply);
        continue;
      }
      // QEMU's reader resumes as its dispatcher takes a request from a full queue, and reads on
      // while that request runs: an exec-oob read then is answered before it.
      this.#running = true;
      this.#read();
      void this.#runInBand(item.request, item.id);
      return;
    }
  }

  /** Feeds held input to the streamer while there is room. */
  #read(): void {
    while (this.#input && !this.#full() && !this.isClosed) {
      const taken = this.#streamer.feed(this.#input);
      this.#input = taken < this.#input.length ? this.#input.subarray(taken) : undefined;
    }
  }

  async #runInBand(req: ParsedRequest, id: unknown): Promise<void> {
    try {
      this.#send(await this.#execute(req, id));
    } catch (e) {
      this.fail(e as Error);
    }
    this.#running = false;
    this.#service();
  }

  /** A message from the streamer; returns false to stop reading after it. */
  #onItem(item: StreamItem): boolean {
    if ('error' in item) {
      this.#queue.push({ reply: { error: { class: 'GenericError', desc: item.error } } });
      return !this.#full();
    }
    const request = item.value;
    const id =
      typeof request === 'object' && request !== null && !Array.isArray(request)
        ? (request as Record<string, unknown>).id
        : undefined;
    let parsed: ParsedRequest;
    try {
      parsed = this.#server.dispatcher.parseRequest(request, this.#oob);
    } catch (e) {
      this.#queue.push({ reply: reply(id, { error: e as QapiError }) });
      return !this.#full();
    }
    if (parsed.oob) {
      // Out-of-band requests run as soon as they are read, beside the in-band one. QEMU runs
      // them in its reader thread, which reads nothing more meanwhile: neither do we.
      this.#oobRunning++;
      void this.#execute(parsed, id).then((r) => {
        this.#oobRunning--;
        this.#send(r);
        this.#service();
      });
      return false;
    }
    this.#queue.push({ request: parsed, id });
    return !this.#full();
  }

  async #execute(req: ParsedRequest, id: unknown): Promise<Reply> {
    try {
      if (!this.#negotiated) {
        if (req.command !== 'qmp_capabilities') {
          throw new QapiError(
            "Expecting capabilities negotiation with 'qmp_capabilities'",
            'CommandNotFound',
          );
        }
        const args = checkCommand('qmp_capabilities', req.args ?? {}, this.#server.dispatcher.schema) as {
          enable?: string[];
        };
        for (const cap of args.enable ?? []) {
          if (cap === 'oob' && !this.#allowOob) throw new QapiError("Capability 'oob' not available");
        }
        this.#oob = (args.enable ?? []).includes('oob');
        this.#negotiated = true;
        return reply(id, { return: {} });
      }
      return reply(id, { return: await this.#server.dispatcher.run(req.command, req.args, req.oob, this) });
    } catch (e) {
      if (e instanceof QapiError) return reply(id, { error: e });
      // A handler bug must not look like a QEMU answer nor kill the session silently.
      return reply(id, { error: new QapiError(`internal error in ${req.command}: ${(e as Error).message}`) });
    }
  }
}
