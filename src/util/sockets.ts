/**
 * Stream sockets as QEMU's util/qemu-sockets.c makes them, for every layer that binds or
 * connects one (migration, chardevs, QMP): an address is used exactly as given or refused in
 * QEMU's words (a unix path longer than sun_path; an abstract name in its tight or padded
 * form), errors carry QEMU's texts, a connect waits out a full backlog as QEMU's blocking
 * connect does, until its AbortSignal fires, and a unix listener replaces only a stale socket.
 */
import { randomBytes } from 'node:crypto';
import {
  accessSync,
  closeSync,
  constants,
  existsSync,
  lstatSync,
  openSync,
  readFileSync,
  type Stats,
  unlinkSync,
} from 'node:fs';
import { isIPv4, isIPv6, connect as netConnect, type Server, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { QmigrateError } from '../errors.js';
import { connectTightAbstract, listenTightAbstract, NODE_HAS_TIGHT_ABSTRACT } from './abstract-unix.js';
import { errnoText, gaiStrerror, strerror, systemError } from './errno.js';

/** QAPI's InetSocketAddress, as far as a stream socket uses it. */
export interface InetAddress {
  type: 'inet';
  host: string;
  port: string;
  ipv4?: boolean;
  ipv6?: boolean;
  'keep-alive'?: boolean;
}

/** QAPI's UnixSocketAddress: `tight` (default true) matters only with `abstract`. */
export interface UnixAddress {
  type: 'unix';
  path: string;
  abstract?: boolean;
  tight?: boolean;
}

export type StreamAddress = InetAddress | UnixAddress;

/** sizeof(sockaddr_un.sun_path) on Linux. */
export const UNIX_PATH_MAX = 108;

/**
 * A socket could not be set up; the message is QEMU's. `hint` is the second line QEMU prints
 * under it on its command line (never in a QMP reply).
 *
 *   QmigrateError (src/errors.ts)
 *    +-- SocketError  SOCKET_ADDRESS, SOCKET_RESOLVE, SOCKET_CONNECT, SOCKET_BIND, SOCKET_LISTEN
 */
export class SocketError extends QmigrateError {
  readonly hint: string | undefined;

  constructor(code: string, message: string, options?: { cause?: unknown; hint?: string }) {
    super(code, message, options);
    this.hint = options?.hint;
  }
}

/** How QEMU's messages name an address. */
export function describeAddress(addr: StreamAddress): string {
  return addr.type === 'inet' ? `${addr.host}:${addr.port}` : addr.path;
}

/** Whether an IP address is this host's loopback (127.0.0.0/8, ::1, or 127.x mapped in IPv6). */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase().replace(/^::ffff:(?=\d+\.)/, '');
  return /^127\.\d+\.\d+\.\d+$/.test(h) || h === '::1' || h === '0:0:0:0:0:0:0:1';
}

/**
 * The first address of a listener that other hosts can reach, as `host:port` (`[v6]:port`):
 * an inet address not on the loopback (0.0.0.0 and :: included). Unix sockets are reached
 * through the file system only.
 * @param bound what the listener reports (socketListen's addresses: host names resolved).
 */
export function exposedAddress(
  bound: readonly { type: string; host?: string; port?: string }[],
): string | undefined {
  const a = bound.find((x) => x.type === 'inet' && x.host !== undefined && !isLoopbackHost(x.host));
  if (!a) return undefined;
  return `${a.host!.includes(':') ? `[${a.host}]` : a.host}:${a.port}`;
}

/**
 * Refuses a unix path the kernel would cut: longer than sun_path, or, for an abstract name
 * (which follows a NUL), longer than sun_path less one byte; a path or name with a NUL in it.
 * @throws {SocketError} `UNIX socket path '...' is too long`, as QEMU words it.
 */
export function checkUnixPath(addr: UnixAddress): void {
  // The kernel ends a path at its first NUL, so it would reach another socket. QEMU's JSON
  // parser makes U+0000 the bytes C0 80, a name Node cannot pass; an abstract name with a
  // real NUL would be one that no QEMU peer can name.
  if (addr.path.includes('\0')) {
    throw new SocketError(
      'SOCKET_ADDRESS',
      addr.abstract
        ? `UNIX socket name '${addr.path}' has a NUL character, which QEMU names by the bytes C0 80 and qmigrate cannot`
        : `UNIX socket path '${addr.path}' has a NUL character, where the kernel would cut it`,
    );
  }
  const max = addr.abstract ? UNIX_PATH_MAX - 1 : UNIX_PATH_MAX;
  if (Buffer.byteLength(addr.path) > max) {
    throw new SocketError('SOCKET_ADDRESS', `UNIX socket path '${addr.path}' is too long`, {
      hint: `Path must be less than ${max} bytes`,
    });
  }
}

const isTight = (addr: UnixAddress) => addr.tight !== false;
/** The tight abstract form is the one Node cannot name itself before libuv 1.48. */
const needsLibc = (addr: UnixAddress) => addr.abstract === true && isTight(addr) && !NODE_HAS_TIGHT_ABSTRACT;

/**
 * The name to hand Node for a unix address. An abstract name is a leading NUL and the name;
 * `tight=off` pads it with NULs to the whole sun_path, as QEMU then passes the whole
 * sockaddr_un (a padded name is one the kernel tells apart from the bare one).
 */
function nodePath(addr: UnixAddress): string {
  if (!addr.abstract) return addr.path;
  const name = `\0${addr.path}`;
  return isTight(addr) ? name : name + '\0'.repeat(UNIX_PATH_MAX - Buffer.byteLength(name));
}

/** Which getaddrinfo family QEMU asks for (inet_ai_family_from_address): 0, 4 or 6. */
function inetFamily(addr: InetAddress): 0 | 4 | 6 {
  const { ipv4, ipv6 } = addr;
  if (ipv4 === false && ipv6 === false) {
    throw new SocketError('SOCKET_ADDRESS', 'Cannot disable IPv4 and IPv6 at same time');
  }
  if (ipv4 === true && ipv6 === true) return 0;
  if (ipv6 === true || ipv4 === false) return 6;
  if (ipv4 === true || ipv6 === false) return 4;
  return 0;
}

/**
 * A numeric port, or getaddrinfo's answer to anything else (no service names here).
 * @throws {SocketError} `address resolution failed for HOST:PORT: Servname not supported ...`.
 */
export function inetPort(addr: InetAddress): number {
  const n = Number(addr.port);
  if (!/^\d+$/.test(addr.port) || n > 65535) {
    throw new SocketError(
      'SOCKET_RESOLVE',
      `address resolution failed for ${addr.host}:${addr.port}: Servname not supported for ai_socktype`,
    );
  }
  return n;
}

/** util/qemu-sockets.c's words for a failed getaddrinfo(): `why` is gai_strerror()'s text. */
function resolveFailed(addr: InetAddress, why: string, cause?: unknown): SocketError {
  return new SocketError('SOCKET_RESOLVE', `address resolution failed for ${describeAddress(addr)}: ${why}`, {
    cause,
  });
}

/**
 * What getaddrinfo() answers QEMU's connect before Node would get to it: Node takes an empty
 * host for `localhost` and never resolves an IP address, so it would connect where QEMU
 * refuses. An IPv4 address with only IPv6 allowed is left to Node: QEMU's AI_V4MAPPED
 * reaches the same peer through its mapped IPv6 form.
 * @throws {SocketError} `address resolution failed for HOST:PORT: ...`.
 */
function checkConnectHost(addr: InetAddress, family: 0 | 4 | 6): void {
  if (addr.host === '') throw resolveFailed(addr, 'Name or service not known');
  if (family === 4 && isIPv6(addr.host))
    throw resolveFailed(addr, 'Address family for hostname not supported');
}

/** Waits for a connecting socket; on abort destroys it and rejects with the signal's reason. */
function connected(s: Socket, signal: AbortSignal | undefined): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      s.destroy();
      reject(signal?.reason);
    };
    const onError = (e: Error) => {
      signal?.removeEventListener('abort', onAbort);
      reject(e);
    };
    if (signal?.aborted) return onAbort();
    signal?.addEventListener('abort', onAbort, { once: true });
    s.once('error', onError);
    s.once('connect', () => {
      signal?.removeEventListener('abort', onAbort);
      s.off('error', onError);
      resolve(s);
    });
  });
}

async function connectUnixOnce(addr: UnixAddress, opts: ConnectOptions): Promise<Socket> {
  const allowHalfOpen = opts.allowHalfOpen ?? false;
  if (needsLibc(addr)) {
    const fd = connectTightAbstract(Buffer.from(addr.path));
    return new Socket({ fd, readable: true, writable: true, allowHalfOpen });
  }
  return connected(netConnect({ path: nodePath(addr), allowHalfOpen }), opts.signal);
}

export interface ConnectOptions {
  /** Aborts a pending connect (or the wait for a full backlog): rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Keep our side writable after the peer's FIN (Node's allowHalfOpen). */
  allowHalfOpen?: boolean;
}

/**
 * Connects to an inet or unix address as QEMU's socket_connect() does. A unix listener whose
 * backlog is full makes a non-blocking connect fail with EAGAIN where QEMU's blocking one
 * waits; this waits too, retrying, until it gets in or `signal` fires.
 * @throws {SocketError} with QEMU's text: `UNIX socket path '...' is too long`,
 *   `address resolution failed for HOST:PORT: ...`, `Failed to connect to '...': ...`.
 * @throws the signal's reason once it is aborted.
 */
export async function socketConnect(addr: StreamAddress, opts: ConnectOptions = {}): Promise<Socket> {
  const { signal } = opts;
  signal?.throwIfAborted();
  if (addr.type === 'unix') {
    checkUnixPath(addr);
    for (let pause = 1; ; pause = Math.min(pause * 2, 50)) {
      try {
        return await connectUnixOnce(addr, opts);
      } catch (e) {
        signal?.throwIfAborted();
        if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') {
          throw new SocketError('SOCKET_CONNECT', `Failed to connect to '${addr.path}': ${strerror(e)}`, {
            cause: e,
          });
        }
      }
      try {
        await sleep(pause, undefined, { signal });
      } catch {
        signal?.throwIfAborted();
      }
    }
  }
  const family = inetFamily(addr);
  checkConnectHost(addr, family);
  const s = netConnect({
    host: addr.host,
    port: inetPort(addr),
    family,
    allowHalfOpen: opts.allowHalfOpen ?? false,
  });
  try {
    await connected(s, signal);
  } catch (e) {
    signal?.throwIfAborted();
    const gai = gaiStrerror(e);
    if (gai !== undefined) throw resolveFailed(addr, gai, e);
    throw new SocketError(
      'SOCKET_CONNECT',
      `Failed to connect to '${describeAddress(addr)}': ${strerror(e)}`,
      {
        cause: e,
      },
    );
  }
  if (addr['keep-alive']) s.setKeepAlive(true);
  return s;
}

/**
 * libuv turns a unix bind's ENOENT into EACCES (for Windows' sake): a path where no socket
 * can be made (in /proc, say) would read "Permission denied". Where the directory is
 * writable, EACCES cannot be bind(2)'s own answer, so it is ENOENT again, as QEMU prints.
 */
function unixBindErrno(addr: StreamAddress, e: Error): Error {
  if (addr.type !== 'unix' || addr.abstract || (e as NodeJS.ErrnoException).code !== 'EACCES') return e;
  try {
    accessSync(dirname(addr.path), constants.W_OK);
  } catch {
    return e;
  }
  return systemError('ENOENT', 'bind', { message: e.message });
}

/**
 * An empty unix path names a fresh socket in the temporary directory, as QEMU's
 * unix_listen_saddr() makes one: `qemu-socket-XXXXXX`, reserved as a file (mkstemp) that
 * is removed again just before the bind.
 * @throws {SocketError} `Failed to make a temporary socket ...`.
 */
function tempSocket(addr: UnixAddress): UnixAddress {
  const ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  for (let tries = 0; ; tries++) {
    const path = join(tmpdir(), `qemu-socket-${Array.from(randomBytes(6), (b) => ALNUM[b % 62]).join('')}`);
    checkUnixPath({ ...addr, path });
    try {
      closeSync(openSync(path, 'wx', 0o600));
      return { ...addr, path };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST' && tries < 100) continue;
      throw new SocketError('SOCKET_BIND', `Failed to make a temporary socket ${path}: ${strerror(e)}`, {
        cause: e,
      });
    }
  }
}

/** What a file that is not a socket is, for the message that refuses to remove it. */
function fileKind(st: Stats): string {
  if (st.isFile()) return 'a regular file';
  if (st.isSymbolicLink()) return 'a symbolic link';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  return 'a file';
}

/** Linux's __SO_ACCEPTCON: the Flags column of /proc/net/unix has it on a listening socket. */
const SO_ACCEPTCON = 0x10000;

/**
 * Whether /proc/net/unix lists a socket listening at `path` (this network namespace's
 * sockets, each under the path it was bound with). Asking the kernel spares the listener the
 * probe connection, which a migration destination would take for its stream and fail on.
 */
function listedListening(path: string): boolean {
  let table: string;
  try {
    table = readFileSync('/proc/net/unix', 'latin1');
  } catch {
    return false;
  }
  // The table holds the path's bytes; compare them as bytes (latin1 keeps each one).
  const names = new Set([path, resolve(path)].map((p) => Buffer.from(p).toString('latin1')));
  for (const line of table.split('\n')) {
    // Num: RefCount Protocol Flags Type St Inode Path
    const m = /^\S+: \S+ \S+ ([0-9A-Fa-f]+) \S+ \S+ \S+ (.+)$/.exec(line);
    if (m && (Number.parseInt(m[1]!, 16) & SO_ACCEPTCON) !== 0 && names.has(m[2]!)) return true;
  }
  return false;
}

/**
 * Whether something accepts connections on the socket at `path`: a refused connect means
 * stale, a full backlog means live.
 * @throws {SocketError} when the connect fails otherwise (no permission, say): whether the
 *   socket is in use cannot be told, so it stays.
 */
function accepts(path: string): Promise<boolean> {
  return new Promise((res, rej) => {
    const s = netConnect({ path });
    s.once('connect', () => {
      s.destroy();
      res(true);
    });
    s.once('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ECONNREFUSED' || e.code === 'ENOENT') res(false);
      else if (e.code === 'EAGAIN') res(true);
      else
        rej(
          new SocketError(
            'SOCKET_BIND',
            `Failed to bind socket to ${path}: cannot tell whether the socket there is in use: ${strerror(e)}`,
            { cause: e },
          ),
        );
    });
  });
}

/**
 * Makes way for a unix listener at `path`: a stale socket (one whose connect is refused) is
 * removed; anything else stays and is refused by name. QEMU's unix_listen_saddr()
 * (util/qemu-sockets.c) unlinks whatever is there first: QEMU 10.0 deletes a regular file at
 * a `-qmp` or `-incoming` path and takes the path from a socket another process listens on;
 * only a directory stops it (its text is kept here).
 * @throws {SocketError} `Failed to unlink socket PATH: Is a directory`, `Failed to bind
 *   socket to PATH: a regular file is there, ...`, `...: a live socket is there ...`.
 */
async function clearStaleSocket(path: string): Promise<void> {
  // Whether the socket is stale is learnt over a connect, i.e. across event-loop turns: by
  // the time it is known, another listener (in this process or another) may have removed the
  // same stale socket and bound its own. Only the very file found stale is removed: when the
  // path holds another file by then, that one is judged afresh.
  for (let look = 1; ; look++) {
    let st: Stats;
    try {
      st = lstatSync(path);
    } catch {
      return; // nothing there, or nothing we may look at: bind(2) says which
    }
    if (st.isDirectory()) {
      throw new SocketError('SOCKET_BIND', `Failed to unlink socket ${path}: ${errnoText('EISDIR')}`);
    }
    if (!st.isSocket()) {
      throw new SocketError(
        'SOCKET_BIND',
        `Failed to bind socket to ${path}: ${fileKind(st)} is there, not a socket (only a stale socket is replaced)`,
      );
    }
    if (listedListening(path) || (await accepts(path)) || look > MAX_STALE_LOOKS) {
      throw new SocketError(
        'SOCKET_BIND',
        `Failed to bind socket to ${path}: a live socket is there (something accepts connections on it)`,
      );
    }
    // Looked at again with no turn of the event loop before the unlink: the file must be the
    // one found stale (an inode number alone can name a new socket: tmpfs reuses them at
    // once), and no listener may be listed at the path.
    if (!sameFile(st, path) || listedListening(path)) continue;
    try {
      unlinkSync(path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw new SocketError('SOCKET_BIND', `Failed to unlink socket ${path}: ${strerror(e)}`, { cause: e });
      }
    }
    return;
  }
}

/**
 * How often clearStaleSocket looks again when the file at the path keeps changing under it;
 * past that, someone keeps binding there, and the path is taken as in use.
 */
const MAX_STALE_LOOKS = 8;

/** Whether `path` still names the file `st` describes (same device, inode and change time). */
function sameFile(st: Stats, path: string): boolean {
  try {
    const now = lstatSync(path);
    return now.dev === st.dev && now.ino === st.ino && now.ctimeMs === st.ctimeMs;
  } catch {
    return false;
  }
}

/**
 * Binds `server` to an inet or unix address and listens, as QEMU's socket_listen() does. At
 * a unix path only a stale socket is replaced; a file, a directory or a socket in use makes
 * the listen fail and stays as it was.
 * @returns the addresses really bound (port 0 resolved), as query-migrate reports them.
 * @throws {SocketError} with QEMU's texts (`Failed to bind socket to PATH: ...`, ...), and
 *   clearStaleSocket's for what is at a unix path.
 */
export async function socketListen(
  server: Server,
  given: StreamAddress,
  opts: { backlog?: number } = {},
): Promise<StreamAddress[]> {
  const backlog = opts.backlog ?? 511;
  const addr = given.type === 'unix' && given.path === '' && !given.abstract ? tempSocket(given) : given;
  const bindError = (e: unknown) => {
    // Node resolves a listener's host name inside listen(): QEMU's getaddrinfo() words that.
    const gai = addr.type === 'inet' ? gaiStrerror(e) : undefined;
    if (addr.type === 'inet' && gai !== undefined) return resolveFailed(addr, gai, e);
    return new SocketError(
      'SOCKET_BIND',
      addr.type === 'unix'
        ? `Failed to bind socket to ${addr.path}: ${strerror(e)}`
        : `Failed to bind socket: ${strerror(e)}`,
      { cause: e },
    );
  };
  if (addr.type === 'unix') {
    checkUnixPath(addr);
    if (!addr.abstract) {
      // Node reports a missing directory as EACCES; bind(2) says ENOENT, as QEMU prints.
      if (!existsSync(dirname(addr.path))) throw bindError({ code: 'ENOENT' });
      if (addr === given) await clearStaleSocket(addr.path);
      else {
        // The temporary name is our own reservation (see tempSocket): bind fails if it is back.
        try {
          unlinkSync(addr.path);
        } catch {}
      }
    }
  }
  let fd: number | undefined;
  if (addr.type === 'unix' && needsLibc(addr)) {
    try {
      fd = listenTightAbstract(Buffer.from(addr.path), backlog);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).syscall !== 'listen') throw bindError(e);
      throw new SocketError('SOCKET_LISTEN', `Failed to listen on socket: ${strerror(e)}`, { cause: e });
    }
  }
  const port = addr.type === 'inet' ? inetPort(addr) : 0;
  await new Promise<void>((resolve, reject) => {
    const onError = (e: Error) => reject(bindError(unixBindErrno(addr, e)));
    server.once('error', onError);
    const done = () => {
      server.off('error', onError);
      resolve();
    };
    if (fd !== undefined) server.listen({ fd }, done);
    else if (addr.type === 'unix') server.listen({ path: nodePath(addr), backlog }, done);
    else {
      const host = addr.host === '' ? undefined : addr.host;
      server.listen({ host, port, backlog, ipv6Only: addr.ipv6 === true && addr.ipv4 === false }, done);
    }
  });
  if (addr.type === 'unix') {
    return [
      addr.abstract
        ? { type: 'unix', path: addr.path, abstract: true, tight: isTight(addr) }
        : { type: 'unix', path: addr.path },
    ];
  }
  const bound = server.address();
  if (!bound || typeof bound === 'string') return [];
  const a: InetAddress = { type: 'inet', host: bound.address, port: String(bound.port) };
  if (isIPv4(bound.address)) a.ipv4 = true;
  else if (isIPv6(bound.address)) a.ipv6 = true;
  return [a];
}
