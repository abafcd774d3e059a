/**
 * QEMU's tls-creds-x509 object (crypto/tlscredsx509.c, crypto/tlscreds.c): the PEM files
 * QEMU names in `dir`, loaded and sanity-checked at creation with QEMU 10.0's texts, turned
 * into node:tls options. GnuTLS's own reasons are given where Node can tell the same case.
 */
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { accessSync, constants } from 'node:fs';
import { createSecureContext } from 'node:tls';
import { genericError } from '../../qapi/errors.js';
import { strerror } from '../../util/errno.js';
import { basicConstraintsCa, certExtensions, dhParameterFault, extKeyUsage, keyUsageBits } from './der.js';
import { credsFile, readCredsFile } from './files.js';
import type { TlsCreds, TlsEndpoint } from './types.js';

/** tls-creds-x509's properties (QEMU's names in comments), as object-add checked them. */
export interface X509CredsProps {
  id: string;
  dir?: string;
  /** `endpoint`, QEMU's default client. */
  endpoint?: TlsEndpoint;
  /** `verify-peer`, default on. */
  verifyPeer?: boolean;
  priority?: string;
  /** `sanity-check`, default on. */
  sanityCheck?: boolean;
  passwordid?: string;
}

/** File names in `dir`, crypto/tlscredsx509.h. */
const FILES = {
  caCert: 'ca-cert.pem',
  caCrl: 'ca-crl.pem',
  serverCert: 'server-cert.pem',
  serverKey: 'server-key.pem',
  clientCert: 'client-cert.pem',
  clientKey: 'client-key.pem',
  dhParams: 'dh-params.pem',
} as const;

const OID = {
  basicConstraints: '2.5.29.19',
  keyUsage: '2.5.29.15',
  extKeyUsage: '2.5.29.37',
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
  anyPurpose: '2.5.29.37.0',
};

/**
 * A file of `dir` as QEMU's qcrypto_tls_creds_get_path finds it: readable, or absent when
 * optional. @throws {QapiError} `Unable to access credentials PATH: ERRNO`
 */
export function credsPath(dir: string, file: string, required: boolean): string | undefined {
  const path = credsFile(dir, file);
  try {
    accessSync(path, constants.R_OK);
    return path;
  } catch (e) {
    if (!required && (e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw genericError(`Unable to access credentials ${path}: ${strerror(e)}`);
  }
}

/**
 * A file's text as glib's g_file_get_contents reads it, or its error (`Error reading file “P”: ...`);
 * a file that is not a regular one (a FIFO would block) or too large is refused with the reason.
 */
export function contents(path: string, what: (reason: string) => string): string {
  try {
    return readCredsFile(path).toString('latin1');
  } catch (e) {
    throw genericError(what(`Error reading file “${path}”: ${strerror(e)}`));
  }
}

/** The base64 body of the first PEM block `label` (a RegExp source), or GnuTLS's reason why not. */
function pemBody(pem: string, label: string): { der: Buffer } | { reason: string } {
  const m = new RegExp(`-----BEGIN ${label}-----([^-]*)-----END`).exec(pem);
  if (!m) return { reason: 'Base64 unexpected header error.' };
  const b64 = m[1]!.replace(/\s+/g, '');
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(b64) || b64.length % 4 !== 0)
    return { reason: 'Base64 decoding error.' };
  return { der: Buffer.from(b64, 'base64') };
}

/** GnuTLS's reason for a PEM certificate it cannot import. */
function importReason(pem: string): string {
  const body = pemBody(pem, '(?:X509 )?CERTIFICATE');
  return 'reason' in body ? body.reason : 'ASN1 parser: Error in DER parsing.';
}

/**
 * A server's dh-params.pem (PKCS#3 in PEM), as QEMU reads and imports it; OpenSSL would skip
 * a file it cannot parse without a word. @throws {QapiError} QEMU's texts.
 */
export function dhParams(path: string): Buffer {
  const pem = contents(path, (why) => why);
  const body = pemBody(pem, 'DH PARAMETERS');
  const fault = 'reason' in body ? undefined : dhParameterFault(body.der);
  const reason =
    'reason' in body
      ? body.reason
      : fault && `ASN1 parser: ${fault === 'tag' ? 'Error in TAG.' : 'Error in DER parsing.'}`;
  if (reason) throw genericError(`Unable to load DH parameters from ${path}: ${reason}`);
  return Buffer.from(pem, 'latin1');
}

function parseCert(pem: string): X509Certificate | undefined {
  try {
    return new X509Certificate(pem);
  } catch {
    return undefined;
  }
}

type CertRole = { isServer: boolean; isCA: boolean; file: string };

function checkTimes(cert: X509Certificate, r: CertRole): void {
  const now = Date.now();
  const who = r.isCA ? 'CA' : r.isServer ? 'server' : 'client';
  if (Date.parse(cert.validTo) < now) throw genericError(`The ${who} certificate ${r.file} has expired`);
  if (Date.parse(cert.validFrom) > now)
    throw genericError(`The ${who} certificate ${r.file} is not yet active`);
}

/** Basic constraints, key usage and (leaf only) purpose, as qcrypto_tls_creds_check_cert. */
function checkExtensions(cert: X509Certificate, r: CertRole): void {
  const ext = certExtensions(cert.raw);
  const bc = ext.get(OID.basicConstraints);
  if (bc && basicConstraintsCa(bc.value)) {
    if (!r.isCA)
      throw genericError(
        `The certificate ${r.file} basic constraints show a CA, but we need one for a ${r.isServer ? 'server' : 'client'}`,
      );
  } else if (bc && r.isCA) throw genericError(`The certificate ${r.file} basic constraints do not show a CA`);
  else if (!bc && r.isCA)
    throw genericError(`The certificate ${r.file} is missing basic constraints for a CA`);
  // Absent key usage counts as the usage wanted; present, it binds only when critical.
  const ku = ext.get(OID.keyUsage);
  if (ku?.critical) {
    const u = keyUsageBits(ku.value);
    if (r.isCA && !u.keyCertSign)
      throw genericError(`Certificate ${r.file} usage does not permit certificate signing`);
    if (!r.isCA && !u.digitalSignature)
      throw genericError(`Certificate ${r.file} usage does not permit digital signature`);
    if (!r.isCA && !u.keyEncipherment)
      throw genericError(`Certificate ${r.file} usage does not permit key encipherment`);
  }
  const eku = ext.get(OID.extKeyUsage);
  if (r.isCA || !eku?.critical) return;
  const purposes = extKeyUsage(eku.value);
  const any = purposes.includes(OID.anyPurpose);
  if (r.isServer && !any && !purposes.includes(OID.serverAuth))
    throw genericError(`Certificate ${r.file} purpose does not allow use with a TLS server`);
  if (!r.isServer && !any && !purposes.includes(OID.clientAuth))
    throw genericError(`Certificate ${r.file} purpose does not allow use with a TLS client`);
}

/** Every PEM certificate of the CA file (GnuTLS imports at most 16). */
function caList(path: string): X509Certificate[] {
  const pem = contents(path, (why) => `Cannot load CA cert list ${path}: ${why}`);
  const blocks =
    pem.match(/-----BEGIN (?:X509 )?CERTIFICATE-----[^-]*-----END (?:X509 )?CERTIFICATE-----/g) ?? [];
  const certs = blocks.map(parseCert);
  if (!blocks.length || blocks.length > 16 || certs.some((c) => !c))
    throw genericError(`Unable to import CA certificate list ${path}`);
  return certs as X509Certificate[];
}

/** qcrypto_tls_creds_x509_sanity_check: the leaf (when readable), each CA, and the pair. */
function sanityCheck(isServer: boolean, caFile: string, certFile: string | undefined): void {
  let cert: X509Certificate | undefined;
  if (certFile && readable(certFile)) {
    const pem = contents(certFile, (why) => `Cannot load CA cert list ${certFile}: ${why}`);
    cert = parseCert(pem);
    if (!cert)
      throw genericError(
        `Unable to import ${isServer ? 'server' : 'client'} certificate ${certFile}: ${importReason(pem)}`,
      );
  }
  const cas = readable(caFile) ? caList(caFile) : [];
  if (cert) {
    const r = { isServer, isCA: false, file: certFile! };
    checkTimes(cert, r);
    checkExtensions(cert, r);
  }
  for (const ca of cas) {
    const r = { isServer, isCA: true, file: caFile };
    checkTimes(ca, r);
    checkExtensions(ca, r);
  }
  if (cert && cas.length) {
    const issuers = cas.filter((ca) => cert.checkIssued(ca));
    const reason = !issuers.length
      ? "The certificate hasn't got a known issuer"
      : !issuers.some((ca) => cert.verify(ca.publicKey))
        ? 'The certificate is not trusted'
        : undefined;
    if (reason)
      throw genericError(`Our own certificate ${certFile} failed validation against ${caFile}: ${reason}`);
  }
}

function readable(path: string): boolean {
  try {
    accessSync(path, constants.R_OK);
    return true;
  } catch {
    return false;
  }
}

/** The certificate and key pair, as gnutls_certificate_set_x509_key_file2 refuses them. */
function keyPair(
  certFile: string,
  keyFile: string,
  passwordid: string | undefined,
): { cert: string; key: string } {
  const fail = (why: string) =>
    genericError(`Cannot load certificate '${certFile}' & key '${keyFile}': ${why}`);
  // qmigrate has no `secret` objects, so any passwordid names a missing one, as QEMU says.
  if (passwordid !== undefined) throw genericError(`No secret with id '${passwordid}'`);
  let cert: string;
  let key: string;
  try {
    cert = readCredsFile(certFile).toString('latin1');
    key = readCredsFile(keyFile).toString('latin1');
  } catch {
    throw fail('Error while reading file.');
  }
  const x509 = parseCert(cert);
  if (!x509) throw fail(importReason(cert));
  let pkey: ReturnType<typeof createPrivateKey>;
  try {
    pkey = createPrivateKey(key);
  } catch {
    throw fail('The requested data were not available.');
  }
  if (!x509.checkPrivateKey(pkey)) throw fail('The certificate and the given key do not match.');
  return { cert, key };
}

/**
 * Creates a tls-creds-x509 object as QEMU 10.0 completes one: finds the files, runs the
 * sanity check (unless `sanity-check=off`), loads CA, certificate and key (and a server's CRL
 * and DH parameters), and returns the node:tls options for its end.
 * @throws {QapiError} with QEMU 10.0's text for the first problem; `priority` (a GnuTLS
 * priority string, which OpenSSL cannot take) is refused.
 */
export function loadX509Creds(p: X509CredsProps): TlsCreds {
  if (p.priority !== undefined)
    throw genericError(
      `Property 'priority' is not supported by qmigrate: it is a GnuTLS priority string, and Node's TLS is OpenSSL`,
    );
  const dir = p.dir;
  if (dir === undefined) throw genericError("Missing 'dir' property value");
  const endpoint = p.endpoint ?? 'client';
  const isServer = endpoint === 'server';
  const caFile = credsPath(dir, FILES.caCert, true)!;
  const crlFile = isServer ? credsPath(dir, FILES.caCrl, false) : undefined;
  const certFile = credsPath(dir, isServer ? FILES.serverCert : FILES.clientCert, isServer);
  const keyFile = credsPath(dir, isServer ? FILES.serverKey : FILES.clientKey, isServer);
  const dhFile = isServer ? credsPath(dir, FILES.dhParams, false) : undefined;
  if (p.sanityCheck ?? true) sanityCheck(isServer, caFile, certFile);
  const ca = contents(caFile, (why) => `Cannot load CA certificate '${caFile}': ${why}`);
  const pair = certFile && keyFile ? keyPair(certFile, keyFile, p.passwordid) : undefined;
  const crl = crlFile ? contents(crlFile, (why) => `Cannot load CRL '${crlFile}': ${why}`) : undefined;
  const dhparam = dhFile ? dhParams(dhFile) : undefined;
  const verifyPeer = p.verifyPeer ?? true;
  const tlsOptions = {
    ca,
    ...pair,
    ...(crl !== undefined && { crl }),
    ...(dhparam !== undefined && { dhparam }),
    ...(isServer ? { requestCert: verifyPeer } : {}),
    rejectUnauthorized: verifyPeer,
  };
  try {
    createSecureContext(tlsOptions);
  } catch (e) {
    throw genericError(`Cannot load credentials from ${dir}: ${(e as Error).message}`);
  }
  return { id: p.id, type: 'tls-creds-x509', endpoint, verifyPeer, tlsOptions };
}
