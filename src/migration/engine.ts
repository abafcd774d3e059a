/**
 * The migration engine of a qmigrate VM: turns a MigrationAddress into a transport (one
 * place, cf. migration/channel.c) and runs the outgoing or incoming side over it. URIs never
 * get here; the QAPI layer has already made them addresses.
 */
import type { Socket } from 'node:net';
import type { Readable, Writable } from 'node:stream';
import type { GuestRam } from '../machine/ram.js';
import { genericError } from '../qapi/errors.js';
import type { ParsedInput } from '../qapi/migration-rules.js';
import type { MigrationAddress } from '../qapi/types.js';
import type { RunStateMachine } from '../vm/runstate.js';
import { acceptChannel } from './channel.js';
import { runIncoming } from './incoming.js';
import type { IncomingRun, Migration, MigrationEngine, OutgoingRun } from './migration.js';
import { MultifdReceiver } from './multifd.js';
import { OutgoingMigration, type OutgoingTransport } from './outgoing.js';
import type { QemuFileReader } from './stream/qemu-file.js';
import { StreamError } from './stream/qemu-file.js';
import { spawnExec } from './transport/exec.js';
import { fdStream, resolveFd } from './transport/fd.js';
import { openFileIn, openFileOut } from './transport/file.js';
import { connectSocket, listenSocket } from './transport/socket.js';

export interface EngineHost {
  readonly ram: GuestRam;
  readonly runstate: RunStateMachine;
  /** Named fds (getfd / -add-fd opaque names). */
  readonly fds: ReadonlyMap<string, number>;
  /** fd sets from -add-fd, for /dev/fdset/N. */
  readonly fdsets: ReadonlyMap<number, number[]>;
  /** An incoming migration failed and exit-on-error is set: end the process like QEMU. */
  fatal(message: string): void;
}

/** Capabilities that change what goes over the wire in ways qmigrate does not implement. */
const UNSUPPORTED_CAPS = [
  'postcopy-ram',
  'postcopy-preempt',
  'xbzrle',
  'mapped-ram',
  'x-colo',
  'x-ignore-shared',
  'background-snapshot',
  'switchover-ack',
  'zero-copy-send',
] as const;

function checkCaps(m: Migration): void {
  const on = UNSUPPORTED_CAPS.find((c) => m.options.caps[c]);
  if (on) throw genericError(`Capability '${on}' is not supported by qmigrate`);
  const compression = m.options.params['multifd-compression'];
  if (m.options.caps.multifd && compression !== 'none') {
    throw genericError(`multifd-compression '${compression}' is not supported by qmigrate (only 'none')`);
  }
}

const RDMA =
  'RDMA is not supported by qmigrate (the rdma transport needs InfiniBand verbs, which Node cannot reach)';

export class Engine implements MigrationEngine {
  readonly #host: EngineHost;

  constructor(host: EngineHost) {
    this.#host = host;
  }

  /** @throws {QapiError} for errors QEMU reports synchronously (fd names, spawn, open, rdma). */
  #outgoingTransport(addr: MigrationAddress): OutgoingTransport {
    switch (addr.transport) {
      case 'socket': {
        if (addr.type === 'fd') {
          const s = fdStream(resolveFd(addr.str, this.#host.fds, false), 'out');
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
        const { child, exited } = spawnExec(addr.args, 'out');
        const stdin = child.stdin as Writable;
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
    const run = new OutgoingMigration(
      m,
      this.#host.ram,
      this.#host.runstate,
      this.#outgoingTransport(parsed.main.addr),
    );
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
    const start = (input: Readable, rp: Writable | undefined) =>
      void runIncoming(m, ram, runstate, input, rp, done);
    switch (addr.transport) {
      case 'socket': {
        if (addr.type === 'fd') {
          const s = fdStream(resolveFd(addr.str, this.#host.fds, true), 'in');
          start(s, s);
          return { cancel: () => s.destroy() };
        }
        let main: Socket | undefined;
        const run: IncomingRun = { cancel: () => {} };
        const n = m.options.caps.multifd ? m.options.params['multifd-channels'] : 0;
        const receiver = n ? new MultifdReceiver(ram, n) : undefined;
        let mainReader: QemuFileReader | undefined;
        const channels = new Set<number>();
        const conns: Socket[] = [];
        const maybeStart = () => {
          // Loading starts once the main channel and every multifd channel are there.
          if (!main || !mainReader || channels.size < n) return;
          listener.server.close();
          void runIncoming(m, ram, runstate, main, main, done, {
            reader: mainReader,
            onFlush: receiver ? () => receiver.syncMain() : undefined,
          });
        };
        const listener = await listenSocket(addr, (accepted) => {
          if (!receiver && main) {
            // Extra connections are multifd channels, which need the multifd capability.
            accepted.destroy();
            return;
          }
          const s = acceptChannel(accepted, receiver, n, {
            main: (sock, reader) => {
              if (main) {
                sock.destroy();
                return;
              }
              main = sock;
              mainReader = reader;
              maybeStart();
            },
            multifd: (id) => {
              if (channels.has(id)) {
                throw new StreamError(`multifd: channel ${id} connected twice`, 24, 'multifd');
              }
              channels.add(id);
              maybeStart();
            },
            error: (sock, e) => {
              receiver?.fail(e);
              sock.destroy();
              main?.destroy(e);
            },
          });
          conns.push(s);
        });
        run.socketAddress = listener.addresses;
        run.cancel = () => {
          listener.close();
          main?.destroy();
          for (const x of conns) x.destroy();
        };
        return run;
      }
      case 'exec': {
        const { child, exited } = spawnExec(addr.args, 'in');
        const out = child.stdout as Readable;
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
