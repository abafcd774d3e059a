/**
 * Migration over TLS (QEMU's migration/tls.c, with the peer checks of crypto/tlssession.c):
 * the credentials are looked up by id as each channel is set up, the connected socket becomes
 * the TLS client (source) or server (destination) of node:tls, and the peer's certificate,
 * host name and authz list are checked after the handshake with QEMU 10.0's (GnuTLS's) texts.
 */
import { isIP, type Socket } from 'node:net';
import {
  checkServerIdentity,
  type PeerCertificate,
  type TLSSocket,
  connect as tlsConnect,
  createServer as tlsServer,
} from 'node:tls';
import { genericError, QapiError } from '../../qapi/errors.js';
import { distinguishedName } from './dn.js';
import type { TlsAuthz, TlsCreds, TlsEndpoint, TlsObjects } from './types.js';

/**
 * How long a handshake may take. QEMU waits for ever on a peer that accepted the connection
 * and says nothing; a handshake is two round trips, so this is generous even far away.
 */
export const TLS_HANDSHAKE_TIMEOUT_MS = 10_000;

/**
 * The credentials `id` for one end of a channel (migration_tls_get_creds).
 * @throws {QapiError} with QEMU 10.0's text: unknown id, another kind of object, wrong endpoint.
 */
export function tlsCredsFor(objects: TlsObjects, id: string, endpoint: TlsEndpoint): TlsCreds {
  const creds = objects.tlsCreds(id);
  if (!creds) {
    const typeOf = (objects as Partial<{ typeOf(id: string): string | undefined }>).typeOf;
    if (typeOf ? typeOf.call(objects, id) !== undefined : objects.authz(id))
      throw genericError(`Object with id '${id}' is not TLS credentials`);
    throw genericError(`No TLS credentials with id '${id}'`);
  }
  if (creds.endpoint !== endpoint) throw genericError(`Expected TLS credentials for a ${endpoint} endpoint`);
  return creds;
}

/**
 * The error for TLS on a channel that is not a socket (exec, file), after the credentials
 * lookup, whose errors come first as in QEMU. QEMU 10.0 runs the handshake there too: over a
 * file it fails (`TLS handshake failed: Error in the pull function.: Unable to read from
 * file: Bad file descriptor`), over exec it waits for ever for the command's answer.
 */
export function tlsNotOnChannel(
  objects: TlsObjects,
  id: string,
  endpoint: TlsEndpoint,
  kind: 'exec' | 'file',
): QapiError {
  try {
    tlsCredsFor(objects, id, endpoint);
  } catch (e) {
    return e as QapiError;
  }
  const why =
    kind === 'file'
      ? 'a file cannot answer a TLS handshake'
      : "qmigrate does not read an exec command's output, which a TLS handshake needs";
  return genericError(`TLS ('tls-creds') is not possible over ${kind}: ${why}; use a tcp or unix socket`);
}

/** What every channel of one migration needs for its TLS step. */
export interface TlsSetup {
  readonly objects: TlsObjects;
  /** `tls-creds` (not empty). */
  readonly creds: string;
  /** Source: `tls-hostname`, else the address's host; undefined for unix and fd sockets. */
  readonly hostname?: string;
  /** Destination: `tls-authz`, or '' for none. */
  readonly authz?: string;
}

/**
 * The authz object of a destination's channel. QEMU 10.0 looks it up only after the handshake
 * (`Cannot find QAuthZ object ID X`) and ignores it when the credentials do not verify the
 * peer; qmigrate refuses that instead of accepting any client.
 * @throws {QapiError}
 */
function authzFor(setup: TlsSetup, creds: TlsCreds): TlsAuthz | undefined {
  const id = setup.authz ?? '';
  if (id === '') return undefined;
  const authz = setup.objects.authz(id);
  if (!authz) throw genericError(`Cannot find QAuthZ object ID ${id}`);
  if (creds.type === 'tls-creds-x509' && !creds.verifyPeer) {
    throw genericError(
      `tls-authz '${id}' needs the client's certificate, but the credentials '${creds.id}' do not check one (verify-peer=off)`,
    );
  }
  return authz;
}

/** QEMU checks the peer's certificate with x509 credentials and verify-peer=on only. */
const checksCertificates = (creds: TlsCreds) => creds.type === 'tls-creds-x509' && creds.verifyPeer;

/** GnuTLS's words (as QEMU reports them) for OpenSSL's verification results. */
function certificateReason(code: string | Error | null | undefined): string {
  switch (String(code)) {
    case 'UNABLE_TO_GET_ISSUER_CERT':
    case 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY':
    case 'UNABLE_TO_VERIFY_LEAF_SIGNATURE':
    case 'SELF_SIGNED_CERT_IN_CHAIN':
    case 'DEPTH_ZERO_SELF_SIGNED_CERT':
      return "The certificate hasn't got a known issuer";
    case 'CERT_HAS_EXPIRED':
      return 'The certificate has expired';
    case 'CERT_NOT_YET_VALID':
      return 'The certificate is not yet activated';
    case 'CERT_REVOKED':
      return 'The certificate has been revoked';
    default:
      return 'The certificate is not trusted';
  }
}

/**
 * QEMU's text for a handshake that failed, from node:tls's error (GnuTLS's words where there
 * is an equivalent; the alert's name where the peer sent one).
 */
export function handshakeFailure(e: unknown): string {
  const err = e as NodeJS.ErrnoException & { reason?: string };
  const code = err?.code ?? '';
  if (code === 'ERR_TLS_HANDSHAKE_TIMEOUT' || code === 'ETIMEDOUT')
    return `TLS handshake failed: no answer from the peer in ${TLS_HANDSHAKE_TIMEOUT_MS / 1000} s`;
  if (code === 'ECONNRESET' || code === 'EPIPE' || /disconnected before secure/.test(err?.message ?? ''))
    return 'TLS handshake failed: The TLS connection was non-properly terminated.';
  const alert = /^ERR_SSL_(?:SSLV3|TLSV1|TLSV13)_ALERT_(.*)$/.exec(code);
  if (alert) {
    return `TLS handshake failed: A TLS fatal alert has been received: ${alert[1]!.toLowerCase().replace(/_/g, ' ')}`;
  }
  if (
    /^ERR_SSL_(WRONG_VERSION_NUMBER|HTTP_REQUEST|HTTPS_PROXY_REQUEST|UNEXPECTED_MESSAGE|PACKET_LENGTH_TOO_LONG|RECORD_LAYER_FAILURE|UNSUPPORTED_PROTOCOL)/.test(
      code,
    )
  )
    return 'TLS handshake failed: An unexpected TLS packet was received.';
  return `TLS handshake failed: ${err?.reason ?? err?.message ?? String(e)}`;
}

/**
 * Waits for a handshake, bounded by TLS_HANDSHAKE_TIMEOUT_MS and `signal`; the socket is
 * destroyed on any failure.
 */
function handshake(
  ts: TLSSocket,
  done: (resolve: () => void, reject: (e: unknown) => void) => void,
  signal?: AbortSignal,
): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => fail({ code: 'ETIMEDOUT' }), TLS_HANDSHAKE_TIMEOUT_MS);
    const onAbort = () => fail(signal!.reason, false);
    const settle = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    };
    const fail = (e: unknown, wrap = true) => {
      settle();
      // A check that failed after the handshake: our last handshake message may still be
      // queued, and the peer should get it (and fail on its own checks, saying why).
      if (e instanceof QapiError) ts.destroySoon();
      else ts.destroy();
      reject(wrap && !(e instanceof QapiError) ? genericError(handshakeFailure(e)) : e);
    };
    if (signal?.aborted) return onAbort();
    signal?.addEventListener('abort', onAbort, { once: true });
    done(
      () => {
        settle();
        resolve();
      },
      (e) => fail(e),
    );
  });
}

/**
 * The source's TLS step on one connected channel (main or multifd): the client end, which
 * checks the destination's certificate and name when the credentials say verify-peer=on.
 * @returns the TLS socket the stream goes through.
 * @throws {QapiError} with QEMU's text for the credentials, the handshake or a check.
 * @throws the signal's reason when `signal` aborts it (migrate_cancel).
 */
export async function tlsClientChannel(
  sock: Socket,
  setup: TlsSetup,
  signal?: AbortSignal,
): Promise<TLSSocket> {
  const creds = tlsCredsFor(setup.objects, setup.creds, 'client');
  const host = setup.hostname;
  // QEMU finds out after the handshake; nothing is sent here instead.
  if (checksCertificates(creds) && !host) throw genericError('No hostname for certificate validation');
  const ts = tlsConnect({
    ...creds.tlsOptions,
    socket: sock,
    servername: host && !isIP(host) ? host : undefined,
    // Checked below, with QEMU's texts, once the handshake is done.
    rejectUnauthorized: false,
    checkServerIdentity: () => undefined,
  });
  const closed = () => fail({ code: 'ECONNRESET' });
  let fail: (e: unknown) => void = () => {};
  try {
    await handshake(
      ts,
      (ok, reject) => {
        fail = reject;
        ts.once('secureConnect', () => {
          try {
            if (checksCertificates(creds)) checkServer(ts, host!);
            ok();
          } catch (e) {
            reject(e);
          }
        });
        ts.on('error', fail);
        ts.on('close', closed);
      },
      signal,
    );
  } finally {
    ts.off('error', fail);
    ts.off('close', closed);
  }
  // Whoever takes the channel listens for its errors; until then one must not crash the process.
  ts.on('error', () => {});
  return ts;
}

/** @throws {QapiError} when the destination's certificate or name does not pass. */
function checkServer(ts: TLSSocket, host: string): void {
  if (!ts.authorized) throw genericError(certificateReason(ts.authorizationError));
  const cert = ts.getPeerCertificate();
  if (!cert || Object.keys(cert).length === 0) throw genericError('No certificate peers');
  if (checkServerIdentity(host, cert as PeerCertificate)) {
    throw genericError(`Certificate does not match the hostname ${host}`);
  }
}

/**
 * A server's node:tls options from its credentials; with PSK, the username the client gave,
 * which tls-authz checks (QEMU 10.0 checks no authz on PSK sessions, and would let anyone in).
 */
function serverOptions(creds: TlsCreds) {
  let identity: string | undefined;
  const options = { ...creds.tlsOptions };
  const psk = options.pskCallback as
    | ((s: TLSSocket, id: string) => NodeJS.ArrayBufferView | null)
    | undefined;
  if (creds.type === 'tls-creds-psk' && psk) {
    options.pskCallback = ((s: TLSSocket, id: string) => {
      identity = id;
      return psk(s, id);
    }) as typeof options.pskCallback;
  }
  return { options, pskIdentity: () => identity };
}

const strays = new WeakSet<object>();

/**
 * Whether a destination's channel failed before it spoke TLS at all (clear text, closed or
 * silent before its hello: a port scan, a health check, a clear-text source), as opposed to a
 * TLS client that a check or an alert refused. QEMU 10.0 prints the former and listens on.
 */
export function isStrayConnection(e: unknown): boolean {
  return typeof e === 'object' && e !== null && strays.has(e);
}

/**
 * The destination's TLS step on one accepted channel: the server end, which asks for the
 * client's certificate and checks it (and the authz list on its DN) when verify-peer=on.
 * @returns the TLS socket the stream comes through.
 * @throws {QapiError} with QEMU's text for the credentials, the handshake or a check.
 */
export async function tlsServerChannel(
  sock: Socket,
  setup: TlsSetup,
  signal?: AbortSignal,
): Promise<TLSSocket> {
  const creds = tlsCredsFor(setup.objects, setup.creds, 'server');
  const authz = authzFor(setup, creds);
  const { options, pskIdentity } = serverOptions(creds);
  const server = tlsServer({
    ...options,
    requestCert: checksCertificates(creds),
    rejectUnauthorized: false,
    handshakeTimeout: TLS_HANDSHAKE_TIMEOUT_MS,
    // TLS 1.3 servers send session tickets after the handshake, and Node cannot turn them
    // off (OpenSSL's num_tickets). A QEMU source never reads its channels, so it closes them
    // with the tickets unread, the kernel sends a reset instead of a FIN, and the end of the
    // stream still in its send queue is lost (observed with QEMU 10.0: the load fails at the
    // last pages). TLS 1.2 (ECDHE, AEAD ciphers) sends its ticket within the handshake.
    maxVersion: 'TLSv1.2',
  });
  let ts: TLSSocket | undefined;
  const pending = new Promise<TLSSocket>((resolve, reject) => {
    server.once('secureConnection', resolve);
    server.once('tlsClientError', (e, s) => {
      s.destroy();
      // A peer's alert is a TLS client that refused this side; anything else never spoke TLS.
      const err = genericError(handshakeFailure(e));
      if (!/_ALERT_/.test((e as NodeJS.ErrnoException).code ?? '')) strays.add(err);
      reject(err);
    });
  });
  const onAbort = () => sock.destroy();
  signal?.addEventListener('abort', onAbort, { once: true });
  let onClose = () => {};
  const closed = new Promise<never>((_, reject) => {
    onClose = () => {
      if (signal?.aborted) return reject(signal.reason);
      const err = genericError(handshakeFailure({ code: 'ECONNRESET' }));
      if (!ts) strays.add(err);
      reject(err);
    };
    sock.once('close', onClose);
  });
  closed.catch(() => {});
  try {
    server.emit('connection', sock);
    ts = await Promise.race([pending, closed]);
    if (checksCertificates(creds)) checkClient(ts, authz);
    else if (authz && pskIdentity() !== undefined && !authz.isAllowed(pskIdentity()!))
      throw genericError(`TLS PSK authz check for ${pskIdentity()} is denied`);
    await firstBytes(ts, signal);
    ts.on('error', () => {});
    return ts;
  } catch (e) {
    // A check that failed: the client still gets our last handshake message (with TLS 1.2
    // the server's Finished comes after the client's), and then fails on its own checks.
    if (ts && e instanceof QapiError && !signal?.aborted) ts.destroySoon();
    else {
      ts?.destroy();
      sock.destroy();
    }
    throw e;
  } finally {
    signal?.removeEventListener('abort', onAbort);
    sock.off('close', onClose);
  }
}

/**
 * The start of a destination's error for a TLS session the source closed before its first
 * byte: with one channel that means the source refused this side, with multifd it may have
 * failed on another channel instead (IncomingChannels says which).
 */
export const SOURCE_CLOSED_FIRST = 'the source closed the TLS session before sending anything';
const SOURCE_REFUSED = "it refused this destination's certificate or name (its own error says which)";

/** @throws {QapiError} when the client's certificate or its DN does not pass. */
function checkClient(ts: TLSSocket, authz: TlsAuthz | undefined): void {
  const cert = ts.getPeerX509Certificate();
  // GnuTLS's text when the client sent none (as QEMU 10.0 prints it).
  if (!cert) throw genericError('Verify failed: No certificate was found.');
  if (!ts.authorized) throw genericError(certificateReason(ts.authorizationError));
  if (authz) {
    const dn = distinguishedName(cert);
    if (!authz.isAllowed(dn)) throw genericError(`TLS x509 authz check for ${dn} is denied`);
  }
}

/**
 * Waits for the client's first bytes on a session that passed this side's checks. A source
 * checks this side's certificate once the handshake is done and closes the session when it
 * refuses it; QEMU then reports `Not a migration stream`, which hides the reason.
 * @throws {QapiError} when the client closed the session before sending a byte.
 */
function firstBytes(ts: TLSSocket, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const cleanup = () => {
      ts.off('readable', onReadable);
      ts.off('end', onEnd);
      ts.off('close', onEnd);
      ts.off('error', onEnd);
      signal?.removeEventListener('abort', onAbort);
    };
    const onReadable = () => {
      cleanup();
      if (ts.readableLength > 0) resolve();
      else onEnd();
    };
    const onEnd = () => {
      cleanup();
      ts.destroy();
      reject(genericError(`${SOURCE_CLOSED_FIRST}: ${SOURCE_REFUSED}`));
    };
    const onAbort = () => {
      cleanup();
      ts.destroy();
      reject(signal!.reason);
    };
    ts.once('readable', onReadable);
    ts.once('end', onEnd);
    ts.once('close', onEnd);
    ts.once('error', onEnd);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
