/**
 * Linux abstract unix sockets whose address length covers only the name (QEMU's `tight=on`,
 * its default). libuv before 1.48 (Node 20) always passes the whole sockaddr_un, which is
 * QEMU's `tight=off`; where Node cannot express the tight form, the socket is made through
 * libc with the optional `koffi` package and handed to Node by its descriptor.
 */
import { createRequire } from 'node:module';
import { constants, endianness } from 'node:os';
import { QmigrateError } from '../errors.js';
import { systemError } from './errno.js';

/** Whether Node's own pipes give abstract names their exact length (libuv >= 1.48). */
export const NODE_HAS_TIGHT_ABSTRACT = (() => {
  const [major = 0, minor = 0] = (process.versions.uv ?? '0.0').split('.').map(Number);
  return major > 1 || (major === 1 && minor >= 48);
})();

interface Libc {
  socket(domain: number, type: number, protocol: number): number;
  bind(fd: number, addr: Buffer, len: number): number;
  listen(fd: number, backlog: number): number;
  connect(fd: number, addr: Buffer, len: number): number;
  close(fd: number): number;
  errno(): number;
}

const AF_UNIX = 1;
const SOCK_STREAM = 1;
// Linux's generic values (x86, arm, riscv, powerpc); the sockets are non-blocking for libuv.
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
const SUN_PATH_OFFSET = 2;

let libc: Libc | undefined;

function loadLibc(): Libc {
  if (libc) return libc;
  let koffi: typeof import('koffi');
  try {
    koffi = createRequire(import.meta.url)('koffi');
  } catch {
    throw new QmigrateError(
      'SOCKET_TIGHT_UNSUPPORTED',
      `abstract unix sockets with tight=on need Node.js with libuv 1.48 or later (this one has ${process.versions.uv}) or the optional 'koffi' package`,
    );
  }
  const lib = koffi.load(null);
  libc = {
    socket: lib.func('int socket(int, int, int)'),
    bind: lib.func('int bind(int, const void *, uint32_t)'),
    listen: lib.func('int listen(int, int)'),
    connect: lib.func('int connect(int, const void *, uint32_t)'),
    close: lib.func('int close(int)'),
    errno: () => koffi.errno(),
  };
  return libc;
}

/** libc's errno `n` as Node's system errors carry it, so that strerror() words it. */
function sysError(syscall: string, n: number): NodeJS.ErrnoException {
  const code = Object.entries(constants.errno).find(([, v]) => v === n)?.[0] ?? `E${n}`;
  return systemError(code, syscall, { errno: -n });
}

/** sockaddr_un for abstract `name`, and the length that covers only the name. */
function tightAddress(name: Buffer): { addr: Buffer; len: number } {
  const addr = Buffer.alloc(SUN_PATH_OFFSET + 108);
  if (endianness() === 'LE') addr.writeUInt16LE(AF_UNIX, 0);
  else addr.writeUInt16BE(AF_UNIX, 0);
  name.copy(addr, SUN_PATH_OFFSET + 1);
  return { addr, len: SUN_PATH_OFFSET + 1 + name.length };
}

function openSocket(c: Libc): number {
  const fd = c.socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw sysError('socket', c.errno());
  return fd;
}

/**
 * Connects to the tight abstract name `name` without blocking.
 * @returns the connected descriptor, for `new net.Socket({ fd })`.
 * @throws a Node-style system error (EAGAIN when the listener's backlog is full).
 */
export function connectTightAbstract(name: Buffer): number {
  const c = loadLibc();
  const fd = openSocket(c);
  const { addr, len } = tightAddress(name);
  if (c.connect(fd, addr, len) < 0) {
    const e = sysError('connect', c.errno());
    c.close(fd);
    throw e;
  }
  return fd;
}

/**
 * Binds and listens on the tight abstract name `name`.
 * @returns the listening descriptor, for `server.listen({ fd })`.
 * @throws a Node-style system error, `syscall` telling which call failed.
 */
export function listenTightAbstract(name: Buffer, backlog: number): number {
  const c = loadLibc();
  const fd = openSocket(c);
  const { addr, len } = tightAddress(name);
  let failed: NodeJS.ErrnoException | undefined;
  if (c.bind(fd, addr, len) < 0) failed = sysError('bind', c.errno());
  else if (c.listen(fd, backlog) < 0) failed = sysError('listen', c.errno());
  if (failed) {
    c.close(fd);
    throw failed;
  }
  return fd;
}
