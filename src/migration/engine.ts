/**
 * The migration engine of a qmigrate VM: turns a MigrationAddress into a transport (one
 * place, cf. migration/channel.c) and runs the outgoing or incoming side over it. URIs never
 * get here; the QAPI layer has already made them addresses.
 */
import type { Socket } from 'node:net';
import type { Readable, Writable } from 'node:stream';
import type { GuestRam } from '../machine/ram.js';
import { genericError } from '../qapi/errors.js';
import type { MigrationAddress } from '../qapi/types.js';
import { IncomingChannels } from './channel.js';
import type { ParsedInput } from './channel-rules.js';
import { runIncoming } from './incoming.js';
import type { GuestRunState, IncomingRun, Migration, MigrationEngine, OutgoingRun } from './migration.js';
import { MultifdReceiver } from './multifd.js';
import { checkCapabilitySupport, tlsChannelError } from './options.js';
import { OutgoingMigration, type OutgoingTransport } from './outgoing.js';
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
}

/** Migration.prepare has refused these already; this guards callers that skip it. */
function checkCaps(m: Migration): void {
  checkCapabilitySupport(m.options.caps, m.options.params);
}

/**
 * QEMU's TLS step for an outgoing migration: once the main channel is connected (a connect
 * error comes first), before a byte of the stream. Without TLS objects it always fails.
 */
function withTls(t: OutgoingTransport, m: Migration): OutgoingTransport {
  const refused = tlsChannelError(m.options.params);
  if (!refused) return t;
  const stream = t.stream.then((): never => {
    throw refused;
  });
  stream.catch(() => {});
  return { ...t, stream };
}

const RDMA =
  'RDMA is not supported by qmigrate (the rdma transport needs InfiniBand verbs, which Node cannot reach)';

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
  #outgoingTransport(addr: MigrationAddress): OutgoingTransport {
    switch (addr.transport) {
      case 'socket': {
        if (addr.type === 'fd') {
          const s = fdStream(this.#takeFd(addr.str, false), 'out');
          return {
            kind: 'socket',
            stream: Promise.resolve(s),
            bidirectional: true,
            close: () => s.destroy(),
          };
        }
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
      case 'exec': {
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
      case 'file': {
        const w = openFileOut(addr.filename, Number(addr.offset), this.#host.fdsets);
        return { kind: 'file', stream: Promise.resolve(w), bidirectional: false, close: () => w.destroy() };
      }
      case 'rdma':
        throw genericError(RDMA);
    }
  }

  startOutgoing(parsed: ParsedInput, m: Migration): OutgoingRun {
    checkCaps(m);
    const transport = withTls(this.#outgoingTransport(parsed.main.addr), m);
    const run = new OutgoingMigration(m, this.#host.ram, this.#host.runstate, transport);
    void run.run();
    return run;
  }

  async startIncoming(parsed: ParsedInput, m: Migration, exitOnError: boolean): Promise<IncomingRun> {
    checkCaps(m);
    const { ram, runstate } = this.#host;
    const addr = parsed.main.addr;
    const done = (error?: string) => {
      if (error && exitOnError) this.#host.fatal(error);
    };
    /**
     * QEMU's TLS step on the incoming side, then the load: the channel is there (accepted,
     * the exec child's output, the file) and nothing of it is read. With tls-creds set it
     * fails there with QEMU 10.0's text, and with exit-on-error the process ends.
     */
    const load = (input: Readable, rp: Writable | undefined, opts?: Parameters<typeof runIncoming>[6]) => {
      const refused = tlsChannelError(m.options.params);
      if (!refused) return void runIncoming(m, ram, runstate, input, rp, done, opts);
      // After the migrate-incoming reply (exec and file channels are there at once).
      setImmediate(() => {
        m.error = refused.message;
        m.incomingEnded();
        input.destroy();
        m.setIncomingStatus('failed');
        done(refused.message);
      });
    };
    const start = (input: Readable, rp: Writable | undefined) => load(input, rp);
    switch (addr.transport) {
      case 'socket': {
        if (addr.type === 'fd') {
          const s = fdStream(this.#takeFd(addr.str, true), 'in');
          start(s, s);
          return { cancel: () => s.destroy() };
        }
        const run: IncomingRun = { cancel: () => {} };
        const n = m.options.caps.multifd ? m.options.params['multifd-channels'] : 0;
        const receiver = n ? new MultifdReceiver(ram, n) : undefined;
        const channels = new IncomingChannels(receiver, n, {
          // Loading starts once the main channel and every multifd channel are there.
          start: (main, reader) => {
            listener.server.close();
            load(main, main, {
              reader,
              onFlush: receiver ? () => receiver.syncMain() : undefined,
            });
          },
          // As QEMU: failed at once, the error kept, the listener's address still reported.
          fail: (desc, report) => {
            listener.server.close();
            m.error = desc;
            m.setIncomingStatus('failed');
            if (exitOnError) this.#host.fatal(report);
          },
        });
        const listener = await listenSocket(addr, (accepted) => channels.accept(accepted));
        run.socketAddress = listener.addresses;
        run.cancel = () => {
          listener.close();
          channels.close();
        };
        return run;
      }
      case 'exec': {
        const { child, stream, exited } = spawnExec(addr.args, 'in');
        const out = stream as Readable;
        exited.catch((e: Error) => out.destroy(e));
        start(out, undefined);
        return { cancel: () => child.kill('SIGKILL') };
      }
      case 'file': {
        const rs = openFileIn(addr.filename, Number(addr.offset), this.#host.fdsets);
        start(rs, undefined);
        return { cancel: () => rs.destroy() };
      }
      case 'rdma':
        throw genericError(RDMA);
    }
  }
}
