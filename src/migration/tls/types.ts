/**
 * What migration needs of the VM's TLS objects (QEMU's tls-creds-* and authz-* QOM objects,
 * crypto/tlscreds*.c and authz/*.c): migration/ declares this, vm/ implements it from
 * `-object` and `object-add`. The migration channel code looks objects up by id when a
 * channel is set up, as QEMU's migration/tls.c does, so an object added or deleted after
 * `migrate-set-parameters` counts.
 */
import type { ConnectionOptions, TlsOptions } from 'node:tls';

/** Which end of a TLS session a credentials object serves (QEMU's `endpoint` property). */
export type TlsEndpoint = 'client' | 'server';

/** A loaded credentials object (`tls-creds-x509` or `tls-creds-psk`). */
export interface TlsCreds {
  readonly id: string;
  readonly type: 'tls-creds-x509' | 'tls-creds-psk';
  readonly endpoint: TlsEndpoint;
  /**
   * QEMU's `verify-peer`: a server asks for and checks the client's certificate; a client
   * checks the server's certificate and name.
   */
  readonly verifyPeer: boolean;
  /** node:tls options for this end (ca/cert/key/crl for x509; ciphers and the PSK callback for psk). */
  readonly tlsOptions: Readonly<ConnectionOptions & TlsOptions>;
}

/** An authorization object (`authz-simple`, `authz-list`, ...): QEMU's qauthz_is_allowed. */
export interface TlsAuthz {
  readonly id: string;
  /** @param identity the client certificate's distinguished name, formatted as QEMU (GnuTLS) does. */
  isAllowed(identity: string): boolean;
}

/** The VM's objects by id, looked up when a channel is set up. */
export interface TlsObjects {
  tlsCreds(id: string): TlsCreds | undefined;
  authz(id: string): TlsAuthz | undefined;
}
