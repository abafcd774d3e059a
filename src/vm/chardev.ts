/**
 * The character-device options that put monitors on sockets, in QEMU's own syntax
 * (chardev/char.c qemu_chr_parse_compat, chardev/char-socket.c, monitor/monitor.c):
 * `-qmp unix:PATH,server=on,wait=off`, `-qmp tcp:HOST:PORT,server=on,wait=off`, `-qmp stdio`,
 * `-monitor ...`, `-chardev socket,id=ID,path=PATH,server=on,wait=off` with
 * `-mon chardev=ID,mode=control|readline`. Errors are QEMU's texts.
 */
import { createServer, isIP, type Server, type Socket } from 'node:net';
import { Duplex } from 'node:stream';
import * as tls from 'node:tls';
import { QmigrateError } from '../errors.js';
import { distinguishedName } from '../migration/tls/dn.js';
import { certificateRefusal } from '../migration/tls/peer-check.js';
import { handshakeFailure } from '../migration/tls/tls.js';
import type { TlsCreds, TlsObjects } from '../migration/tls/types.js';
import { QMP_MAX_CLIENTS } from '../qmp/server.js';
import {
  exposedAddress,
  SocketError,
  type StreamAddress,
  socketConnect,
  socketListen,
} from '../util/sockets.js';

/** A parsed chardev: where it listens (server) or what it connects to (client). */
export type Chardev =
  | { backend: 'stdio' }
  | {
      backend: 'socket';
      kind: 'unix';
      path: string;
      server: boolean;
      wait: boolean;
      /** Linux abstract namespace; `tight` (default on) as QEMU's UnixSocketAddress. */
      abstract?: boolean;
      tight?: boolean;
    }
  | {
      backend: 'socket';
      kind: 'tcp';
      host: string;
      port: string;
      server: boolean;
      wait: boolean;
      /** `tls-creds=ID`, `tls-authz=ID`: the ids of the objects, resolved when the chardev opens. */
      tlsCreds?: string;
      tlsAuthz?: string;
    };

/** A chardev option QEMU would refuse, or a chardev that cannot be opened, in QEMU's words. */
export class ChardevError extends QmigrateError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('CHARDEV', message, options);
  }
}

const BOOL: Record<string, boolean> = {
  on: true,
  off: false,
  yes: true,
  no: false,
  true: true,
  false: false,
  y: true,
  n: false,
};

/** QemuOpts-style `k=v` list after the first element; `,,` is a literal comma. */
function splitOpts(s: string): string[] {
  const out: string[] = [];
  let cur = '';
  for (let i = 0; i < s.length; i++) {
    if (s[i] === ',' && s[i + 1] === ',') {
      cur += ',';
      i++;
    } else if (s[i] === ',') {
      out.push(cur);
      cur = '';
    } else cur += s[i];
  }
  out.push(cur);
  return out;
}

const SOCKET_OPTS = new Set([
  'server',
  'wait',
  'nodelay',
  'telnet',
  'websocket',
  'reconnect',
  'path',
  'host',
  'port',
  'id',
  'abstract',
  'tight',
  'to',
  'ipv4',
  'ipv6',
  'logfile',
  'logappend',
  'mux',
  'signal',
  'tls-creds',
  'tls-authz',
]);

function socketOpts(opts: string[], spec: string, compat: boolean): Record<string, string> {
  const r: Record<string, string> = {};
  for (const o of opts) {
    if (!o) continue;
    const eq = o.indexOf('=');
    const [k, v] = eq < 0 ? [o, 'on'] : [o.slice(0, eq), o.slice(eq + 1)];
    if (!SOCKET_OPTS.has(k)) {
      throw new ChardevError(`Invalid parameter '${k}'${compat ? `\nparse error: ${spec}` : ''}`);
    }
    const bools = ['server', 'wait', 'nodelay', 'telnet', 'websocket', 'mux', 'abstract', 'tight'];
    if (bools.includes(k) && !Object.hasOwn(BOOL, v)) {
      throw new ChardevError(
        `Parameter '${k}' expects 'on' or 'off'${compat ? `\nparse error: ${spec}` : ''}`,
      );
    }
    r[k] = v;
  }
  return r;
}

function flag(o: Record<string, string>, k: string, dflt: boolean): boolean {
  return o[k] !== undefined && Object.hasOwn(BOOL, o[k]) ? BOOL[o[k]]! : dflt;
}

/** The abstract/tight options of a unix socket chardev, as given. */
function unixOpts(o: Record<string, string>): { abstract?: boolean; tight?: boolean } {
  return {
    ...(o.abstract !== undefined && { abstract: flag(o, 'abstract', false) }),
    ...(o.tight !== undefined && { tight: flag(o, 'tight', true) }),
  };
}

/** tls-creds / tls-authz, with char-socket.c's checks (TLS on tcp only, authz with creds). */
function tlsOpts(o: Record<string, string>, kind: 'unix' | 'inet'): { tlsCreds?: string; tlsAuthz?: string } {
  const creds = o['tls-creds'];
  const authz = o['tls-authz'];
  if (creds !== undefined && kind !== 'inet')
    throw new ChardevError(`'tls_creds' option is incompatible with '${kind}' address type`);
  if (authz !== undefined && creds === undefined)
    throw new ChardevError("'tls_authz' option requires 'tls_creds' option");
  return { ...(creds !== undefined && { tlsCreds: creds }), ...(authz !== undefined && { tlsAuthz: authz }) };
}

/**
 * Parses the short form taken by `-qmp`, `-monitor` and `-serial`.
 * @throws {ChardevError} with QEMU's message (possibly two lines, as QEMU prints them).
 */
export function parseCompatChardev(spec: string): Chardev {
  if (spec === 'stdio') return { backend: 'stdio' };
  const parse = (rest: string) => splitOpts(rest);
  if (spec.startsWith('unix:')) {
    const [path = '', ...opts] = parse(spec.slice(5));
    const o = socketOpts(opts, spec, true);
    // `unix:` alone gives no path at all; `unix:,server=on` an empty one (a temporary socket).
    if (spec === 'unix:') throw new ChardevError('Unable to parse FD number ');
    tlsOpts(o, 'unix');
    const server = flag(o, 'server', false);
    const wait = server && flag(o, 'wait', true);
    return { backend: 'socket', kind: 'unix', path, server, wait, ...unixOpts(o) };
  }
  if (spec.startsWith('tcp:')) {
    const [addr = '', ...opts] = parse(spec.slice(4));
    const colon = addr.lastIndexOf(':');
    if (colon < 0) throw new ChardevError(`parse error: ${spec}`);
    const o = socketOpts(opts, spec, true);
    let host = addr.slice(0, colon);
    if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
    const server = flag(o, 'server', false);
    return {
      backend: 'socket',
      kind: 'tcp',
      host,
      port: addr.slice(colon + 1),
      server,
      wait: server && flag(o, 'wait', true),
      ...tlsOpts(o, 'inet'),
    };
  }
  const name = spec.split(',', 1)[0]!;
  throw new ChardevError(`'${name}' is not a valid char driver\nparse error: ${spec}`);
}

/**
 * Parses `-chardev BACKEND,id=ID,...` (socket and stdio backends).
 * @returns the chardev and its id.
 * @throws {ChardevError}
 */
export function parseChardev(spec: string): { id: string; dev: Chardev } {
  const [backend = '', ...opts] = splitOpts(spec);
  const o = socketOpts(opts, spec, false);
  const id = o.id;
  if (backend !== 'socket' && backend !== 'stdio') {
    throw new ChardevError(`'${backend}' is not a valid char driver name`);
  }
  if (!id) throw new ChardevError("Parameter 'id' is missing");
  if (backend === 'stdio') return { id, dev: { backend: 'stdio' } };
  const server = flag(o, 'server', false);
  const wait = server && flag(o, 'wait', true);
  if (o.path !== undefined) {
    tlsOpts(o, 'unix');
    return { id, dev: { backend: 'socket', kind: 'unix', path: o.path, server, wait, ...unixOpts(o) } };
  }
  if (o.host !== undefined || o.port !== undefined) {
    if (o.port === undefined) throw new ChardevError('chardev: socket: no port given');
    const t = tlsOpts(o, 'inet');
    return {
      id,
      dev: { backend: 'socket', kind: 'tcp', host: o.host ?? '', port: o.port, server, wait, ...t },
    };
  }
  throw new ChardevError('Unable to parse FD number ');
}

/**
 * Parses `-mon chardev=ID[,mode=control|readline][,pretty=on|off]`.
 * @throws {ChardevError}
 */
export function parseMon(
  spec: string,
  chardevs: ReadonlyMap<string, Chardev>,
): { dev: Chardev; mode: 'control' | 'readline' } {
  const kv: Record<string, string> = {};
  for (const o of splitOpts(spec)) {
    const eq = o.indexOf('=');
    const [k, v] = eq < 0 ? [o, 'on'] : [o.slice(0, eq), o.slice(eq + 1)];
    if (!['chardev', 'mode', 'pretty', 'id'].includes(k)) throw new ChardevError(`Invalid parameter '${k}'`);
    kv[k] = v;
  }
  const mode = kv.mode ?? 'readline';
  if (mode !== 'control' && mode !== 'readline')
    throw new ChardevError(`Parameter 'mode' does not accept value '${mode}'`);
  if (!kv.chardev) throw new ChardevError("Parameter 'chardev' is missing");
  const dev = chardevs.get(kv.chardev);
  if (!dev) throw new ChardevError(`chardev "${kv.chardev}" not found`);
  return { dev, mode };
}

/** A socket error as QEMU prints it on its command line: the message, then any hint line. */
function chardevError(e: unknown): unknown {
  if (!(e instanceof SocketError)) return e;
  return new ChardevError(e.hint ? `${e.message}\n${e.hint}` : e.message, { cause: e });
}

/** The VM's objects as a chardev resolves its tls-creds and tls-authz. */
export type ChardevObjects = TlsObjects & { typeOf(id: string): string | undefined };

/** What a chardev with `tls-creds` needs when it opens: the objects, and where to report a refused client. */
export interface ChardevTls {
  readonly objects: ChardevObjects;
  /** One line about a client whose handshake or authorization failed (QEMU prints none). */
  readonly log: (line: string) => void;
}

/**
 * Clients a listening monitor serves at once. QEMU serves one per chardev and leaves the next in
 * the kernel's backlog until it leaves; qmigrate serves several (a tool and a person on the same
 * monitor), each bounded (QMP: 8 queued requests, 64 KiB of unread output, QEMU's 64 MiB token
 * limit), and closes a connection past this many at once, with a line on stderr. One number
 * with the library's QmpServer, whose listeners follow the same rule.
 */
export const MONITOR_MAX_CLIENTS = QMP_MAX_CLIENTS;

/**
 * The chardev's credentials, checked as char-socket.c checks them when it opens.
 * @throws {ChardevError} QEMU's texts: unknown id, not credentials, wrong endpoint; and
 * qmigrate's for a tls-authz that could never see a certificate (x509 with verify-peer=off,
 * which QEMU 10.0 accepts and then never checks).
 */
export function chardevCreds(dev: Chardev, objects: ChardevObjects): TlsCreds | undefined {
  if (dev.backend !== 'socket' || dev.kind !== 'tcp' || dev.tlsCreds === undefined) return undefined;
  const id = dev.tlsCreds;
  const creds = objects.tlsCreds(id);
  if (!creds) {
    if (objects.typeOf(id) !== undefined)
      throw new ChardevError(`Object with id '${id}' is not TLS credentials`);
    throw new ChardevError(`No TLS credentials with id '${id}'`);
  }
  const want = dev.server ? 'server' : 'client';
  if (creds.endpoint !== want) throw new ChardevError(`Expected TLS credentials for a ${want} endpoint`);
  if (dev.tlsAuthz !== undefined && creds.type === 'tls-creds-x509' && !creds.verifyPeer)
    throw new ChardevError(
      `tls-authz '${dev.tlsAuthz}' needs the client's certificate, but TLS credentials '${id}' have verify-peer=off`,
    );
  return creds;
}

/** Why a client that completed its handshake is not let in, or undefined (crypto/tlssession.c's texts). */
function authzRefusal(
  authzId: string | undefined,
  objects: ChardevObjects,
  s: tls.TLSSocket,
  psk?: string,
): string | undefined {
  if (authzId === undefined) return undefined;
  const authz = objects.authz(authzId);
  if (!authz) return `No authorization object with id '${authzId}'`;
  if (psk !== undefined) return authz.isAllowed(psk) ? undefined : `TLS PSK authz check for ${psk} is denied`;
  const cert = s.getPeerCertificate();
  if (!cert?.raw) return 'No certificate was found.';
  const dn = distinguishedName(cert);
  return authz.isAllowed(dn) ? undefined : `TLS x509 authz check for ${dn} is denied`;
}

/** A listener that speaks TLS with `creds`, checks tls-authz, and hands over only clients let in. */
function tlsListener(
  dev: Extract<Chardev, { kind: 'tcp' }>,
  creds: TlsCreds,
  tlsCtx: ChardevTls,
  onStream: (s: Duplex, name: string) => void,
  label: () => string,
): Server {
  const pskIds = new WeakMap<Socket, string>();
  const opts = { ...creds.tlsOptions } as tls.TlsOptions;
  const psk = opts.pskCallback as
    | ((s: tls.TLSSocket, id: string) => NodeJS.ArrayBufferView | null)
    | undefined;
  if (creds.type === 'tls-creds-psk' && psk) {
    opts.pskCallback = (s, id) => {
      pskIds.set(s, id);
      return psk(s, id);
    };
  }
  // A client that connects and never completes its handshake is dropped.
  const server = tls.createServer({ ...opts, handshakeTimeout: TLS_HANDSHAKE_TIMEOUT_MS }, (s) => {
    const name = label();
    const refused = authzRefusal(dev.tlsAuthz, tlsCtx.objects, s, pskIds.get(s));
    if (refused) {
      tlsCtx.log(`client ${s.remoteAddress}:${s.remotePort}: ${refused}`);
      s.destroy();
      return;
    }
    onStream(s, name);
  });
  server.on('tlsClientError', (e, s) => {
    // A client certificate that fails verification shows as a hang-up; the reason is here.
    // Otherwise GnuTLS's words, as the migration side says them: OpenSSL's own message names
    // its source file and ends with a newline.
    const why = s.authorizationError
      ? `TLS handshake failed: ${certificateRefusal(String(s.authorizationError))}`
      : handshakeFailure(e);
    const who = s.remoteAddress ? `client ${s.remoteAddress}:${s.remotePort}` : 'a client';
    tlsCtx.log(`${who}: ${why}`);
    s.destroy();
  });
  return server;
}

/** Lines about refused clients a listener writes per REFUSAL_LOG_WINDOW_MS; the rest are counted. */
export const REFUSAL_LOG_BURST = 10;
export const REFUSAL_LOG_WINDOW_MS = 10_000;

/**
 * `log`, bounded for a listener that anyone who can reach it can make refuse clients (a TLS
 * monitor on the network, a full one): REFUSAL_LOG_BURST lines a window, then one line with
 * how many more were refused, once the window ends. A connection loop would otherwise write
 * a line to stderr per connection, for as long as it runs.
 */
function refusalLog(log: (line: string) => void): (line: string) => void {
  let windowEnd = 0;
  let lines = 0;
  let dropped = 0;
  const flush = () => {
    if (dropped > 0)
      log(`${dropped} more clients refused in ${REFUSAL_LOG_WINDOW_MS / 1000} s (not logged one by one)`);
    dropped = 0;
  };
  return (line) => {
    const now = performance.now();
    if (now >= windowEnd) {
      windowEnd = now + REFUSAL_LOG_WINDOW_MS;
      lines = 0;
    }
    if (lines < REFUSAL_LOG_BURST) {
      lines++;
      log(line);
      return;
    }
    // The first line past the burst arms the count's report at the window's end.
    if (dropped++ === 0) setTimeout(flush, windowEnd - now).unref();
  };
}

/** How long a TLS chardev waits for a handshake, as server or client (QEMU waits for ever). */
export const TLS_HANDSHAKE_TIMEOUT_MS = 10_000;

/**
 * The client end of a TLS chardev: the handshake, the server's certificate and name checked,
 * within TLS_HANDSHAKE_TIMEOUT_MS (a server that accepts and never answers would otherwise
 * hold the VM's start for ever).
 */
async function tlsConnect(sock: Socket, host: string, creds: TlsCreds): Promise<tls.TLSSocket> {
  const t = tls.connect({
    ...creds.tlsOptions,
    socket: sock,
    host,
    servername: isIP(host) ? undefined : host,
  });
  let timer: NodeJS.Timeout | undefined;
  await new Promise<void>((res, rej) => {
    t.once('secureConnect', res);
    t.once('error', (e) => rej(new ChardevError(`TLS handshake failed: ${e.message}`, { cause: e })));
    timer = setTimeout(
      () =>
        rej(new ChardevError(`TLS handshake failed: no answer within ${TLS_HANDSHAKE_TIMEOUT_MS / 1000} s`)),
      TLS_HANDSHAKE_TIMEOUT_MS,
    );
  })
    .catch((e) => {
      t.destroy();
      throw e;
    })
    .finally(() => clearTimeout(timer));
  return t;
}

/**
 * Opens a chardev and hands each connected stream to `onStream`: a listening socket (every
 * client; with `wait` the promise resolves only after the first one connected), an outgoing
 * connection (server=off), or stdio. With `tls-creds`, streams are TLS sessions whose
 * handshake (and tls-authz) passed; a client that fails either is dropped and logged.
 * @returns a function that stops listening.
 * @throws {ChardevError} with QEMU's texts (path too long, bind and connect errors, TLS objects).
 */
export async function openChardev(
  dev: Chardev,
  onStream: (s: Duplex, name: string) => void,
  tlsCtx?: ChardevTls,
): Promise<() => void> {
  if (dev.backend === 'stdio') {
    onStream(Duplex.from({ readable: process.stdin, writable: process.stdout }), 'stdio');
    return () => {};
  }
  const creds = tlsCtx ? chardevCreds(dev, tlsCtx.objects) : undefined;
  if (!creds && dev.kind === 'tcp' && dev.tlsCreds !== undefined)
    throw new ChardevError(`No TLS credentials with id '${dev.tlsCreds}'`);
  const addr: StreamAddress =
    dev.kind === 'unix'
      ? { type: 'unix', path: dev.path, abstract: dev.abstract, tight: dev.tight }
      : { type: 'inet', host: dev.host, port: dev.port };
  const where = dev.kind === 'unix' ? dev.path : `${dev.host}:${dev.port}`;
  if (!dev.server) {
    const sock = await socketConnect(addr).catch((e) => {
      throw chardevError(e);
    });
    const stream = creds && dev.kind === 'tcp' ? await tlsConnect(sock, dev.host, creds) : sock;
    onStream(stream, `${dev.kind}:${where}`);
    return () => stream.destroy();
  }
  let n = 0;
  const label = () => `${dev.kind}:${where}#${++n}`;
  const log = tlsCtx ? refusalLog(tlsCtx.log) : undefined;
  const server =
    creds && tlsCtx && log && dev.kind === 'tcp'
      ? tlsListener(dev, creds, { ...tlsCtx, log }, onStream, label)
      : createServer((s) => onStream(s, label()));
  server.maxConnections = MONITOR_MAX_CLIENTS;
  server.on('drop', (d) => {
    const who = d?.remoteAddress ? `${d.remoteAddress}:${d.remotePort}` : 'a client';
    log?.(`refused ${who}: ${MONITOR_MAX_CLIENTS} clients are connected already (the limit)`);
  });
  const first = new Promise<void>((res) => server.once('connection', () => res()));
  const bound = await socketListen(server, addr).catch((e) => {
    throw chardevError(e);
  });
  // QEMU says nothing; a monitor anyone on the network can drive deserves one line.
  const exposed = creds ? undefined : exposedAddress(bound);
  if (exposed) {
    tlsCtx?.log(`warning: listening on ${exposed} without TLS: anyone who can reach it can connect`);
  }
  if (dev.wait) await first;
  return () => server.close();
}
