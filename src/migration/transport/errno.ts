/** strerror() texts for the errno codes Node reports, as QEMU prints them. */
const TEXTS: Record<string, string> = {
  ENOENT: 'No such file or directory',
  EACCES: 'Permission denied',
  EADDRINUSE: 'Address already in use',
  EADDRNOTAVAIL: 'Cannot assign requested address',
  ECONNREFUSED: 'Connection refused',
  ECONNRESET: 'Connection reset by peer',
  EPIPE: 'Broken pipe',
  ENOTDIR: 'Not a directory',
  EISDIR: 'Is a directory',
  ENOSPC: 'No space left on device',
  ETIMEDOUT: 'Connection timed out',
  EHOSTUNREACH: 'No route to host',
  ENETUNREACH: 'Network is unreachable',
  ENOTFOUND: 'Name or service not known',
  EAI_AGAIN: 'Temporary failure in name resolution',
  EROFS: 'Read-only file system',
  EBADF: 'Bad file descriptor',
};

export function strerror(e: unknown): string {
  const code = (e as NodeJS.ErrnoException)?.code;
  return (code && TEXTS[code]) ?? (e as Error)?.message ?? String(e);
}
