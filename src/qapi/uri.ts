/**
 * Legacy migration URIs <-> MigrationAddress, as QEMU 10.0 reads them (migrate_uri_parse in
 * migration/migration.c, socket_parse / inet_parse / vsock_parse in util/qemu-sockets.c,
 * file_parse_offset in migration/file.c), and back to a canonical URI.
 *
 * 10.0 still scans inet and vsock addresses with sscanf field widths (host 64, port 32, cid 32
 * characters) and looks options up with strstr; both quirks are kept so that every URI gets
 * the answer QEMU 10.0 gives.
 */
import { strtosz } from './cutils.js';
import { genericError } from './errors.js';
import { intValue } from './json.js';
import type { InetSocketAddress, MigrationAddress, MigrationChannel, SocketAddress } from './types.js';

/** sscanf's `%N[^stop]`: 1..width characters not in `stop`, or undefined when none. */
function scanSet(s: string, at: number, width: number, stop: string): string | undefined {
  let end = at;
  while (end < s.length && end - at < width && !stop.includes(s[end]!)) end++;
  return end > at ? s.slice(at, end) : undefined;
}

/** The boolean options of 10.0's inet_parse: `,name`, `,name=on` or `,name=off`. */
function inetFlag(optstr: string, flag: string): boolean | undefined {
  const at = optstr.indexOf(`,${flag}`);
  if (at < 0) return undefined;
  const rest = optstr.slice(at + flag.length + 1);
  const comma = rest.indexOf(',');
  if (comma >= 0 && rest[comma + 1] === ',') throw genericError(`error parsing '${flag}' flag '${rest}'`);
  const len = comma >= 0 ? comma : rest.length;
  const v = rest.slice(0, len);
  if (len === 0 || v === '=on') return true;
  if (v === '=off') return false;
  throw genericError(`error parsing '${flag}' flag '${rest}'`);
}

/** `%d` into an int, stored in a uint16 member, as 10.0's `to=` is. */
function inetTo(optstr: string): number | undefined {
  const at = optstr.indexOf(',to=');
  if (at < 0) return undefined;
  const m = /^[ \t\n\v\f\r]*([+-]?\d+)/.exec(optstr.slice(at + 4));
  const next = m ? optstr[at + 4 + m[0].length] : undefined;
  if (!m || (next !== undefined && next !== ',')) throw genericError('error parsing to= argument');
  let v = BigInt(m[1]!);
  const LONG = 1n << 63n;
  if (v >= LONG) v = LONG - 1n;
  if (v < -LONG) v = -LONG;
  return Number(BigInt.asUintN(16, BigInt.asIntN(32, v)));
}

/**
 * QEMU 10.0's inet_parse(): `host:port`, `:port`, `[v6host]:port`, then `,to=`, `,ipv4`,
 * `,ipv6`, `,keep-alive`, `,mptcp` options; anything else after the port is ignored.
 */
function parseInet(str: string): InetSocketAddress {
  let host: string | undefined;
  let port: string | undefined;
  let pos: number;
  if (str[0] === ':') {
    host = '';
    port = scanSet(str, 1, 32, ',');
    if (port === undefined) throw genericError(`error parsing port in address '${str}'`);
    pos = 1 + port.length;
  } else if (str[0] === '[') {
    host = scanSet(str, 1, 64, ']');
    const colon = host === undefined ? -1 : 1 + host.length;
    port = colon >= 0 && str.startsWith(']:', colon) ? scanSet(str, colon + 2, 32, ',') : undefined;
    if (host === undefined || port === undefined) throw genericError(`error parsing IPv6 address '${str}'`);
    pos = colon + 2 + port.length;
  } else {
    host = scanSet(str, 0, 64, ':');
    port =
      host !== undefined && str[host.length] === ':' ? scanSet(str, host.length + 1, 32, ',') : undefined;
    if (host === undefined || port === undefined) throw genericError(`error parsing address '${str}'`);
    pos = host.length + 1 + port.length;
  }
  const optstr = str.slice(pos);
  const addr: InetSocketAddress = { host, port };
  const to = inetTo(optstr);
  if (to !== undefined) addr.to = to;
  for (const flag of ['ipv4', 'ipv6', 'keep-alive', 'mptcp'] as const) {
    const v = inetFlag(optstr, flag);
    if (v !== undefined) addr[flag] = v;
  }
  return addr;
}

/** QEMU 10.0's socket_parse() for the prefixes migration hands it. */
function parseSocketUri(uri: string): SocketAddress {
  if (uri.startsWith('unix:')) {
    if (uri.length === 5) throw genericError('invalid Unix socket address');
    return { type: 'unix', path: uri.slice(5) };
  }
  if (uri.startsWith('fd:')) {
    if (uri.length === 3) throw genericError('invalid file descriptor address');
    return { type: 'fd', str: uri.slice(3) };
  }
  if (uri.startsWith('vsock:')) {
    const str = uri.slice(6);
    const cid = scanSet(str, 0, 32, ':');
    const port =
      cid !== undefined && str[cid.length] === ':' ? scanSet(str, cid.length + 1, 32, ',') : undefined;
    if (cid === undefined || port === undefined) throw genericError(`error parsing address '${str}'`);
    if (cid.length + 1 + port.length !== str.length)
      throw genericError(`trailing characters in address '${str}'`);
    return { type: 'vsock', cid, port };
  }
  return { type: 'inet', ...parseInet(uri.startsWith('tcp:') ? uri.slice(4) : uri) };
}

/**
 * Parses a legacy migration URI into the MigrationAddress QEMU 10.0 builds from it.
 * @throws {QapiError} GenericError with QEMU's text, e.g. `unknown migration protocol: foo:bar`.
 */
export function parseMigrationUri(uri: string): MigrationAddress {
  if (uri.startsWith('exec:')) return { transport: 'exec', args: ['/bin/sh', '-c', uri.slice(5)] };
  if (uri.startsWith('rdma:')) return { transport: 'rdma', ...parseInet(uri.slice(5)) };
  if (['tcp:', 'unix:', 'vsock:', 'fd:'].some((p) => uri.startsWith(p))) {
    return { transport: 'socket', ...parseSocketUri(uri) };
  }
  if (uri.startsWith('file:')) {
    let filename = uri.slice(5);
    let offset: number | bigint = 0;
    const at = filename.indexOf(',offset=');
    if (at >= 0) {
      const text = filename.slice(at + 8);
      filename = filename.slice(0, at);
      const r = strtosz(text);
      if (!r.ok) throw genericError(`file URI has bad offset ${text}: ${r.errno}`);
      offset = intValue(r.value);
    }
    return { transport: 'file', filename, offset };
  }
  throw genericError(`unknown migration protocol: ${uri}`);
}

/** The `main` channel a URI stands for, as QEMU builds it for `migrate uri=...`. */
export function uriToChannel(uri: string): MigrationChannel {
  return { 'channel-type': 'main', addr: parseMigrationUri(uri) };
}

function inetUri(a: InetSocketAddress): string | undefined {
  // Only what 10.0's sscanf widths and separators read back unchanged has a URI.
  if (a.numeric !== undefined || a.host.length > 64 || a.port.length === 0 || a.port.length > 32)
    return undefined;
  if (a.port.includes(',')) return undefined;
  const bracket = a.host.includes(':') || a.host.startsWith('[');
  if (bracket && (a.host === '' || a.host.includes(']'))) return undefined;
  let s = bracket ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
  if (a.to !== undefined) s += `,to=${a.to}`;
  for (const flag of ['ipv4', 'ipv6', 'keep-alive', 'mptcp'] as const) {
    const v = a[flag];
    if (v !== undefined) s += `,${flag}=${v ? 'on' : 'off'}`;
  }
  return s;
}

/**
 * The canonical URI of an address: the one string that QEMU 10.0 parses back into exactly
 * this address, or undefined where none exists (options a URI cannot carry, such as
 * `numeric` or `abstract`, a filename containing `,offset=`, exec args not of the
 * `/bin/sh -c CMD` form, ...). Used by HMP and to drive QEMU older than 8.2.
 */
export function addressToUri(addr: MigrationAddress): string | undefined {
  switch (addr.transport) {
    case 'exec': {
      const [sh, c, cmd, ...rest] = addr.args;
      return sh === '/bin/sh' && c === '-c' && cmd !== undefined && rest.length === 0
        ? `exec:${cmd}`
        : undefined;
    }
    case 'rdma': {
      const s = inetUri(addr);
      return s === undefined ? undefined : `rdma:${s}`;
    }
    case 'file': {
      if (addr.filename.includes(',offset=')) return undefined;
      const off = BigInt(addr.offset);
      if (off < 0n) return undefined;
      return off === 0n ? `file:${addr.filename}` : `file:${addr.filename},offset=${off}`;
    }
    case 'socket':
      switch (addr.type) {
        case 'inet': {
          const s = inetUri(addr);
          return s === undefined ? undefined : `tcp:${s}`;
        }
        case 'unix':
          return addr.path === '' || addr.abstract !== undefined || addr.tight !== undefined
            ? undefined
            : `unix:${addr.path}`;
        case 'vsock':
          return addr.cid === '' ||
            addr.cid.length > 32 ||
            addr.cid.includes(':') ||
            addr.port === '' ||
            addr.port.length > 32 ||
            addr.port.includes(',')
            ? undefined
            : `vsock:${addr.cid}:${addr.port}`;
        case 'fd':
          return addr.str === '' ? undefined : `fd:${addr.str}`;
      }
  }
}

/**
 * A URI that makes QEMU do the same as this address, for peers that only take `uri`: the
 * canonical URI, or for exec args that are not `/bin/sh -c CMD`, a shell command that runs
 * exactly those arguments. Undefined where no URI can express the address.
 */
export function addressToEquivalentUri(addr: MigrationAddress): string | undefined {
  const exact = addressToUri(addr);
  if (exact !== undefined || addr.transport !== 'exec' || addr.args.length === 0) return exact;
  const quote = (a: string) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replaceAll("'", `'\\''`)}'`);
  return `exec:exec ${addr.args.map(quote).join(' ')}`;
}

/** QEMU's SocketAddress_to_str(), as `info migrate` prints listening sockets (no brackets). */
export function socketAddressToString(addr: SocketAddress): string {
  switch (addr.type) {
    case 'inet':
      return `tcp:${addr.host}:${addr.port}`;
    case 'unix':
      return `unix:${addr.path}`;
    case 'fd':
      return `fd:${addr.str}`;
    case 'vsock':
      return `vsock:${addr.cid}:${addr.port}`;
  }
}
