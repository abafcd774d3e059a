/**
 * The fd transport (migration/fd.c). Node cannot receive descriptors over a unix socket
 * (SCM_RIGHTS), so qmigrate takes them the other way QEMU supports: inherited at start.
 * `-add-fd fd=N,set=S,opaque=NAME` registers fd N under NAME (and in fd set S), and
 * `fd:NAME` then finds it; an incoming `fd:N` with a number uses inherited fd N directly.
 */
import {
  createReadStream,
  createWriteStream,
  existsSync,
  fstatSync,
  readdirSync,
  readlinkSync,
} from 'node:fs';
import { Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { genericError } from '../../qapi/errors.js';

/**
 * Whether `fd` is open and may be one the parent passed rather than one of Node's own.
 * QEMU asks for close-on-exec (system/vl.c parse_add_fd: inherited fds have it clear), which
 * tells nothing here: Node sets it on every fd it inherits (uv_disable_stdio_inheritance).
 * What Node opens for itself is told apart by kind instead (Linux /proc): event-loop objects
 * (anon inodes) and pipes with both ends in this process. A stream written into or read from
 * one of those breaks the event loop or kills the process.
 */
export function isInheritedFd(fd: number): boolean {
  if (!existsSync('/proc/self/fd')) {
    // No /proc to ask: an open fd is all that can be checked.
    try {
      fstatSync(fd);
      return true;
    } catch {
      return false;
    }
  }
  let target: string;
  try {
    target = readlinkSync(`/proc/self/fd/${fd}`);
  } catch {
    return false;
  }
  if (target.startsWith('anon_inode:')) return false;
  if (!target.startsWith('pipe:')) return true;
  let ends = 0;
  for (const other of readdirSync('/proc/self/fd')) {
    try {
      if (readlinkSync(`/proc/self/fd/${other}`) === target) ends++;
    } catch {
      // Closed meanwhile (the directory's own fd among them).
    }
  }
  return ends < 2;
}

/** Resolves `fd:STR` to a descriptor, as QEMU's monitor_fd_param does. */
export function resolveFd(str: string, names: ReadonlyMap<string, number>, incoming: boolean): number {
  if (incoming && /^\d/.test(str)) {
    const n = Number(str);
    if (!Number.isInteger(n) || !isInheritedFd(n))
      throw genericError(`Invalid file descriptor number '${str}'`);
    return n;
  }
  const fd = names.get(str);
  if (fd === undefined) throw genericError(`File descriptor named '${str}' has not been found`);
  return fd;
}

/** A stream over a descriptor: a socket or pipe both ways, a regular file one way. */
export function fdStream(fd: number, direction: 'out' | 'in'): Duplex {
  let st: ReturnType<typeof fstatSync>;
  try {
    st = fstatSync(fd);
  } catch {
    throw genericError(`Invalid file descriptor number '${fd}'`);
  }
  // Outgoing, the peer's FIN does not end our side (see connectSocket).
  if (st.isSocket() || st.isFIFO()) {
    try {
      return new Socket({ fd, readable: true, writable: true, allowHalfOpen: direction === 'out' });
    } catch (e) {
      // libuv watches it already: one of qmigrate's own sockets (a monitor's), never passed in.
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') {
        throw genericError(`Invalid file descriptor number '${fd}'`);
      }
      throw e;
    }
  }
  const half = direction === 'out' ? createWriteStream('', { fd }) : createReadStream('', { fd });
  return direction === 'out' ? Duplex.from({ writable: half }) : Duplex.from({ readable: half });
}
