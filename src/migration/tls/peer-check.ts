/**
 * QEMU's words for a peer certificate that fails verification (crypto/tlssession.c,
 * qcrypto_tls_session_check_certificate), from OpenSSL's verify error codes as Node reports
 * them (`TLSSocket.authorizationError`, or an error's `code`).
 */

const BY_CODE: Record<string, string> = {
  CERT_HAS_EXPIRED: 'The certificate has expired',
  CERT_NOT_YET_VALID: 'The certificate is not yet activated',
  CERT_REVOKED: 'The certificate has been revoked',
  UNABLE_TO_GET_ISSUER_CERT: "The certificate hasn't got a known issuer",
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: "The certificate hasn't got a known issuer",
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: "The certificate hasn't got a known issuer",
  SELF_SIGNED_CERT_IN_CHAIN: "The certificate hasn't got a known issuer",
  DEPTH_ZERO_SELF_SIGNED_CERT: "The certificate hasn't got a known issuer",
};

/**
 * QEMU's text for an OpenSSL verify error code, e.g. `CERT_HAS_EXPIRED` -> `The certificate
 * has expired`; any other code is `The certificate is not trusted` with the code appended.
 */
export function certificateRefusal(code: string): string {
  return BY_CODE[code] ?? `The certificate is not trusted (${code})`;
}
