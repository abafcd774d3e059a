/**
 * Where a QMP monitor is, as a user types it (`/run/vm.qmp`, `unix:PATH`, `HOST:PORT`,
 * `tcp:HOST:PORT`, `[::1]:4444`), and a bounded connection to it. QEMU's own `-qmp` takes
 * chardev syntax (chardev/char-socket.c); this is the shorter form of virsh and qmp-shell.
 */
import { ArgumentError } from '../errors.js';
import { QmpClient } from '../qmp/client.js';
import { PreflightError } from './errors.js';
import type { QmpEndpoint } from './types.js';

/**
 * Parses a monitor address. A text with a `/`, or without `:PORT`, is a unix socket path;
 * `HOST:PORT` and `[IPV6]:PORT` are tcp; `unix:` and `tcp:` prefixes say it outright.
 * @throws {ArgumentError} for an empty text, an empty path or host, or a port that is not
 *   1-65535.
 */
export function parseQmpEndpoint(text: string): QmpEndpoint {
  if (text === '') throw new ArgumentError('a QMP address is empty; give a socket path or HOST:PORT');
  if (text.startsWith('unix:')) {
    const path = text.slice(5);
    if (path === '') throw new ArgumentError(`QMP address '${text}' has no socket path after 'unix:'`);
    return { kind: 'unix', path };
  }
  if (text.startsWith('tcp:')) return parseHostPort(text, text.slice(4));
  // A path may hold colons; one that looks like a file (a slash, or no :DIGITS end) is one.
  if (text.includes('/') || !/:\d*$/.test(text)) return { kind: 'unix', path: text };
  return parseHostPort(text, text);
}

function parseHostPort(text: string, hostPort: string): QmpEndpoint {
  const m = /^(?:\[([^\]]*)\]|([^:[\]]*)):([^:]*)$/.exec(hostPort);
  if (!m)
    throw new ArgumentError(`QMP address '${text}' is not HOST:PORT (write an IPv6 host as [::1]:PORT)`);
  const host = m[1] ?? m[2] ?? '';
  if (host === '') throw new ArgumentError(`QMP address '${text}' has no host`);
  const portText = m[3] ?? '';
  const port = /^\d{1,5}$/.test(portText) ? Number(portText) : Number.NaN;
  if (!(port >= 1 && port <= 65535))
    throw new ArgumentError(`QMP address '${text}' has port '${portText}'; a port is 1-65535`);
  return { kind: 'tcp', host, port };
}

/** The address as a person reads it: `unix:PATH` or `tcp:HOST:PORT` (`[v6]` bracketed; TLS not shown). */
export function formatQmpEndpoint(ep: QmpEndpoint): string {
  if (ep.kind === 'unix') return `unix:${ep.path}`;
  return `tcp:${ep.host.includes(':') ? `[${ep.host}]` : ep.host}:${ep.port}`;
}

/**
 * Opens a QMP session with the monitor of one side, within `timeoutMs` (connect, greeting
 * and negotiation; default 10000).
 * @throws {PreflightError} naming the side and the address when it cannot be reached.
 */
export async function connectQmpEndpoint(
  ep: QmpEndpoint,
  side: 'source' | 'destination',
  options: { timeoutMs?: number; signal?: AbortSignal } = {},
): Promise<QmpClient> {
  try {
    return await QmpClient.connect(ep.kind === 'unix' ? ep.path : { host: ep.host, port: ep.port }, {
      timeout: options.timeoutMs ?? 10_000,
      signal: options.signal,
      ...(ep.kind === 'tcp' && ep.tls ? { tls: ep.tls } : {}),
    });
  } catch (e) {
    let why = (e as Error).message.replace(/^cannot open a QMP session with [^:]*(:\d+)?: /, '');
    // A QEMU monitor's socket takes one client at a time; others wait, ungreeted, in its backlog.
    if (why.startsWith('no QMP session within'))
      why +=
        ep.kind === 'tcp' && !ep.tls
          ? ' (a QEMU monitor serves one client at a time: is another one connected to it? One with tls-creds waits for a TLS handshake: give its CA and client certificate)'
          : ' (a QEMU monitor serves one client at a time: is another one connected to it?)';
    throw new PreflightError([`cannot reach the ${side}'s monitor at ${formatQmpEndpoint(ep)}: ${why}`], {
      cause: e,
    });
  }
}
