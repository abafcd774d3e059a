/**
 * QEMU's tls-creds-psk object (crypto/tlscredspsk.c): pre-shared keys in `dir/keys.psk`,
 * one `username:hexkey` a line. Node's TLS can hold such keys (pskCallback), but whether it
 * meets QEMU 10.0's GnuTLS on PSK is decided in `loadPskCreds`.
 */
import { genericError } from '../../qapi/errors.js';
import type { TlsCreds, TlsEndpoint } from './types.js';
import { credsPath } from './x509.js';

/** tls-creds-psk's properties, as object-add checked them. */
export interface PskCredsProps {
  id: string;
  dir?: string;
  endpoint?: TlsEndpoint;
  verifyPeer?: boolean;
  priority?: string;
  /** The client's username, QEMU's default `qemu`. */
  username?: string;
}

/**
 * Creates a tls-creds-psk object.
 * @throws {QapiError} QEMU's texts for a missing dir or file; then the limitation.
 */
export function loadPskCreds(p: PskCredsProps): TlsCreds {
  if (p.dir === undefined) throw genericError("Missing 'dir' property value");
  credsPath(p.dir, 'keys.psk', true);
  throw genericError(
    "TLS credentials of type 'tls-creds-psk' are not supported by qmigrate: Node's TLS cannot make a PSK session with QEMU's GnuTLS",
  );
}
