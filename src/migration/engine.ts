/**
 * The migration engine of a qmigrate VM: one table maps each MigrationAddress transport to
 * how the source connects and the destination listens (one place, cf. migration/channel.c),
 * then runs the outgoing or incoming side over it. URIs never get here; the channel rules
 * have already made them addresses.
 */
import { Socket } from 'node:net';
import type { Duplex, Readable, Writable } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { InternalError } from '../errors.js';
import type { GuestRam } from '../machine/ram.js';
import { genericError } from '../qapi/errors.js';
import type {
  FileMigrationArgs,
  MigrationAddress,
  MigrationExecCommand,
  SocketAddress,
} from '../qapi/types.js';
import { exposedAddress } from '../util/sockets.js';
import { IncomingChannels } from './channel.js';
import type { ParsedInput } from './channel-rules.js';
import { runIncoming } from './incoming.js';
import type { GuestRunState, IncomingRun, Migration, MigrationEngine, OutgoingRun } from './migration.js';
import { MultifdReceiver } from './multifd.js';
import type { Parameters as MigrationParams } from './options.js';
import { checkCapabilitySupport } from './options.js';
import { OutgoingMigration, type OutgoingTransport } from './outgoing.js';
import { type TlsSetup, tlsClientChannel, tlsNotOnChannel, tlsServerChannel } from './tls/tls.js';
import type { TlsObjects } from './tls/types.js';
import { spawnExec } from './transport/exec.js';
import { fdStream, resolveFd } from './transport/fd.js';
import { openFileIn, openFileOut } from './transport/file.js';
import { connectSocket, listenSocket } from './transport/socket.js';

export interface EngineHost {
  readonly ram: GuestRam;
  readonly runstate: GuestRunState;
  /** Named fds (getfd / -add-fd opaque names); an `fd:` channel uses its name up. */
  readonly fds: Map<string, number>;
  /** fd sets from -add-fd, for /dev/fdset/N. */
  readonly fdsets: Map<number, number[]>;
  /** An incoming migration failed and exit-on-error is set: end the process like QEMU. */
  fatal(message: string): void;
  /** A line QEMU prints on stderr and goes on (a stray connection to a TLS destination). */
  warn?(message: string): void;
  /** The VM's TLS credentials and authz objects, for `tls-creds` and `tls-authz`. */
  readonly tls: TlsObjects;
}

/** What a transport's connect needs of the VM. */
interface ConnectContext {
  /** The descriptor an `fd:` channel names, its name used up (Engine.#takeFd). */
  takeFd(str: string): number;
  /** fd sets from -add-fd, for /dev/fdset/N. */
  readonly fdsets: Map<number, number[]>;
}

type LoadOptions = NonNullable<Parameters<typeof runIncoming>[6]>;

/** What a transport's listen needs: the VM's fds, and where an arrived channel goes. */
interface ListenContext extends ConnectContext {
  readonly m: Migration;
  readonly ram: GuestRam;
  /** Loads the stream of a channel that is there (after its TLS step). */
  load(input: Readable, rp: Writable | undefined, opts?: LoadOptions): void;
  /** tls-creds and tls-authz, when tls-creds is set: every channel's TLS step. */
  readonly tls: TlsSetup | undefined;
  /** The incoming migration fails as a channel arrives (after the migrate-incoming reply). */
  refuse(input: Readable, e: Error): void;
  /** The incoming migration failed: with exit-on-error, the process ends like QEMU. */
  fatal(report: string): void;
  /** A line for stderr; the migration goes on. */
  warn(report: string): void;
}

/** One MigrationAddress transport, as both sides open it. */
interface Transport<A extends MigrationAddress> {
  /** The source's channel. @throws {QapiError} for errors QEMU reports at once (fd names, spawn, open). */
  connect(addr: A, ctx: ConnectContext): OutgoingTransport;
  /**
   * The destination's: a listener, or a channel that is there at once, given to ctx.load.
   * @throws {QapiError} when the listener or channel cannot be set up.
   */
  listen(addr: A, ctx: ListenContext): IncomingRun | Promise<IncomingRun>;
}

const RDMA =
  'RDMA is not supported by qmigrate (the rdma transport needs InfiniBand verbs, which Node cannot reach)';
const refuseRdma = (): never => {
  throw genericError(RDMA);
};

/** Every transport of a MigrationAddress; socket covers tcp, unix, vsock and fd. */
const TRANSPORTS: {
  [T in MigrationAddress['transport']]: Transport<Extract<MigrationAddress, { transport: T }>>;
} = {
  socket: {
    connect: (addr, ctx) => (addr.type === 'fd' ? connectFd(addr.str, ctx) : connectStream(addr)),
    listen: (addr, ctx) => (addr.type === 'fd' ? listenFd(addr.str, ctx) : listenStream(addr, ctx)),
  },
  exec: { connect: connectExec, listen: listenExec },
  file: { connect: connectFile, listen: listenFile },
  rdma: { connect: refuseRdma, listen: refuseRdma },
};

/** The table's entry for an address (TypeScript cannot tie the entry to the address's variant). */
const transportOf = <A extends MigrationAddress>(addr: A) =>
  TRANSPORTS[addr.transport] as unknown as Transport<A>;

// ---- the source's side ----------------------------------------------------------------

function connectFd(str: string, ctx: ConnectContext): OutgoingTransport {
  const s = fdStream(ctx.takeFd(str), 'out');
  return { kind: 'socket', stream: Promise.resolve(s), bidirectional: true, close: () => s.destroy() };
}

/** tcp, unix or vsock: the main connection, and one more per multifd channel. */
function connectStream(addr: Exclude<SocketAddress, { type: 'fd' }>): OutgoingTransport {
  // One signal for the main connect and every multifd channel's: cancel aborts a
  // connect still pending (a peer that never answers would hold it for minutes).
  const abort = new AbortController();
  const socks = new Set<Socket>();
  const open = async () => {
    const s = await connectSocket(addr, abort.signal);
    if (abort.signal.aborted) {
      s.destroy();
      throw abort.signal.reason;
    }
    socks.add(s);
    return s;
  };
  const stream = open();
  stream.catch(() => {});
  return {
    kind: 'socket',
    stream,
    bidirectional: true,
    openChannel: open,
    close: () => {
      abort.abort();
      for (const s of socks) s.destroy();
    },
  };
}

function connectExec(addr: MigrationExecCommand): OutgoingTransport {
  const { child, stream, exited } = spawnExec(addr.args, 'out');
  const stdin = stream as Writable;
  return {
    kind: 'command',
    stream: Promise.resolve(stdin),
    bidirectional: false,
    finished: exited,
    close: () => {
      stdin.destroy();
      child.kill('SIGKILL');
    },
  };
}

function connectFile(addr: FileMigrationArgs, ctx: ConnectContext): OutgoingTransport {
  const w = openFileOut(addr.filename, Number(addr.offset), ctx.fdsets);
  return { kind: 'file', stream: Promise.resolve(w), bidirectional: false, close: () => w.destroy() };
}

// ---- the destination's side -----------------------------------------------------------

function listenFd(str: string, ctx: ListenContext): IncomingRun {
  const s = fdStream(ctx.takeFd(str), 'in');
  if (!ctx.tls) {
    ctx.load(s, s);
    return { cancel: () => s.destroy() };
  }
  const abort = new AbortController();
  if (!(s instanceof Socket))
    ctx.refuse(s, tlsNotOnChannel(ctx.tls.objects, ctx.tls.creds, 'server', 'file'));
  else
    tlsServerChannel(s, ctx.tls, abort.signal).then(
      (ts) => ctx.load(ts, ts),
      (e: Error) => ctx.refuse(s, e),
    );
  return {
    cancel: () => {
      abort.abort();
      s.destroy();
    },
  };
}

/** tcp, unix or vsock: loading starts once the main channel and every multifd channel are there. */
async function listenStream(
  addr: Exclude<SocketAddress, { type: 'fd' }>,
  ctx: ListenContext,
): Promise<IncomingRun> {
  const { m } = ctx;
  const n = m.options.caps.multifd ? m.options.params['multifd-channels'] : 0;
  const receiver = n ? new MultifdReceiver(ctx.ram, n) : undefined;
  const abort = new AbortController();
  const tls = ctx.tls;
  const secure = tls && ((s: Socket) => tlsServerChannel(s, tls, abort.signal));
  const channels = new IncomingChannels(
    receiver,
    n,
    {
      start: (main, reader) => {
        listener.server.close();
        ctx.load(main, main, { reader, onFlush: receiver ? () => receiver.syncMain() : undefined });
      },
      // As QEMU: failed at once, the error kept, the listener's address still reported.
      fail: (desc, report) => {
        listener.server.close();
        m.error = desc;
        m.setIncomingStatus('failed');
        ctx.fatal(report);
      },
      ignored: (report) => ctx.warn(report),
    },
    secure,
  );
  const listener = await listenSocket(addr, (accepted) => channels.accept(accepted));
  // QEMU says nothing; a stream anyone on the network can send (or read) deserves one line.
  const exposed = tls ? undefined : exposedAddress(listener.addresses);
  if (exposed) {
    ctx.warn(
      `warning: migration listener on ${exposed} without TLS: anyone who can reach it can send this guest its RAM`,
    );
  }
  return {
    socketAddress: listener.addresses,
    cancel: () => {
      abort.abort();
      listener.close();
      channels.close();
    },
  };
}

function listenExec(addr: MigrationExecCommand, ctx: ListenContext): IncomingRun {
  const { child, stream, exited } = spawnExec(addr.args, 'in');
  const out = stream as Readable;
  exited.catch((e: Error) => out.destroy(e));
  // Once the stream is no longer read, the child has nothing left to do: one that writes on
  // (ignoring SIGPIPE) or never exits would outlive the load, and `quit`. QEMU 10.0 waits
  // for it without end (io/channel-command.c, a blocking waitpid on close).
  const end = () => {
    out.destroy();
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  if (ctx.tls) {
    ctx.refuse(out, tlsNotOnChannel(ctx.tls.objects, ctx.tls.creds, 'server', 'exec'));
    out.once('close', end);
  } else ctx.load(out, undefined, { onEnd: end });
  return { cancel: () => child.kill('SIGKILL') };
}

function listenFile(addr: FileMigrationArgs, ctx: ListenContext): IncomingRun {
  const rs = openFileIn(addr.filename, Number(addr.offset), ctx.fdsets);
  if (ctx.tls) ctx.refuse(rs, tlsNotOnChannel(ctx.tls.objects, ctx.tls.creds, 'server', 'file'));
  else ctx.load(rs, undefined);
  return { cancel: () => rs.destroy() };
}

// ---- the engine -----------------------------------------------------------------------

/** Migration.prepare has refused these already; this guards callers that skip it. */
function checkCaps(m: Migration): void {
  checkCapabilitySupport(m.options.caps, m.options.params);
}

/** tls-creds, tls-hostname and tls-authz as one channel's TLS step needs them; undefined without TLS. */
function tlsSetup(
  objects: TlsObjects,
  params: Readonly<MigrationParams>,
  addr?: MigrationAddress,
): TlsSetup | undefined {
  const creds = params['tls-creds'];
  if (creds === '') return undefined;
  // The source checks the name it connected to, unless tls-hostname names another
  // (migration/tls.c); unix and fd sockets have none.
  const host = addr?.transport === 'socket' && addr.type === 'inet' ? addr.host : undefined;
  return { objects, creds, hostname: params['tls-hostname'] || host, authz: params['tls-authz'] };
}

/**
 * QEMU's TLS step for an outgoing migration: on the main channel once it is connected (a
 * connect error comes first) and on every multifd channel, before a byte of the stream. A
 * cancel ends a handshake at once.
 */
function withTls(t: OutgoingTransport, tls: TlsSetup | undefined): OutgoingTransport {
  if (!tls) return t;
  const abort = new AbortController();
  const secured = new Set<TLSSocket>();
  const secure = async (channel: Promise<Writable | Duplex>): Promise<TLSSocket> => {
    const s = await channel;
    // An exec command's stdin is a Socket in Node too: the transport's kind decides.
    if (t.kind !== 'socket' || !(s instanceof Socket)) {
      throw tlsNotOnChannel(tls.objects, tls.creds, 'client', t.kind === 'command' ? 'exec' : 'file');
    }
    const ts = await tlsClientChannel(s, tls, abort.signal);
    secured.add(ts);
    return ts;
  };
  const stream = secure(t.stream);
  stream.catch(() => {});
  const open = t.openChannel;
  return {
    ...t,
    stream,
    openChannel: open && (() => secure(open())),
    close: () => {
      abort.abort();
      t.close();
      for (const ts of secured) ts.destroy();
    },
  };
}

export class Engine implements MigrationEngine {
  readonly #host: EngineHost;

  constructor(host: EngineHost) {
    this.#host = host;
  }

  /**
   * The descriptor of an `fd:` channel, taken as QEMU's monitor_get_fd() takes a named one:
   * the name is used up. The channel closes the descriptor when it ends and the number may
   * then be reused, so it also leaves every name and fd set it was in (QEMU's sets hold
   * duplicates of their own; Node cannot dup).
   * @throws {QapiError} with QEMU's text for an unknown name or a bad number.
   */
  #takeFd(str: string, incoming: boolean): number {
    const fd = resolveFd(str, this.#host.fds, incoming);
    for (const [name, n] of this.#host.fds) if (n === fd) this.#host.fds.delete(name);
    for (const [id, set] of this.#host.fdsets) {
      const rest = set.filter((n) => n !== fd);
      if (rest.length) this.#host.fdsets.set(id, rest);
      else this.#host.fdsets.delete(id);
    }
    return fd;
  }

  /** @throws {QapiError} for errors QEMU reports synchronously (fd names, spawn, open, rdma). */
  startOutgoing(parsed: ParsedInput, m: Migration): OutgoingRun {
    checkCaps(m);
    const addr = parsed.main.addr;
    const ctx: ConnectContext = { takeFd: (str) => this.#takeFd(str, false), fdsets: this.#host.fdsets };
    const tls = tlsSetup(this.#host.tls, m.options.params, addr);
    const transport = withTls(transportOf(addr).connect(addr, ctx), tls);
    const run = new OutgoingMigration(m, this.#host.ram, this.#host.runstate, transport);
    void run.run();
    return run;
  }

  resumeOutgoing(parsed: ParsedInput, m: Migration, run: OutgoingRun): void {
    if (!(run instanceof OutgoingMigration)) throw new InternalError('internal: not an outgoing migration');
    const addr = parsed.main.addr;
    const ctx: ConnectContext = { takeFd: (str) => this.#takeFd(str, false), fdsets: this.#host.fdsets };
    const tls = tlsSetup(this.#host.tls, m.options.params, addr);
    const transport = withTls(transportOf(addr).connect(addr, ctx), tls);
    if (!run.resume(transport)) {
      transport.close();
      throw genericError('Cannot resume if there is no paused migration');
    }
  }

  async startIncoming(parsed: ParsedInput, m: Migration, exitOnError: boolean): Promise<IncomingRun> {
    checkCaps(m);
    const addr = parsed.main.addr;
    return transportOf(addr).listen(addr, this.#listenContext(m, exitOnError));
  }

  #listenContext(m: Migration, exitOnError: boolean): ListenContext {
    const { ram, runstate } = this.#host;
    const fatal = (report: string) => {
      if (exitOnError) this.#host.fatal(report);
    };
    const done = (error?: string) => {
      if (error) fatal(error);
    };
    return {
      m,
      ram,
      fdsets: this.#host.fdsets,
      takeFd: (str) => this.#takeFd(str, true),
      fatal,
      warn: (report) => this.#host.warn?.(report),
      load: (input, rp, opts) => {
        // A migrate-recover listener's connection resumes the paused load.
        if (m.takeRecoveredChannel({ input, rp, reader: opts?.reader })) return;
        void runIncoming(m, ram, runstate, input, rp, done, { ...opts, warn: (l) => this.#host.warn?.(l) });
      },
      tls: tlsSetup(this.#host.tls, m.options.params),
      /**
       * A channel that is there fails its TLS step: nothing of it is loaded, and with
       * exit-on-error the process ends. After the migrate-incoming reply, as in QEMU (exec
       * and file channels are there at once).
       */
      refuse: (input, e) => {
        setImmediate(() => {
          m.error = e.message;
          m.incomingEnded();
          input.destroy();
          m.setIncomingStatus('failed');
          done(e.message);
        });
      },
    };
  }
}
