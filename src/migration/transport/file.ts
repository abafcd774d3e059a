/**
 * The file transport (migration/file.c): the stream is written to, or read from, a file at
 * a byte offset. `/dev/fdset/N` names a file descriptor set passed with -add-fd.
 */
import {
  closeSync,
  constants,
  createReadStream,
  createWriteStream,
  ftruncateSync,
  openSync,
  type ReadStream,
  type WriteStream,
} from 'node:fs';
import { genericError } from '../../qapi/errors.js';
import { strerror } from '../../util/errno.js';

export type FdSets = ReadonlyMap<number, number[]>;

function fdsetFd(filename: string, fdsets: FdSets): number | undefined {
  const m = /^\/dev\/fdset\/(\d+)$/.exec(filename);
  if (!m) return undefined;
  const fds = fdsets.get(Number(m[1]));
  if (!fds?.length) throw genericError(`Could not open '${filename}': No such file or directory`);
  return fds[0];
}

/**
 * Opens the outgoing file as QEMU 10.0 does: created if missing (mode 0600) but not truncated
 * on open, then cut to `offset` and written from there. The bytes before the offset are left
 * as they were: that is what the offset is for (a header of another program's format).
 * @throws {QapiError} `Could not create '...'` or `failed to truncate migration file to offset X`.
 */
export function openFileOut(filename: string, offset: number, fdsets: FdSets): WriteStream {
  // An fd set's descriptor stays in its set after the migration (QEMU works on a dup of it).
  let fd = fdsetFd(filename, fdsets);
  const own = fd === undefined;
  if (fd === undefined) {
    try {
      fd = openSync(filename, constants.O_WRONLY | constants.O_CREAT, 0o600);
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

/** Opens the incoming file and reads from `offset`. */
export function openFileIn(filename: string, offset: number, fdsets: FdSets): ReadStream {
  let fd = fdsetFd(filename, fdsets);
  const own = fd === undefined;
  if (fd === undefined) {
    try {
      fd = openSync(filename, 'r');
    } catch (e) {
      throw genericError(`Could not open '${filename}': ${strerror(e)}`);
    }
  }
  return createReadStream('', { fd, start: offset, highWaterMark: 4 << 20, autoClose: own });
}
