/**
 * The fd transport (migration/fd.c). Node cannot receive descriptors over a unix socket
 * (SCM_RIGHTS), so qmigrate takes them the other way QEMU supports: inherited at start.
 * `-add-fd fd=N,set=S,opaque=NAME` registers fd N under NAME (and in fd set S), and
 * `fd:NAME` then finds it; an incoming `fd:N` with a number uses inherited fd N directly.
 */
import { createReadStream, createWriteStream, fstatSync } from 'node:fs';
import { Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { genericError } from '../../qapi/errors.js';

/** Resolves `fd:STR` to a descriptor, as QEMU's monitor_fd_param does. */
export function resolveFd(str: string, names: ReadonlyMap<string, number>, incoming: boolean): number {
  if (incoming && /^\d/.test(str)) {
    const n = Number(str);
    if (!Number.isInteger(n)) throw genericError(`Invalid file descriptor number '${str}'`);
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
    return new Socket({ fd, readable: true, writable: true, allowHalfOpen: direction === 'out' });
  }
  const half = direction === 'out' ? createWriteStream('', { fd }) : createReadStream('', { fd });
  return direction === 'out' ? Duplex.from({ writable: half }) : Duplex.from({ readable: half });
}
