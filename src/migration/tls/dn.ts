/**
 * The distinguished name of a certificate's subject, as QEMU gets it from GnuTLS
 * (gnutls_x509_crt_get_dn in crypto/tlssession.c): the RDNs in the certificate's order,
 * `,` between them, RFC 4514 escapes. It is the identity QEMU's authz objects check.
 */
import { X509Certificate } from 'node:crypto';
import type { PeerCertificate } from 'node:tls';

/** OpenSSL's short names that GnuTLS spells differently. */
const GNUTLS_NAMES: Record<string, string> = { emailAddress: 'EMAIL' };

/**
 * The subject DN of `cert` as QEMU 10.0 prints and checks it, e.g. `CN=client,O=qmigrate tests`.
 * @param cert a node `X509Certificate`, or a peer certificate from `TLSSocket.getPeerCertificate()`.
 */
export function distinguishedName(cert: X509Certificate | PeerCertificate): string {
  const x509 = cert instanceof X509Certificate ? cert : new X509Certificate(cert.raw);
  // Node prints one RDN a line in the certificate's order, values already RFC 4514-escaped;
  // the members of a multi-valued RDN stand between ` + ` (an escaped `+` is `\+`).
  return x509.subject
    .split('\n')
    .filter((rdn) => rdn !== '')
    .map((rdn) =>
      rdn
        .split(/(?<!\\) \+ /)
        .map((ava) => {
          const eq = ava.indexOf('=');
          const name = ava.slice(0, eq);
          return `${GNUTLS_NAMES[name] ?? name}${ava.slice(eq)}`;
        })
        .join('+'),
    )
    .join(',');
}
