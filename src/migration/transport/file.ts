/**
 * The file transport (migration/file.c): the stream is written to, or read from, a file at
 * a byte offset. `/dev/fdset/N` names a file descriptor set passed with -add-fd, whose
 * member of the right access mode is used in place of opening a file (util/osdep.c).
 */
import {
  closeSync,
  constants,
  createReadStream,
  createWriteStream,
  fstatSync,
  ftruncateSync,
  openSync,
  readFileSync,
  type WriteStream,
} from 'node:fs';
import { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import { genericError } from '../../qapi/errors.js';
import { strerror } from '../../util/errno.js';

export type FdSets = ReadonlyMap<number, number[]>;

const O_ACCMODE = 3;

/**
 * A descriptor's status flags (fcntl F_GETFL), with O_CLOEXEC when close-on-exec is set,
 * which Node does not offer: Linux shows them in /proc/self/fdinfo/N, in octal.
 * @returns the flags, or undefined when the descriptor is not open.
 */
function fdStatusFlags(fd: number): number | undefined {
  try {
    const m = /^flags:\s*([0-7]+)$/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'latin1'));
    return m ? Number.parseInt(m[1]!, 8) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The descriptor `/dev/fdset/N` stands for when opened with `flags`, as QEMU's
 * monitor_fdset_dup_fd_add() picks it: the most recently added member of set N whose access
 * mode (read-only, write-only, read-write) is the one asked for. Undefined for another path.
 * @throws {QapiError} with QEMU 10.0's texts for a bad set number, a missing set, or no
 *   member of the right mode.
 */
function fdsetFd(filename: string, flags: number, fdsets: FdSets): number | undefined {
  if (!filename.startsWith('/dev/fdset/')) return undefined;
  // qemu_parse_fd(): a decimal int (strtol, so leading blanks and a sign are taken), >= 0.
  const m = /^[ \t\n\v\f\r]*([+-]?\d+)$/.exec(filename.slice('/dev/fdset/'.length));
  const id = m ? Number(m[1]) : -1;
  if (!(id >= 0 && id <= 0x7fffffff)) throw genericError(`Could not parse fdset ${filename}`);
  const fds = fdsets.get(id);
  if (!fds?.length) throw genericError(`Failed to find fdset /dev/fdset/${id}`);
  for (const fd of [...fds].reverse()) {
    const fl = fdStatusFlags(fd);
    if (fl === undefined) throw genericError(`Failed to read file status flags for fd=${fd}`);
    if ((fl & O_ACCMODE) === (flags & O_ACCMODE)) return fd;
  }
  throw genericError(`Failed to find file descriptor with matching flags=0x${flags.toString(16)}`);
}

/**
 * The name to open: QEMU's JSON parser turns U+0000 into the bytes C0 80 (modified UTF-8),
 * so a name with one names that file; Node refuses a NUL in a path string.
 */
function fsName(filename: string): string | Buffer {
  if (!filename.includes('\0')) return filename;
  const parts = filename.split('\0').map((p) => Buffer.from(p));
  return Buffer.concat(parts.flatMap((p, i) => (i ? [Buffer.from([0xc0, 0x80]), p] : [p])));
}

/**
 * Opens the outgoing file as QEMU 10.0 does: created if missing (mode 0600) but not truncated
 * on open, then cut to `offset` and written from there. The bytes before the offset are left
 * as they were: that is what the offset is for (a header of another program's format).
 * @throws {QapiError} `Could not create '...'` or `failed to truncate migration file to offset X`.
 */
export function openFileOut(filename: string, offset: number, fdsets: FdSets): WriteStream {
  // An fd set's descriptor stays in its set after the migration (QEMU works on a dup of it).
  const flags = constants.O_WRONLY | constants.O_CREAT;
  let fd = fdsetFd(filename, flags, fdsets);
  const own = fd === undefined;
  if (fd === undefined) {
    try {
      // Non-blocking: a FIFO nobody reads fails at once (ENXIO) where QEMU's open waits for
      // a reader with the whole process frozen. (One with a reader fails at the truncate.)
      fd = openSync(fsName(filename), flags | constants.O_NONBLOCK, 0o600);
    } catch (e) {
      throw genericError(`Could not create '${filename}': ${strerror(e)}`);
    }
  }
  try {
    ftruncateSync(fd, offset);
  } catch (e) {
    if (own) closeSync(fd);
    throw genericError(`failed to truncate migration file to offset ${offset.toString(16)}: ${strerror(e)}`);
  }
  return createWriteStream('', { fd, start: offset, highWaterMark: 4 << 20, autoClose: own });
}

/**
 * Opens the incoming file and reads from `offset`. A FIFO is read in the event loop, so the
 * VM waits for its writer with its monitors answering (QEMU's open blocks the process).
 * @throws {QapiError} `Could not open '...'`, or QEMU's seek error for an offset in a FIFO.
 */
export function openFileIn(filename: string, offset: number, fdsets: FdSets): Readable {
  let fd = fdsetFd(filename, constants.O_RDONLY, fdsets);
  const own = fd === undefined;
  if (fd === undefined) {
    try {
      fd = openSync(fsName(filename), constants.O_RDONLY | constants.O_NONBLOCK);
    } catch (e) {
      throw genericError(`Could not open '${filename}': ${strerror(e)}`);
    }
    if (fstatSync(fd).isFIFO()) {
      if (offset) {
        closeSync(fd);
        throw genericError(`Unable to seek to offset ${offset} whence 0 in file: Illegal seek`);
      }
      return new Socket({ fd, readable: true, writable: false });
    }
  }
  return createReadStream('', { fd, start: offset, highWaterMark: 4 << 20, autoClose: own });
}
