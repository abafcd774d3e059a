/**
 * QEMU's tls-creds-psk object (crypto/tlscredspsk.c): pre-shared keys in `dir/keys.psk`,
 * one `username:hexkey` a line. Node's OpenSSL meets QEMU 10.0's GnuTLS on PSK both ways
 * (TLS 1.3 with an external PSK, TLS 1.2 (EC)DHE-PSK and PSK), so the keys become node:tls
 * PSK callbacks: a client sends its username and key, a server reads the file per handshake.
 */
import type { TLSSocket } from 'node:tls';
import { genericError } from '../../qapi/errors.js';
import { strerror } from '../../util/errno.js';
import { readCredsFile } from './files.js';
import type { TlsCreds, TlsEndpoint } from './types.js';
import { credsPath, dhParams } from './x509.js';

/** tls-creds-psk's properties, as object-add checked them. */
export interface PskCredsProps {
  id: string;
  dir?: string;
  endpoint?: TlsEndpoint;
  verifyPeer?: boolean;
  priority?: string;
  /** The client's username, QEMU's default `qemu`; a server must not have one. */
  username?: string;
}

/** The PSK cipher suites for TLS 1.2 that GnuTLS's priority adds (+ECDHE-PSK:+DHE-PSK:+PSK). */
const PSK_CIPHERS = [
  'ECDHE-PSK-CHACHA20-POLY1305',
  'ECDHE-PSK-AES256-CBC-SHA384',
  'ECDHE-PSK-AES128-CBC-SHA256',
  'DHE-PSK-AES256-GCM-SHA384',
  'DHE-PSK-AES128-GCM-SHA256',
  'DHE-PSK-CHACHA20-POLY1305',
  'PSK-AES256-GCM-SHA384',
  'PSK-AES128-GCM-SHA256',
  'PSK-CHACHA20-POLY1305',
].join(':');

/** The key of `username` in a keys.psk text (its hex), as QEMU's lookup_key finds it. */
function lookupKey(text: string, username: string): string | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith(`${username}:`)) return line.slice(username.length + 1);
  }
  return undefined;
}

/**
 * A key in hex, as GNUTLS_PSK_KEY_HEX takes it: pairs of hex digits and nothing else (Node's
 * decoder would stop at the first bad digit and keep the prefix, i.e. another, shorter key).
 * @returns the key, or GnuTLS's reason it is refused.
 */
function hexKey(hex: string): Buffer | { reason: string } {
  if (hex === '') return { reason: 'The request is invalid.' };
  if (!/^(?:[0-9A-Fa-f]{2})+$/.test(hex)) return { reason: 'Error in parsing.' };
  return Buffer.from(hex, 'hex');
}

/**
 * Creates a tls-creds-psk object as QEMU 10.0 completes one.
 * @throws {QapiError} QEMU's texts: a server with a username, a missing dir or keys.psk, a
 * client whose username the file lacks; `priority` (a GnuTLS priority string) is refused.
 */
export function loadPskCreds(p: PskCredsProps): TlsCreds {
  if (p.priority !== undefined)
    throw genericError(
      `Property 'priority' is not supported by qmigrate: it is a GnuTLS priority string, and Node's TLS is OpenSSL`,
    );
  const endpoint = p.endpoint ?? 'client';
  if (endpoint === 'server' && p.username !== undefined)
    throw genericError('username should not be set when endpoint=server');
  if (p.dir === undefined) throw genericError("Missing 'dir' property value");
  const dhFile = endpoint === 'server' ? credsPath(p.dir, 'dh-params.pem', false) : undefined;
  const pskFile = credsPath(p.dir, 'keys.psk', true)!;
  const verifyPeer = p.verifyPeer ?? true;
  if (endpoint === 'server') {
    // As GnuTLS's server credentials file: read at each handshake, so edits count.
    const pskCallback = (_socket: TLSSocket, identity: string) => {
      try {
        const hex = lookupKey(readCredsFile(pskFile).toString('latin1'), identity);
        const key = hex === undefined ? undefined : hexKey(hex);
        return Buffer.isBuffer(key) ? key : null;
      } catch {
        return null;
      }
    };
    const dhparam = dhFile ? dhParams(dhFile) : undefined;
    const tlsOptions = { pskCallback, ciphers: PSK_CIPHERS, ...(dhparam && { dhparam }) };
    return {
      id: p.id,
      type: 'tls-creds-psk',
      endpoint,
      verifyPeer,
      tlsOptions: tlsOptions as unknown as TlsCreds['tlsOptions'],
    };
  }
  const username = p.username ?? 'qemu';
  let text: string;
  try {
    text = readCredsFile(pskFile).toString('latin1');
  } catch (e) {
    throw genericError(`Cannot read PSK file ${pskFile}: Failed to open file “${pskFile}”: ${strerror(e)}`);
  }
  const hex = lookupKey(text, username);
  if (hex === undefined) throw genericError(`Username ${username} not found in PSK file ${pskFile}`);
  const psk = hexKey(hex);
  if (!Buffer.isBuffer(psk)) throw genericError(`Cannot set PSK client credentials: ${psk.reason}`);
  const tlsOptions = {
    pskCallback: () => ({ identity: username, psk }),
    ciphers: PSK_CIPHERS,
    // A PSK session has no certificate, hence no name to check.
    checkServerIdentity: () => undefined,
  };
  return {
    id: p.id,
    type: 'tls-creds-psk',
    endpoint,
    verifyPeer,
    tlsOptions: tlsOptions as unknown as TlsCreds['tlsOptions'],
  };
}
