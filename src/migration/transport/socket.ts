/**
 * Socket transports (migration/socket.c): connect to, or listen on, an inet or unix
 * SocketAddress. A listener reports the addresses it really bound (port 0 replaced), as
 * query-migrate's socket-address shows them. vsock is not available to Node, and says so as
 * QEMU does on a host without AF_VSOCK.
 */

import { createServer, type Server, Socket } from 'node:net';
import { InternalError } from '../../errors.js';
import { genericError, QapiError } from '../../qapi/errors.js';
import type { SocketAddress } from '../../qapi/types.js';
import { SocketError, socketConnect, socketListen } from '../../util/sockets.js';
import { TimeSlice } from '../time-slice.js';

export interface Listener {
  server: Server;
  addresses: SocketAddress[];
  close(): void;
}

/** A SocketError becomes the QMP error QEMU would report; anything else is passed on. */
function qmpError(e: unknown): unknown {
  return e instanceof SocketError ? new QapiError(e.message, 'GenericError', { cause: e }) : e;
}

/**
 * Connects to an inet or unix address. Errors come as QEMU words them (they end the
 * migration `failed`, asynchronously); a full unix backlog is waited out. The socket stays
 * writable after the peer's FIN, as a QEMU source's does: a peer that shut down its sending
 * side may still be reading, and one that is gone makes the next write fail.
 * @throws {QapiError} with QEMU's text.
 * @throws the signal's reason when `signal` aborts the connect (migrate_cancel).
 */
export async function connectSocket(addr: SocketAddress, signal?: AbortSignal): Promise<Socket> {
  if (addr.type === 'vsock') throw genericError('socket family AF_VSOCK unsupported');
  if (addr.type === 'fd') throw genericError(`internal: fd address ${addr.str} reached connectSocket`);
  try {
    const s = await socketConnect(addr, { signal, allowHalfOpen: true });
    s.setNoDelay(true);
    return s;
  } catch (e) {
    throw qmpError(e);
  }
}

/** Where a socket's next bytes go, and what happens once they are there. */
export interface ReadSink {
  /** The buffer the next read fills from its start (never empty). */
  target(): Buffer;
  /** `n` bytes landed at the start of the last target. @returns false to stop reading until the socket's resume(). */
  filled(n: number): boolean;
}

/**
 * One time slice for all the sockets read into sinks: libuv reads a ready socket up to 32
 * times in a row, and what each read delivers is applied at once (pages loaded, multifd
 * packets parsed). After a slice of that, across every channel of the event loop, each socket
 * that reads stops for one turn of the event loop, so that the monitors' sockets are polled
 * too. This is state of the process's event loop, so it lives here, not in a migration.
 */
const reads = new (class {
  readonly #slice = new TimeSlice();
  #last = 0;
  #paused: Socket[] = [];

  /** After a read of `s`: true to read on, false when `s` must wait for the next turn. */
  take(s: Socket): boolean {
    const now = performance.now();
    // Only a run of reads counts: a read after a lull starts a new slice.
    if (now - this.#last > 1) this.#slice.restart();
    this.#last = now;
    if (!this.#slice.due) return true;
    if (this.#paused.push(s) === 1) {
      setImmediate(() => {
        this.#slice.restart();
        for (const p of this.#paused.splice(0)) p.resume();
      });
    }
    return false;
  }
})();

/**
 * Takes over an accepted, not yet read socket so that every read lands in a buffer the sink
 * chooses (guest RAM, for multifd pages), with no copy and no allocation per read. Node offers
 * this (`onread`) only to sockets built from options, so the connection's handle moves into a
 * new Socket; the old object only keeps the server's connection count right.
 */
export function readInto(s: Socket, sink: ReadSink): Socket {
  if ((s as Socket & { encrypted?: boolean }).encrypted) return readDecrypted(s, sink);
  const old = s as unknown as { _handle: unknown };
  const handle = old._handle;
  if (!handle) throw new InternalError('readInto: the socket has no handle (closed, or taken over already)');
  old._handle = null;
  const callback = (n: number) => {
    if (!sink.filled(n)) return false;
    return reads.take(d);
  };
  const d = new Socket({
    handle,
    onread: { buffer: () => sink.target(), callback },
  } as ConstructorParameters<typeof Socket>[0]);
  d.on('close', () => s.destroy());
  return d;
}

/**
 * readInto for a TLS socket, whose reads are decrypted records that node:tls allocates: each
 * is copied into the sink's buffers (one copy, in large pieces). What the sink cannot take
 * yet goes back to the front of the socket's queue, and comes again on resume().
 */
function readDecrypted(s: Socket, sink: ReadSink): Socket {
  s.on('data', (chunk: Buffer) => {
    let at = 0;
    while (at < chunk.length) {
      const n = chunk.copy(sink.target(), 0, at);
      at += n;
      const more = sink.filled(n) && reads.take(s);
      if (!more) {
        s.pause();
        if (at < chunk.length) s.unshift(chunk.subarray(at));
        return;
      }
    }
  });
  return s;
}

/**
 * Listens on an inet or unix address; `onConnection` gets every accepted socket, paused.
 * @throws {QapiError} with QEMU's texts (path too long, bind errors).
 */
export async function listenSocket(
  addr: SocketAddress,
  onConnection: (s: Socket) => void,
): Promise<Listener> {
  if (addr.type === 'vsock') throw genericError('socket family AF_VSOCK unsupported');
  if (addr.type === 'fd') throw genericError(`internal: fd address ${addr.str} reached listenSocket`);
  // Accepted sockets start paused, so that readInto can still take them over.
  const server = createServer({ noDelay: true, pauseOnConnect: true }, onConnection);
  let addresses: SocketAddress[];
  try {
    addresses = await socketListen(server, addr);
  } catch (e) {
    throw qmpError(e);
  }
  return {
    server,
    addresses,
    // Node removes a unix socket's file when the server closes, as QEMU does.
    close: () => server.close(),
  };
}
