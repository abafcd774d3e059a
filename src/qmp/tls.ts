/**
 * TLS for a QMP client, as QEMU's monitors take it (`-chardev socket,...,tls-creds=ID` with a
 * tls-creds-x509 server object, chardev/char-socket.c and crypto/tlssession.c): the client
 * verifies the server's certificate against a CA and a name, and presents its own when it has
 * one. Files are read in QEMU's layout of a credentials `dir` (crypto/tlscredsx509.h), and a
 * failed handshake says which check failed.
 */
import { readFileSync } from 'node:fs';
import { isIP, type Socket } from 'node:net';
import { join } from 'node:path';
import { type TLSSocket, connect as tlsConnect } from 'node:tls';
import { ArgumentError } from '../errors.js';
import { type TlsCheck, TlsHandshakeError } from './errors.js';

/** PEM text or bytes, one or several (node:tls's own form). */
export type Pem = string | Buffer | (string | Buffer)[];

/** How a QmpClient speaks TLS to a monitor: plain node:tls material, no QEMU objects. */
export interface QmpTlsOptions {
  /** CA certificates the server's certificate must chain to (required: QEMU always verifies). */
  ca: Pem;
  /** The client's certificate and key, for a server with verify-peer=on; both or neither. */
  cert?: Pem;
  key?: Pem;
  /** Revocation lists (QEMU's ca-crl.pem). */
  crl?: Pem;
  /**
   * The name the server's certificate must carry; default the host connected to. A unix
   * socket has no host, so it needs one.
   */
  serverName?: string;
}

/** QEMU's file names in a tls-creds-x509 `dir` (crypto/tlscredsx509.h), the client's half. */
export const X509_CA_CERT = 'ca-cert.pem';
export const X509_CA_CRL = 'ca-crl.pem';
export const X509_CLIENT_CERT = 'client-cert.pem';
export const X509_CLIENT_KEY = 'client-key.pem';

function readOptional(dir: string, name: string): Buffer | undefined {
  try {
    return readFileSync(join(dir, name));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new ArgumentError(`cannot read ${join(dir, name)}: ${(e as Error).message}`);
  }
}

/**
 * Reads a client's TLS material from a directory laid out as QEMU's tls-creds-x509 `dir`:
 * ca-cert.pem (required), client-cert.pem and client-key.pem (both or neither), ca-crl.pem
 * (optional). Nothing is parsed here; node:tls judges the PEM when it connects.
 * @throws {ArgumentError} when ca-cert.pem is missing, only one of the client's pair is there,
 *   or a file exists but cannot be read.
 */
export function readX509CredsDir(dir: string, serverName?: string): QmpTlsOptions {
  const ca = readOptional(dir, X509_CA_CERT);
  if (!ca) throw new ArgumentError(`TLS credentials directory ${dir} has no ${X509_CA_CERT}`);
  const cert = readOptional(dir, X509_CLIENT_CERT);
  const key = readOptional(dir, X509_CLIENT_KEY);
  if ((cert === undefined) !== (key === undefined)) {
    const [has, lacks] = cert ? [X509_CLIENT_CERT, X509_CLIENT_KEY] : [X509_CLIENT_KEY, X509_CLIENT_CERT];
    throw new ArgumentError(`TLS credentials directory ${dir} has ${has} but no ${lacks}`);
  }
  const crl = readOptional(dir, X509_CA_CRL);
  return {
    ca,
    ...(cert && key ? { cert, key } : {}),
    ...(crl ? { crl } : {}),
    ...(serverName !== undefined ? { serverName } : {}),
  };
}

/** OpenSSL's verify codes (as node:tls names them) for a chain that ends at no trusted CA. */
const UNKNOWN_CA = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
]);

/** OpenSSL's codes for bytes that are no TLS record: the peer answered in clear text. */
const NOT_TLS = new Set([
  'ERR_SSL_WRONG_VERSION_NUMBER',
  'ERR_SSL_PACKET_LENGTH_TOO_LONG',
  'ERR_SSL_HTTP_REQUEST',
]);

/** Which check failed, and how to say it, for an error met during or right after the handshake. */
export function describeTlsFailure(
  e: NodeJS.ErrnoException & { reason?: string; cert?: { valid_to?: string; subjectaltname?: string } },
  name: string,
  hadCert: boolean,
): { check: TlsCheck; why: string } {
  const code = e.code ?? '';
  if (UNKNOWN_CA.has(code))
    return {
      check: 'unknown-ca',
      why: `the server's certificate is not signed by a CA we trust (${code}): check the CA certificate (${X509_CA_CERT})`,
    };
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    const names = e.cert?.subjectaltname ? ` (it names ${e.cert.subjectaltname})` : '';
    return { check: 'hostname', why: `the server's certificate does not match the name '${name}'${names}` };
  }
  if (code === 'CERT_HAS_EXPIRED')
    return {
      check: 'expired',
      why: `the server's certificate has expired (${e.cert?.valid_to ?? 'its end date passed'})`,
    };
  if (code === 'CERT_NOT_YET_VALID')
    return { check: 'expired', why: "the server's certificate is not valid yet" };
  if (code === 'CERT_REVOKED')
    return { check: 'revoked', why: "the server's certificate is revoked (ca-crl.pem)" };
  if (NOT_TLS.has(code))
    return { check: 'not-tls', why: 'the peer does not speak TLS (a monitor without tls-creds?)' };
  if (/ALERT_CERTIFICATE_REQUIRED|ALERT_HANDSHAKE_FAILURE/.test(code) && !hadCert)
    return {
      check: 'client-certificate',
      why: 'the server requires a client certificate (verify-peer=on) and none was given',
    };
  if (/ALERT_(UNKNOWN_CA|BAD_CERTIFICATE|CERTIFICATE_|ACCESS_DENIED|DECRYPT_ERROR)/.test(code))
    return { check: 'client-certificate', why: `the server refused our client certificate (${code})` };
  return { check: 'other', why: `TLS handshake failed: ${e.message}` };
}

/**
 * What a session that ended after the handshake, before QMP's greeting, means: QEMU's GnuTLS
 * checks the client's certificate once the handshake is done and then closes the connection
 * without a word (no alert reaches the client), so the cause is inferred from what we sent.
 */
export function closedAfterHandshake(hadCert: boolean): TlsHandshakeError {
  return new TlsHandshakeError(
    'client-certificate',
    hadCert
      ? `TLS: the server closed the session right after the handshake: it refused our client certificate (not signed by a CA it trusts, expired, or not in its tls-authz list)`
      : `TLS: the server closed the session right after the handshake: it requires a client certificate (verify-peer=on) and none was given (${X509_CLIENT_CERT}, ${X509_CLIENT_KEY})`,
  );
}

/**
 * Runs the TLS handshake as a client over a connected socket, within `signal`. The name
 * checked is `o.serverName`, else `host`; it is sent as SNI unless it is an IP address.
 * @throws {ArgumentError} when there is no name to check (a unix socket without serverName).
 * @throws {TlsHandshakeError} naming the check that failed.
 * @throws the signal's reason when it aborts first.
 */
export async function startTls(
  socket: Socket,
  o: QmpTlsOptions,
  host: string | undefined,
  signal: AbortSignal,
): Promise<TLSSocket> {
  const name = o.serverName ?? host;
  if (!name)
    throw new ArgumentError('TLS over a unix socket needs a serverName to check the certificate against');
  if ((o.cert === undefined) !== (o.key === undefined))
    throw new ArgumentError('TLS options need both a client certificate and its key, or neither');
  const s = tlsConnect({
    socket,
    host: name,
    ...(isIP(name) ? {} : { servername: name }),
    ca: o.ca,
    cert: o.cert,
    key: o.key,
    crl: o.crl,
  });
  try {
    await new Promise<void>((resolve, reject) => {
      const onAbort = () => finish(signal.reason);
      const onSecure = () => finish();
      const onError = (e: NodeJS.ErrnoException) => {
        const { check, why } = describeTlsFailure(e, name, o.cert !== undefined);
        finish(new TlsHandshakeError(check, `TLS: ${why}`, { cause: e }));
      };
      const finish = (error?: unknown) => {
        signal.removeEventListener('abort', onAbort);
        s.off('secureConnect', onSecure);
        s.off('error', onError);
        if (error === undefined) resolve();
        else reject(error);
      };
      if (signal.aborted) return onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      s.on('secureConnect', onSecure);
      s.on('error', onError);
    });
  } catch (e) {
    s.destroy();
    throw e;
  }
  return s;
}
