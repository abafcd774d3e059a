/**
 * The file transport (migration/file.c): the stream is written to, or read from, a file at
 * a byte offset. `/dev/fdset/N` names a file descriptor set passed with -add-fd.
 */
import {
  closeSync,
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

/** Opens the outgoing file: created, truncated to `offset`, written from there. */
export function openFileOut(filename: string, offset: number, fdsets: FdSets): WriteStream {
  let fd = fdsetFd(filename, fdsets);
  if (fd === undefined) {
    try {
      fd = openSync(filename, 'w', 0o600);
    } catch (e) {
      throw genericError(`Could not create '${filename}': ${strerror(e)}`);
    }
  }
  try {
    ftruncateSync(fd, offset);
  } catch (e) {
    closeSync(fd);
    throw genericError(`failed to truncate migration file to offset ${offset.toString(16)}: ${strerror(e)}`);
  }
  return createWriteStream('', { fd, start: offset, highWaterMark: 4 << 20 });
}

/** Opens the incoming file and reads from `offset`. */
export function openFileIn(filename: string, offset: number, fdsets: FdSets): ReadStream {
  let fd = fdsetFd(filename, fdsets);
  if (fd === undefined) {
    try {
      fd = openSync(filename, 'r');
    } catch (e) {
      throw genericError(`Could not open '${filename}': ${strerror(e)}`);
    }
  }
  return createReadStream('', { fd, start: offset, highWaterMark: 4 << 20 });
}
