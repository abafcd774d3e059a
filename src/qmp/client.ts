/**
 * A typed QMP client (the client half of docs/interop/qmp-spec.rst, modelled on
 * python/qemu/qmp/qmp_client.py): connect to a unix or tcp socket, read the greeting,
 * negotiate, then pipeline commands matched to replies by `id`. Events go to listeners only.
 * Migration helpers detect `channels` support and fall back to `uri` on QEMU older than 8.2.
 */
import { channel as diagnosticsChannel } from 'node:diagnostics_channel';
import type { Socket } from 'node:net';
import { ArgumentError } from '../errors.js';
import { parseJson, stringifyJson } from '../qapi/json.js';
import type { CommandName, Commands, EventName, MigrationChannel, VersionInfo } from '../qapi/types.js';
import { addressToEquivalentUri } from '../qapi/uri.js';
import { socketConnect } from '../util/sockets.js';
import {
  BadReplyError,
  ConnectError,
  EventTimeoutError,
  ExecAbortedError,
  ExecInterruptedError,
  ExecTimeoutError,
  FeatureError,
  QmpError,
  ServerParseError,
  StateError,
  TlsHandshakeError,
} from './errors.js';
import { EventListener, type QmpEvent } from './events.js';
import { type ExecuteOptions, QmpCommandMethods } from './methods.js';
import { QmpProtocol } from './protocol.js';
import { closedAfterHandshake, describeTlsFailure, type QmpTlsOptions, startTls } from './tls.js';

export type { ExecuteOptions } from './methods.js';
export { type QmpTlsOptions, readX509CredsDir } from './tls.js';

/** A unix socket path, `{ path }` (a Linux abstract name with `abstract`), or `{ host, port }`. */
export type QmpAddress =
  | string
  | { path: string; abstract?: boolean; tight?: boolean }
  | { host: string; port: number };

export interface ConnectOptions {
  /** Milliseconds for connect + greeting + negotiation (default 10000). */
  timeout?: number;
  signal?: AbortSignal;
  /** Send qmp_capabilities after the greeting (default true). */
  negotiate?: boolean;
  /** Enable out-of-band execution when the server offers it (default false). */
  oob?: boolean;
  /** Default per-command timeout in milliseconds (default: none). */
  commandTimeout?: number;
  /** Longest message accepted from the peer (default 10 MiB, as qemu.qmp and libvirt). */
  maxMessageLength?: number;
  /** Receives every event from the start, even those sent before the greeting or negotiation. */
  onEvent?: (event: QmpEvent) => void;
  /**
   * Speak TLS to a monitor with `tls-creds` (readX509CredsDir() reads QEMU's layout of a
   * credentials dir). The handshake counts within `timeout`.
   */
  tls?: QmpTlsOptions;
}

export interface Greeting {
  QMP: { version: VersionInfo; capabilities: string[] };
}

interface Pending {
  command: string;
  sent: unknown;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
  cleanup: () => void;
}

/**
 * How many commands given up on (timed out or aborted after they were sent) the client
 * remembers, so that their late replies are dropped rather than taken for a broken peer. The
 * oldest is forgotten first: a reply that comes after 1024 later give-ups is unknown again.
 */
export const MAX_ABANDONED_IDS = 1024;

const sendChannel = diagnosticsChannel('qmigrate:qmp:client:send');
const receiveChannel = diagnosticsChannel('qmigrate:qmp:client:receive');

/** Arguments of `migrate` as the client takes them (channels or uri). */
export type MigrateArgs = Commands['migrate']['args'];
export type MigrateIncomingArgs = Commands['migrate-incoming']['args'];

export class QmpClient extends QmpCommandMethods {
  #protocol: ClientProtocol;
  #greeting: Greeting | undefined;
  #nextId = 1;
  readonly #pending = new Map<string, Pending>();
  /** Ids of commands sent and then given up on, oldest first (at most MAX_ABANDONED_IDS). */
  readonly #abandoned = new Set<string>();
  readonly #listeners = new Set<EventListener<EventName>>();
  readonly #handlers = new Map<string, Set<(e: QmpEvent) => void>>();
  readonly #options: ConnectOptions;
  #features: Promise<{ channels: boolean }> | undefined;

  private constructor(options: ConnectOptions) {
    super();
    this.#options = options;
    this.#protocol = new ClientProtocol(this, options.maxMessageLength ?? 10 << 20);
  }

  /**
   * Connects, runs the TLS handshake when `tls` is given, reads the greeting and (by default)
   * negotiates capabilities.
   * @throws {TlsHandshakeError} (a ConnectError) when TLS fails, saying which check did.
   * @throws {ConnectError} when the socket cannot be reached, the peer does not greet like a
   *   QMP server, or negotiation fails, within `timeout`.
   */
  static async connect(address: QmpAddress, options: ConnectOptions = {}): Promise<QmpClient> {
    const client = new QmpClient(options);
    const timeout = options.timeout ?? 10_000;
    const where =
      typeof address === 'string'
        ? address
        : 'path' in address
          ? address.path
          : `${address.host}:${address.port}`;
    const signals = [AbortSignal.timeout(timeout), ...(options.signal ? [options.signal] : [])];
    const signal = AbortSignal.any(signals);
    let socket: Socket | undefined;
    let secured = false;
    try {
      // A unix path is used as given or refused (too long), and a full backlog is waited for.
      socket = await socketConnect(
        typeof address === 'string'
          ? { type: 'unix', path: address }
          : 'path' in address
            ? { type: 'unix', path: address.path, abstract: address.abstract, tight: address.tight }
            : { type: 'inet', host: address.host, port: String(address.port) },
        { signal },
      );
      if (options.tls) {
        const host = typeof address === 'object' && 'host' in address ? address.host : undefined;
        socket = await startTls(socket, options.tls, host, signal);
        secured = true;
      }
      client.#protocol.start(socket);
      client.#greeting = await client.#protocol.greeting(signal);
      if (options.negotiate ?? true) {
        const offered = client.#greeting.QMP.capabilities ?? [];
        const enable = options.oob && offered.includes('oob') ? ['oob'] : undefined;
        await client.execute('qmp_capabilities', enable ? { enable: enable as ['oob'] } : undefined, {
          signal,
        });
      }
      return client;
    } catch (e) {
      socket?.destroy();
      const tlsError =
        e instanceof TlsHandshakeError
          ? e
          : secured && !client.#greeting && !signal.aborted
            ? tlsRefusal(e, options.tls)
            : undefined;
      if (tlsError) {
        throw new TlsHandshakeError(
          tlsError.check,
          `cannot open a QMP session with ${where}: ${tlsError.message}`,
          {
            cause: tlsError.cause ?? e,
          },
        );
      }
      const why =
        signal.aborted && !options.signal?.aborted
          ? `no QMP session within ${timeout} ms`
          : (e as Error).message;
      throw new ConnectError(`cannot open a QMP session with ${where}: ${why}`, { cause: e });
    }
  }

  /** The server's greeting: its version and capabilities. */
  get greeting(): Greeting {
    if (!this.#greeting) throw new StateError('no greeting yet');
    return this.#greeting;
  }

  /** Resolves when the connection has ended. */
  get closed(): Promise<void> {
    return this.#protocol.closed;
  }

  get isClosed(): boolean {
    return this.#protocol.isClosed;
  }

  /**
   * Runs a command and resolves to its `return` value.
   * @throws {QmpError} when the server answers with an error (class and desc verbatim).
   * @throws {ExecTimeoutError} / {ExecAbortedError} when the timeout passes or the signal aborts.
   *   The server still runs the command; its reply, when it comes, is dropped (for the last
   *   {@link MAX_ABANDONED_IDS} commands given up on) and the session goes on.
   * @throws {ExecInterruptedError} when the connection ends before the reply.
   * @throws {StateError} when the client is closed.
   */
  override execute<C extends CommandName>(
    command: C,
    args?: Commands[C]['args'],
    options?: ExecuteOptions,
  ): Promise<Commands[C]['returns']> {
    return this.executeRaw(command, args as Record<string, unknown> | undefined, options) as Promise<
      Commands[C]['returns']
    >;
  }

  /** Like execute(), for any command name and untyped arguments. */
  executeRaw(
    command: string,
    args?: Record<string, unknown>,
    options: ExecuteOptions = {},
  ): Promise<unknown> {
    if (this.#protocol.isClosed)
      return Promise.reject(new StateError(`cannot run '${command}': the client is closed`));
    const bad = loneSurrogateAt(args, 'arguments');
    if (bad !== undefined)
      return Promise.reject(
        new ArgumentError(
          `cannot run '${command}': ${bad} holds a lone UTF-16 surrogate, which QMP's JSON cannot carry (QEMU answers a parse error with no id)`,
        ),
      );
    const id = `__qmigrate#${this.#nextId++}`;
    const msg: Record<string, unknown> = { [options.oob ? 'exec-oob' : 'execute']: command, id };
    if (args !== undefined) msg.arguments = args;
    return new Promise((resolve, reject) => {
      const timeout = options.timeout ?? this.#options.commandTimeout;
      const timer =
        timeout === undefined
          ? undefined
          : setTimeout(() => giveUp(new ExecTimeoutError(command, timeout)), timeout);
      const onAbort = () => giveUp(new ExecAbortedError(command, options.signal?.reason));
      const cleanup = () => {
        if (timer) clearTimeout(timer);
        options.signal?.removeEventListener('abort', onAbort);
        this.#pending.delete(id);
      };
      const fail = (e: unknown) => {
        cleanup();
        reject(e);
      };
      // The server still runs a command it was sent and will answer it (QMP has no way to
      // call one back); only a command that went out can have a reply to drop.
      const giveUp = (e: unknown) => {
        if (this.#pending.has(id)) this.#abandon(id);
        fail(e);
      };
      if (options.signal?.aborted) return onAbort();
      options.signal?.addEventListener('abort', onAbort, { once: true });
      this.#pending.set(id, { command, sent: msg, resolve, reject, cleanup });
      sendChannel.publish(msg);
      if (!this.#protocol.send(msg))
        fail(new StateError(`cannot run '${command}': the connection is closed`));
    });
  }

  /**
   * A listener for the named events (all events when none are named), receiving from now on.
   * Iterate it with `for await`; it ends when the connection ends or it is closed.
   */
  listen<N extends EventName>(...names: N[]): EventListener<N> {
    const l = new EventListener<N>(names, (x) =>
      this.#listeners.delete(x as unknown as EventListener<EventName>),
    );
    if (this.#protocol.isClosed) l.end();
    else this.#listeners.add(l as unknown as EventListener<EventName>);
    return l;
  }

  /** Calls `handler` for each `name` event; returns the function that removes it. */
  on<N extends EventName>(name: N, handler: (event: QmpEvent<N>) => void): () => void {
    let set = this.#handlers.get(name);
    if (!set) {
      set = new Set();
      this.#handlers.set(name, set);
    }
    const h = handler as (e: QmpEvent) => void;
    set.add(h);
    return () => void set.delete(h);
  }

  /**
   * Waits for the next `name` event that satisfies `match`.
   * @throws {EventTimeoutError} when `timeout` passes first.
   * @throws the reason of the caller's `signal`, when it aborts first.
   * @throws {StateError} when the connection ends first.
   */
  async waitFor<N extends EventName>(
    name: N,
    match: (e: QmpEvent<N>) => boolean = () => true,
    options: { timeout?: number; signal?: AbortSignal } = {},
  ): Promise<QmpEvent<N>> {
    using l = this.listen(name);
    const timer = options.timeout === undefined ? undefined : AbortSignal.timeout(options.timeout);
    const signals = [...(timer ? [timer] : []), ...(options.signal ? [options.signal] : [])];
    const signal = signals.length ? AbortSignal.any(signals) : undefined;
    for (;;) {
      let e: QmpEvent<N> | undefined;
      try {
        e = await l.get(signal);
      } catch (err) {
        // The timeout is this method's own: its DOMException becomes one of the package's errors.
        if (timer?.aborted && err === timer.reason) {
          throw new EventTimeoutError(name, options.timeout!);
        }
        throw err;
      }
      if (!e) throw new StateError(`connection closed while waiting for ${name}`);
      if (match(e)) return e;
    }
  }

  /** Closes the connection; pending commands fail with ExecInterruptedError. */
  async close(): Promise<void> {
    await this.#protocol.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close().catch(() => {});
  }

  // ---- migration with feature detection -----------------------------------------------

  /** What the peer's schema offers: `channels` on migrate/migrate-incoming (QEMU 8.2+). */
  features(): Promise<{ channels: boolean }> {
    this.#features ??= this.queryQmpSchema().then(
      (schema) => {
        const byName = new Map(schema.map((e) => [e.name, e as unknown as Record<string, unknown>]));
        const migrate = byName.get('migrate');
        const args = migrate && byName.get(migrate['arg-type'] as string);
        const members = (args?.members as { name: string }[] | undefined) ?? [];
        return { channels: members.some((m) => m.name === 'channels') };
      },
      () => ({ channels: false }),
    );
    return this.#features;
  }

  /**
   * `migrate`, with `channels` on a peer that has them and the equivalent `uri` on one that
   * does not (QEMU before 8.2).
   * @throws {FeatureError} when the peer lacks `channels` and the address has no URI form.
   */
  override async migrate(args: MigrateArgs, options?: ExecuteOptions): Promise<Record<string, never>> {
    return this.execute('migrate', await this.#downgrade(args), options);
  }

  /** `migrate-incoming`, with the same fallback as migrate(). */
  override async migrateIncoming(
    args: MigrateIncomingArgs,
    options?: ExecuteOptions,
  ): Promise<Record<string, never>> {
    return this.execute('migrate-incoming', await this.#downgrade(args), options);
  }

  async #downgrade<A extends { channels?: MigrationChannel[]; uri?: string }>(args: A): Promise<A> {
    if (!args.channels?.length || (await this.features()).channels) return args;
    const v = this.greeting.QMP.version.qemu;
    const peer = `QEMU ${v.major}.${v.minor}.${v.micro}`;
    const { channels, ...rest } = args;
    if (channels.length !== 1 || channels[0]?.['channel-type'] !== 'main') {
      throw new FeatureError(
        `${peer} takes no 'channels'; only a single 'main' channel can be sent as a URI`,
      );
    }
    const uri = addressToEquivalentUri(channels[0].addr);
    if (uri === undefined) {
      throw new FeatureError(
        `${peer} takes no 'channels', and this address has no URI form: ${stringifyJson(channels[0].addr)}`,
      );
    }
    return { ...rest, uri } as unknown as A;
  }

  // ---- called by the protocol ---------------------------------------------------------

  /** @internal */
  handleMessage(msg: Record<string, unknown>): void {
    receiveChannel.publish(msg);
    if (typeof msg.event === 'string') {
      const e = msg as unknown as QmpEvent;
      this.#options.onEvent?.(e);
      for (const h of this.#handlers.get(e.event) ?? []) h(e);
      for (const l of this.#listeners) l.push(e);
      return;
    }
    const id = typeof msg.id === 'string' ? msg.id : undefined;
    const p = id === undefined ? undefined : this.#pending.get(id);
    const isReply = 'return' in msg || (msg.error !== null && typeof msg.error === 'object');
    // The late reply to a command given up on: qmp-spec.rst ("Commands Responses") has
    // clients drop replies whose id they do not know. An id this client never sent still
    // means a confused peer.
    if (!p && isReply && id !== undefined && this.#abandoned.delete(id)) return;
    if (!p)
      throw new BadReplyError(msg, id === undefined ? 'reply without our id' : `reply to unknown id ${id}`);
    p.cleanup();
    if ('return' in msg) p.resolve(msg.return);
    else if (isReply) {
      const err = msg.error as { class?: unknown; desc?: unknown };
      p.reject(new QmpError(String(err.class), String(err.desc), p.sent, msg));
    } else throw new BadReplyError(msg, 'neither return nor error');
  }

  /** Remembers a sent command's id so that its reply, should it still come, is dropped. */
  #abandon(id: string): void {
    this.#abandoned.add(id);
    if (this.#abandoned.size > MAX_ABANDONED_IDS) {
      const oldest = this.#abandoned.values().next().value;
      if (oldest !== undefined) this.#abandoned.delete(oldest);
    }
  }

  /** @internal */
  handleClose(error: Error | undefined): void {
    for (const p of [...this.#pending.values()]) {
      p.cleanup();
      p.reject(new ExecInterruptedError(p.command, { cause: error }));
    }
    for (const l of this.#listeners) l.end();
    this.#listeners.clear();
  }
}

/**
 * A TLS session that ended between the handshake and the greeting: an alert the server sent
 * (an OpenSSL server checks the client's certificate after a TLS 1.3 handshake), or a silent
 * close (QEMU's GnuTLS does that when the client's certificate fails its checks).
 */
function tlsRefusal(e: unknown, tls: QmpTlsOptions | undefined): TlsHandshakeError {
  const hadCert = tls?.cert !== undefined;
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  if (code?.startsWith('ERR_SSL_')) {
    const { check, why } = describeTlsFailure(e as NodeJS.ErrnoException, '', hadCert);
    return new TlsHandshakeError(check, `TLS: ${why}`, { cause: e });
  }
  return closedAfterHandshake(hadCert);
}

/** Frames the byte stream into lines of JSON (QEMU ends each message with CRLF). */
class ClientProtocol extends QmpProtocol {
  readonly #client: QmpClient;
  readonly #max: number;
  #buf: Buffer[] = [];
  #bufLen = 0;
  #greeting: Promise<Greeting>;
  #gotGreeting!: (g: Greeting) => void;
  #noGreeting!: (e: Error) => void;
  #greeted = false;

  constructor(client: QmpClient, max: number) {
    super();
    this.#client = client;
    this.#max = max;
    this.#greeting = new Promise((res, rej) => {
      this.#gotGreeting = res;
      this.#noGreeting = rej;
    });
    this.#greeting.catch(() => {});
  }

  start(socket: Socket): void {
    this.attach(socket);
  }

  greeting(signal: AbortSignal): Promise<Greeting> {
    return new Promise((resolve, reject) => {
      const onAbort = () => reject(signal.reason);
      signal.addEventListener('abort', onAbort, { once: true });
      this.#greeting.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
    });
  }

  send(msg: unknown): boolean {
    return this.write(`${stringifyJson(msg)}\n`);
  }

  protected onData(chunk: Buffer): void {
    let start = 0;
    for (let nl = chunk.indexOf(10); nl >= 0; nl = chunk.indexOf(10, start)) {
      const part = chunk.subarray(start, nl);
      const line = this.#bufLen
        ? Buffer.concat([...this.#buf, part]).toString('utf8')
        : part.toString('utf8');
      this.#buf = [];
      this.#bufLen = 0;
      start = nl + 1;
      if (line.trim()) this.#message(line);
    }
    if (start < chunk.length) {
      this.#buf.push(chunk.subarray(start));
      this.#bufLen += chunk.length - start;
      if (this.#bufLen > this.#max)
        throw new BadReplyError(undefined, `message longer than ${this.#max} bytes`);
    }
  }

  #message(line: string): void {
    let msg: unknown;
    try {
      msg = parseJson(line.trim());
    } catch (e) {
      throw new ServerParseError(line, e);
    }
    if (typeof msg !== 'object' || msg === null || Array.isArray(msg))
      throw new BadReplyError(msg, 'not an object');
    const m = msg as Record<string, unknown>;
    if (!this.#greeted) {
      if ('QMP' in m) {
        this.#greeted = true;
        this.#gotGreeting(m as unknown as Greeting);
        return;
      }
      // Events may come before the greeting; anything else means this is no QMP server.
      if (typeof m.event !== 'string') throw new BadReplyError(msg, 'expected the QMP greeting');
    }
    this.#client.handleMessage(m);
  }

  protected onClose(error: Error | undefined): void {
    if (!this.#greeted) this.#noGreeting(error ?? new ConnectError('connection closed before the greeting'));
    this.#client.handleClose(error);
  }
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/**
 * Where in a command's arguments a key or string has a lone surrogate (`arguments.a[2]`), or
 * undefined. QEMU's JSON parser refuses such a string and its error reply has no id, which
 * would leave the command unanswered and the session confused; better refused before sending.
 */
function loneSurrogateAt(v: unknown, path: string): string | undefined {
  if (typeof v === 'string') return LONE_SURROGATE.test(v) ? path : undefined;
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) {
      const at = loneSurrogateAt(v[i], `${path}[${i}]`);
      if (at !== undefined) return at;
    }
    return undefined;
  }
  if (v === null || typeof v !== 'object') return undefined;
  for (const [k, x] of Object.entries(v)) {
    if (LONE_SURROGATE.test(k)) return `a key of ${path}`;
    const at = loneSurrogateAt(x, `${path}.${k}`);
    if (at !== undefined) return at;
  }
  return undefined;
}
