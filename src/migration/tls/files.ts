/**
 * Reading the files of a credentials `dir` (crypto/tlscreds.c qcrypto_tls_creds_get_path, then
 * GnuTLS or glib reading them): the path as QEMU spells it, and a read that can neither block
 * the event loop (a FIFO, which QEMU 10.0 waits on for ever) nor take unbounded memory.
 */
import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import { genericError } from '../../qapi/errors.js';
import { systemError } from '../../util/errno.js';

/**
 * The largest credentials file read (CA list, certificate, key, CRL, DH parameters, keys.psk).
 * Real ones are a few KiB; a CRL of a large CA a few MiB.
 */
export const MAX_CREDS_FILE = 16 << 20;

/** `dir/file` as QEMU formats it (`%s/%s`): no normalisation, so `dir=""` is `/file`. */
export function credsFile(dir: string, file: string): string {
  return `${dir}/${file}`;
}

/**
 * A credentials file's bytes. Opened without blocking and refused unless a regular file (after
 * symlinks) of at most MAX_CREDS_FILE bytes.
 * @throws a Node system error (EISDIR for a directory, ENOENT, ...), so that strerror() gives
 * glib's text, or a QapiError whose text says why the file is refused.
 */
export function readCredsFile(path: string): Buffer {
  // O_NONBLOCK: opening a FIFO without a writer would otherwise wait here.
  const fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  try {
    const st = fstatSync(fd);
    if (st.isDirectory()) {
      throw systemError('EISDIR', 'read');
    }
    if (!st.isFile()) throw genericError('Not a regular file');
    if (st.size > MAX_CREDS_FILE)
      throw genericError(`File is larger than ${MAX_CREDS_FILE >> 20} MiB (${st.size} bytes)`);
    const buf = Buffer.alloc(st.size);
    let n = 0;
    while (n < buf.length) {
      const got = readSync(fd, buf, n, buf.length - n, n);
      if (got === 0) break;
      n += got;
    }
    return buf.subarray(0, n);
  } finally {
    closeSync(fd);
  }
}
