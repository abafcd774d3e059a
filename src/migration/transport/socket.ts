/**
 * Socket transports (migration/socket.c): connect to, or listen on, an inet or unix
 * SocketAddress. A listener reports the addresses it really bound (port 0 replaced), as
 * query-migrate's socket-address shows them. vsock is not available to Node, and says so as
 * QEMU does on a host without AF_VSOCK.
 */

import { existsSync, statSync, unlinkSync } from 'node:fs';
import { createServer, isIPv4, isIPv6, connect as netConnect, type Server, Socket } from 'node:net';
import { dirname } from 'node:path';
import { genericError } from '../../qapi/errors.js';
import type { SocketAddress } from '../../qapi/types.js';
import { strerror } from '../../util/errno.js';

export interface Listener {
  server: Server;
  addresses: SocketAddress[];
  close(): void;
}

function describe(addr: SocketAddress): string {
  if (addr.type === 'inet') return `${addr.host}:${addr.port}`;
  if (addr.type === 'unix') return addr.path;
  if (addr.type === 'vsock') return `${addr.cid}:${addr.port}`;
  return addr.str;
}

function unixPath(addr: { path: string; abstract?: boolean }): string {
  // Linux abstract sockets are named with a leading NUL in Node, as in sockaddr_un.
  return addr.abstract ? `\0${addr.path}` : addr.path;
}

function port(p: string, host: string): number {
  const n = Number(p);
  if (!/^\d+$/.test(p) || n > 65535) {
    throw genericError(`address resolution failed for ${host}:${p}: Servname not supported for ai_socktype`);
  }
  return n;
}

/**
 * Connects to an inet or unix address. Errors come as QEMU words them (they end the
 * migration `failed`, asynchronously). The socket stays writable after the peer's FIN, as a
 * QEMU source's does: a peer that shut down its sending side may still be reading, and one
 * that is gone makes the next write fail.
 */
export function connectSocket(addr: SocketAddress): Promise<Socket> {
  return new Promise((resolve, reject) => {
    let s: Socket;
    try {
      if (addr.type === 'inet')
        s = netConnect({
          host: addr.host || 'localhost',
          port: port(addr.port, addr.host),
          allowHalfOpen: true,
        });
      else if (addr.type === 'unix') s = netConnect({ path: unixPath(addr), allowHalfOpen: true });
      else if (addr.type === 'vsock') throw genericError('socket family AF_VSOCK unsupported');
      else throw genericError(`internal: fd address ${addr.str} reached connectSocket`);
    } catch (e) {
      reject(e);
      return;
    }
    s.once('connect', () => {
      s.setNoDelay(true);
      resolve(s);
    });
    s.once('error', (e) => reject(genericError(`Failed to connect to '${describe(addr)}': ${strerror(e)}`)));
  });
}

/** Where a socket's next bytes go, and what happens once they are there. */
export interface ReadSink {
  /** The buffer the next read fills from its start (never empty). */
  target(): Buffer;
  /** `n` bytes landed at the start of the last target. @returns false to stop reading until the socket's resume(). */
  filled(n: number): boolean;
}

/**
 * Takes over an accepted, not yet read socket so that every read lands in a buffer the sink
 * chooses (guest RAM, for multifd pages), with no copy and no allocation per read. Node offers
 * this (`onread`) only to sockets built from options, so the connection's handle moves into a
 * new Socket; the old object only keeps the server's connection count right.
 */
export function readInto(s: Socket, sink: ReadSink): Socket {
  const old = s as unknown as { _handle: unknown };
  const handle = old._handle;
  if (!handle) throw new Error('readInto: the socket has no handle (closed, or taken over already)');
  old._handle = null;
  const d = new Socket({
    handle,
    onread: { buffer: () => sink.target(), callback: (n: number) => sink.filled(n) },
  } as ConstructorParameters<typeof Socket>[0]);
  d.on('close', () => s.destroy());
  return d;
}

/**
 * Listens on an inet or unix address; `onConnection` gets every accepted socket, paused.
 * @throws {QapiError} with QEMU's bind error texts.
 */
export async function listenSocket(
  addr: SocketAddress,
  onConnection: (s: Socket) => void,
): Promise<Listener> {
  if (addr.type === 'vsock') throw genericError('socket family AF_VSOCK unsupported');
  if (addr.type === 'fd') throw genericError(`internal: fd address ${addr.str} reached listenSocket`);
  // Accepted sockets start paused, so that readInto can still take them over.
  const server = createServer({ noDelay: true, pauseOnConnect: true }, onConnection);
  if (addr.type === 'unix' && !addr.abstract) {
    if (!existsSync(dirname(addr.path))) {
      throw genericError(`Failed to bind socket to ${addr.path}: No such file or directory`);
    }
    try {
      if (statSync(addr.path).isSocket()) unlinkSync(addr.path);
    } catch {}
  }
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e) =>
      reject(
        genericError(
          addr.type === 'unix'
            ? `Failed to bind socket to ${addr.path}: ${strerror(e)}`
            : `Failed to bind socket: ${strerror(e)}`,
        ),
      ),
    );
    if (addr.type === 'unix') server.listen(unixPath(addr), resolve);
    else {
      const host = addr.host === '' ? undefined : addr.host;
      try {
        server.listen(
          { host, port: port(addr.port, addr.host), ipv6Only: addr.ipv6 === true && addr.ipv4 === false },
          resolve,
        );
      } catch (e) {
        reject(e);
      }
    }
  });
  const bound = server.address();
  const addresses: SocketAddress[] = [];
  if (typeof bound === 'string' || addr.type === 'unix') {
    addresses.push({ type: 'unix', path: addr.type === 'unix' ? addr.path : String(bound) });
  } else if (bound) {
    const a: SocketAddress = { type: 'inet', host: bound.address, port: String(bound.port) };
    if (isIPv4(bound.address)) a.ipv4 = true;
    else if (isIPv6(bound.address)) a.ipv6 = true;
    addresses.push(a);
  }
  return {
    server,
    addresses,
    close: () => {
      server.close();
      if (addr.type === 'unix' && !addr.abstract) {
        try {
          unlinkSync(addr.path);
        } catch {}
      }
    },
  };
}
