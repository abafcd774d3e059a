/**
 * A QMP server, wire-compatible with QEMU 10.0's monitor/qmp.c: greeting, capabilities
 * negotiation, in-band commands one at a time per session and OOB ones at once, replies and
 * events written byte for byte as QEMU writes them, on unix and tcp sockets or any duplex
 * stream (stdio). Malformed input is answered as QEMU answers it (see json-stream.ts).
 */

import { createServer, type Server, type Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { checkCommand } from '../qapi/check.js';
import { QapiError } from '../qapi/errors.js';
import { introspect } from '../qapi/introspect.js';
import { stringifyJson } from '../qapi/json.js';
import type { EventName, Events, VersionInfo } from '../qapi/types.js';
import { socketListen } from '../util/sockets.js';
import { type Dispatcher, type Reply, reply, type SessionContext } from './dispatch.js';
import { JsonStreamer, type StreamItem } from './json-stream.js';
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
  /** In-band requests run one after another, as QEMU's monitor does. */
  #inBand: Promise<void> = Promise.resolve();

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

  protected onData(chunk: Buffer): void {
    this.#streamer.feed(chunk);
  }

  protected onClose(): void {
    this.#onGone(this);
  }

  /** @internal */
  event(msg: Record<string, unknown>): void {
    if (this.#negotiated) this.#send(msg);
  }

  #send(msg: unknown): void {
    this.write(`${stringifyJson(msg)}\r\n`);
  }

  #onItem(item: StreamItem): void {
    if ('error' in item) {
      this.#queue(async () => this.#send({ error: new QapiError(item.error).toQmp() }));
      return;
    }
    const request = item.value;
    const id =
      typeof request === 'object' && request !== null && !Array.isArray(request)
        ? (request as Record<string, unknown>).id
        : undefined;
    let parsed: ReturnType<Dispatcher['parseRequest']>;
    try {
      parsed = this.#server.dispatcher.parseRequest(request, this.#oob);
    } catch (e) {
      this.#queue(async () => this.#send(reply(id, { error: e as QapiError })));
      return;
    }
    const run = async () => this.#send(await this.#execute(parsed, id));
    if (parsed.oob) void run();
    else this.#queue(run);
  }

  #queue(job: () => Promise<void>): void {
    this.#inBand = this.#inBand.then(job).catch((e) => this.fail(e as Error));
  }

  async #execute(req: ReturnType<Dispatcher['parseRequest']>, id: unknown): Promise<Reply> {
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
