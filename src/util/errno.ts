/**
 * The texts QEMU prints for system errors: glibc's strerror() for every Linux errno, and
 * gai_strerror() for name resolution failures (util/qemu-sockets.c words those as
 * `address resolution failed for HOST:PORT: TEXT`). One table for every layer; Node's own
 * messages (libuv's, lower-case, with the syscall) never reach a QMP reply.
 */
import { constants } from 'node:os';

/**
 * Every Linux errno: name, number in the asm-generic numbering (x86, arm, riscv), and glibc
 * 2.36's strerror() text. Aliases (EWOULDBLOCK, EDEADLOCK, ENOTSUP) share their number's text.
 */
const LINUX_ERRNO: readonly (readonly [string, number, string])[] = [
  ['EPERM', 1, 'Operation not permitted'],
  ['ENOENT', 2, 'No such file or directory'],
  ['ESRCH', 3, 'No such process'],
  ['EINTR', 4, 'Interrupted system call'],
  ['EIO', 5, 'Input/output error'],
  ['ENXIO', 6, 'No such device or address'],
  ['E2BIG', 7, 'Argument list too long'],
  ['ENOEXEC', 8, 'Exec format error'],
  ['EBADF', 9, 'Bad file descriptor'],
  ['ECHILD', 10, 'No child processes'],
  ['EAGAIN', 11, 'Resource temporarily unavailable'],
  ['EWOULDBLOCK', 11, 'Resource temporarily unavailable'],
  ['ENOMEM', 12, 'Cannot allocate memory'],
  ['EACCES', 13, 'Permission denied'],
  ['EFAULT', 14, 'Bad address'],
  ['ENOTBLK', 15, 'Block device required'],
  ['EBUSY', 16, 'Device or resource busy'],
  ['EEXIST', 17, 'File exists'],
  ['EXDEV', 18, 'Invalid cross-device link'],
  ['ENODEV', 19, 'No such device'],
  ['ENOTDIR', 20, 'Not a directory'],
  ['EISDIR', 21, 'Is a directory'],
  ['EINVAL', 22, 'Invalid argument'],
  ['ENFILE', 23, 'Too many open files in system'],
  ['EMFILE', 24, 'Too many open files'],
  ['ENOTTY', 25, 'Inappropriate ioctl for device'],
  ['ETXTBSY', 26, 'Text file busy'],
  ['EFBIG', 27, 'File too large'],
  ['ENOSPC', 28, 'No space left on device'],
  ['ESPIPE', 29, 'Illegal seek'],
  ['EROFS', 30, 'Read-only file system'],
  ['EMLINK', 31, 'Too many links'],
  ['EPIPE', 32, 'Broken pipe'],
  ['EDOM', 33, 'Numerical argument out of domain'],
  ['ERANGE', 34, 'Numerical result out of range'],
  ['EDEADLK', 35, 'Resource deadlock avoided'],
  ['EDEADLOCK', 35, 'Resource deadlock avoided'],
  ['ENAMETOOLONG', 36, 'File name too long'],
  ['ENOLCK', 37, 'No locks available'],
  ['ENOSYS', 38, 'Function not implemented'],
  ['ENOTEMPTY', 39, 'Directory not empty'],
  ['ELOOP', 40, 'Too many levels of symbolic links'],
  ['ENOMSG', 42, 'No message of desired type'],
  ['EIDRM', 43, 'Identifier removed'],
  ['ECHRNG', 44, 'Channel number out of range'],
  ['EL2NSYNC', 45, 'Level 2 not synchronized'],
  ['EL3HLT', 46, 'Level 3 halted'],
  ['EL3RST', 47, 'Level 3 reset'],
  ['ELNRNG', 48, 'Link number out of range'],
  ['EUNATCH', 49, 'Protocol driver not attached'],
  ['ENOCSI', 50, 'No CSI structure available'],
  ['EL2HLT', 51, 'Level 2 halted'],
  ['EBADE', 52, 'Invalid exchange'],
  ['EBADR', 53, 'Invalid request descriptor'],
  ['EXFULL', 54, 'Exchange full'],
  ['ENOANO', 55, 'No anode'],
  ['EBADRQC', 56, 'Invalid request code'],
  ['EBADSLT', 57, 'Invalid slot'],
  ['EBFONT', 59, 'Bad font file format'],
  ['ENOSTR', 60, 'Device not a stream'],
  ['ENODATA', 61, 'No data available'],
  ['ETIME', 62, 'Timer expired'],
  ['ENOSR', 63, 'Out of streams resources'],
  ['ENONET', 64, 'Machine is not on the network'],
  ['ENOPKG', 65, 'Package not installed'],
  ['EREMOTE', 66, 'Object is remote'],
  ['ENOLINK', 67, 'Link has been severed'],
  ['EADV', 68, 'Advertise error'],
  ['ESRMNT', 69, 'Srmount error'],
  ['ECOMM', 70, 'Communication error on send'],
  ['EPROTO', 71, 'Protocol error'],
  ['EMULTIHOP', 72, 'Multihop attempted'],
  ['EDOTDOT', 73, 'RFS specific error'],
  ['EBADMSG', 74, 'Bad message'],
  ['EOVERFLOW', 75, 'Value too large for defined data type'],
  ['ENOTUNIQ', 76, 'Name not unique on network'],
  ['EBADFD', 77, 'File descriptor in bad state'],
  ['EREMCHG', 78, 'Remote address changed'],
  ['ELIBACC', 79, 'Can not access a needed shared library'],
  ['ELIBBAD', 80, 'Accessing a corrupted shared library'],
  ['ELIBSCN', 81, '.lib section in a.out corrupted'],
  ['ELIBMAX', 82, 'Attempting to link in too many shared libraries'],
  ['ELIBEXEC', 83, 'Cannot exec a shared library directly'],
  ['EILSEQ', 84, 'Invalid or incomplete multibyte or wide character'],
  ['ERESTART', 85, 'Interrupted system call should be restarted'],
  ['ESTRPIPE', 86, 'Streams pipe error'],
  ['EUSERS', 87, 'Too many users'],
  ['ENOTSOCK', 88, 'Socket operation on non-socket'],
  ['EDESTADDRREQ', 89, 'Destination address required'],
  ['EMSGSIZE', 90, 'Message too long'],
  ['EPROTOTYPE', 91, 'Protocol wrong type for socket'],
  ['ENOPROTOOPT', 92, 'Protocol not available'],
  ['EPROTONOSUPPORT', 93, 'Protocol not supported'],
  ['ESOCKTNOSUPPORT', 94, 'Socket type not supported'],
  ['EOPNOTSUPP', 95, 'Operation not supported'],
  ['ENOTSUP', 95, 'Operation not supported'],
  ['EPFNOSUPPORT', 96, 'Protocol family not supported'],
  ['EAFNOSUPPORT', 97, 'Address family not supported by protocol'],
  ['EADDRINUSE', 98, 'Address already in use'],
  ['EADDRNOTAVAIL', 99, 'Cannot assign requested address'],
  ['ENETDOWN', 100, 'Network is down'],
  ['ENETUNREACH', 101, 'Network is unreachable'],
  ['ENETRESET', 102, 'Network dropped connection on reset'],
  ['ECONNABORTED', 103, 'Software caused connection abort'],
  ['ECONNRESET', 104, 'Connection reset by peer'],
  ['ENOBUFS', 105, 'No buffer space available'],
  ['EISCONN', 106, 'Transport endpoint is already connected'],
  ['ENOTCONN', 107, 'Transport endpoint is not connected'],
  ['ESHUTDOWN', 108, 'Cannot send after transport endpoint shutdown'],
  ['ETOOMANYREFS', 109, 'Too many references: cannot splice'],
  ['ETIMEDOUT', 110, 'Connection timed out'],
  ['ECONNREFUSED', 111, 'Connection refused'],
  ['EHOSTDOWN', 112, 'Host is down'],
  ['EHOSTUNREACH', 113, 'No route to host'],
  ['EALREADY', 114, 'Operation already in progress'],
  ['EINPROGRESS', 115, 'Operation now in progress'],
  ['ESTALE', 116, 'Stale file handle'],
  ['EUCLEAN', 117, 'Structure needs cleaning'],
  ['ENOTNAM', 118, 'Not a XENIX named type file'],
  ['ENAVAIL', 119, 'No XENIX semaphores available'],
  ['EISNAM', 120, 'Is a named type file'],
  ['EREMOTEIO', 121, 'Remote I/O error'],
  ['EDQUOT', 122, 'Disk quota exceeded'],
  ['ENOMEDIUM', 123, 'No medium found'],
  ['EMEDIUMTYPE', 124, 'Wrong medium type'],
  ['ECANCELED', 125, 'Operation canceled'],
  ['ENOKEY', 126, 'Required key not available'],
  ['EKEYEXPIRED', 127, 'Key has expired'],
  ['EKEYREVOKED', 128, 'Key has been revoked'],
  ['EKEYREJECTED', 129, 'Key was rejected by service'],
  ['EOWNERDEAD', 130, 'Owner died'],
  ['ENOTRECOVERABLE', 131, 'State not recoverable'],
  ['ERFKILL', 132, 'Operation not possible due to RF-kill'],
  ['EHWPOISON', 133, 'Memory page has hardware error'],
];

/**
 * gai_strerror() texts by getaddrinfo error, named as libuv names them (Node's `errno` for a
 * failed lookup is libuv's UV_EAI_* number, whatever `code` says: Node folds EAI_NONAME and
 * EAI_NODATA both into `ENOTFOUND`). glibc 2.36 has no text of its own for EAI_OVERFLOW.
 */
const GAI_TEXT: Readonly<Record<string, string>> = {
  EAI_ADDRFAMILY: 'Address family for hostname not supported',
  EAI_AGAIN: 'Temporary failure in name resolution',
  EAI_BADFLAGS: 'Bad value for ai_flags',
  EAI_CANCELED: 'Request canceled',
  EAI_FAIL: 'Non-recoverable failure in name resolution',
  EAI_FAMILY: 'ai_family not supported',
  EAI_MEMORY: 'Memory allocation failure',
  EAI_NODATA: 'No address associated with hostname',
  EAI_NONAME: 'Name or service not known',
  EAI_OVERFLOW: 'Unknown error',
  EAI_SERVICE: 'Servname not supported for ai_socktype',
  EAI_SOCKTYPE: 'ai_socktype not supported',
};

/** libuv's UV_EAI_* numbers (include/uv/errno.h), which Node puts in a lookup error's `errno`. */
const UV_EAI: Readonly<Record<number, string>> = {
  [-3000]: 'EAI_ADDRFAMILY',
  [-3001]: 'EAI_AGAIN',
  [-3002]: 'EAI_BADFLAGS',
  [-3003]: 'EAI_CANCELED',
  [-3004]: 'EAI_FAIL',
  [-3005]: 'EAI_FAMILY',
  [-3006]: 'EAI_MEMORY',
  [-3007]: 'EAI_NODATA',
  [-3008]: 'EAI_NONAME',
  [-3009]: 'EAI_OVERFLOW',
  [-3010]: 'EAI_SERVICE',
  [-3011]: 'EAI_SOCKTYPE',
};

const BY_NAME = new Map<string, string>(LINUX_ERRNO.map(([name, , text]) => [name, text]));
const BY_NUMBER = new Map<number, string>();
// The running platform's numbers first (os.constants.errno is right for every architecture),
// then the generic numbers for the names Node does not list.
for (const [name, n] of Object.entries(constants.errno)) {
  const text = BY_NAME.get(name);
  if (text !== undefined && !BY_NUMBER.has(n)) BY_NUMBER.set(n, text);
}
for (const [name, n, text] of LINUX_ERRNO) {
  if (!(name in constants.errno) && !BY_NUMBER.has(n)) BY_NUMBER.set(n, text);
}

type SystemError = { code?: unknown; errno?: unknown; syscall?: unknown; message?: unknown };

/** glibc's text for an errno given by name (`'ECONNREFUSED'`) or number (positive or libuv's negative). */
export function errnoText(errno: string | number): string | undefined {
  if (typeof errno === 'string') return BY_NAME.get(errno);
  return BY_NUMBER.get(Math.abs(errno));
}

/** The getaddrinfo error of a failed name lookup (`'EAI_NONAME'`, ...), or undefined. */
export function gaiError(e: unknown): string | undefined {
  const { code, errno, syscall } = (e ?? {}) as SystemError;
  if (typeof errno === 'number' && UV_EAI[errno]) return UV_EAI[errno];
  if (syscall !== 'getaddrinfo' && syscall !== 'getnameinfo') return undefined;
  if (code === 'ENOTFOUND') return 'EAI_NONAME';
  return typeof code === 'string' && code in GAI_TEXT ? code : undefined;
}

/** gai_strerror()'s text for a failed name lookup, or undefined when `e` is not one. */
export function gaiStrerror(e: unknown): string | undefined {
  const name = gaiError(e);
  return name === undefined ? undefined : GAI_TEXT[name];
}

/**
 * What QEMU would print for a Node system error: glibc's strerror() text (by `code`, else by
 * `errno`), gai_strerror()'s for a failed lookup, else the error's own message.
 */
export function strerror(e: unknown): string {
  const err = (e ?? {}) as SystemError;
  const gai = gaiStrerror(e);
  if (gai !== undefined) return gai;
  if (typeof err.code === 'string') {
    const text = BY_NAME.get(err.code);
    if (text !== undefined) return text;
  }
  if (typeof err.errno === 'number') {
    const text = BY_NUMBER.get(Math.abs(err.errno));
    if (text !== undefined) return text;
  }
  return typeof err.message === 'string' ? err.message : String(e);
}

/**
 * An error shaped as Node's system errors are (`code`, `syscall`, a message `SYSCALL CODE`),
 * for a failure qmigrate meets where the kernel would report it (a channel closed under a
 * write: EPIPE), so that strerror() and `code` checks treat it as Node's own. Like Node's,
 * these are not QmigrateErrors: they reach users only as a `cause` or as strerror() text.
 */
export function systemError(
  code: string,
  syscall: string,
  options: { errno?: number; message?: string } = {},
): NodeJS.ErrnoException {
  const e: NodeJS.ErrnoException = new Error(options.message ?? `${syscall} ${code}`);
  e.code = code;
  e.syscall = syscall;
  if (options.errno !== undefined) e.errno = options.errno;
  return e;
}
