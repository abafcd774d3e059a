/**
 * Just enough DER to read the three certificate extensions QEMU's tls-creds-x509 sanity
 * check looks at (crypto/tlscredsx509.c): basic constraints, key usage and extended key
 * usage, each with its critical flag. Node's X509Certificate exposes none of the flags.
 */
import { ArgumentError } from '../../errors.js';

/** One DER element: its tag and where its content lies in the buffer. */
interface Tlv {
  tag: number;
  start: number;
  end: number;
}

function tlv(b: Buffer, at: number, limit: number): Tlv {
  if (at + 2 > limit) throw new ArgumentError('DER: truncated element');
  const tag = b[at]!;
  let len = b[at + 1]!;
  let start = at + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4 || start + n > limit) throw new ArgumentError('DER: bad length');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + b[start + i]!;
    start += n;
  }
  if (start + len > limit) throw new ArgumentError('DER: element overruns its parent');
  return { tag, start, end: start + len };
}

function children(b: Buffer, parent: Tlv): Tlv[] {
  const out: Tlv[] = [];
  for (let at = parent.start; at < parent.end; ) {
    const c = tlv(b, at, parent.end);
    out.push(c);
    at = c.end;
  }
  return out;
}

/** An extension present in the certificate: whether it is critical and its value's DER. */
export interface CertExtension {
  critical: boolean;
  value: Buffer;
}

/** The extensions of a DER certificate by dotted OID. @throws {ArgumentError} on malformed DER. */
export function certExtensions(der: Buffer): Map<string, CertExtension> {
  const cert = tlv(der, 0, der.length);
  const tbs = children(der, cert)[0];
  const out = new Map<string, CertExtension>();
  if (!tbs) return out;
  // [3] EXPLICIT Extensions, after the version, serial, ... subjectPublicKeyInfo.
  const wrap = children(der, tbs).find((c) => c.tag === 0xa3);
  if (!wrap) return out;
  const list = children(der, wrap)[0];
  if (!list) return out;
  for (const ext of children(der, list)) {
    const [oid, second, third] = children(der, ext);
    if (!oid || !second) continue;
    const critical = second.tag === 0x01 && der[second.start] !== 0;
    const value = third ?? second;
    out.set(oidText(der.subarray(oid.start, oid.end)), {
      critical,
      value: der.subarray(value.start, value.end),
    });
  }
  return out;
}

/** An OBJECT IDENTIFIER's content as dotted text. */
export function oidText(b: Buffer): string {
  if (b.length === 0) return '';
  const parts = [Math.floor(b[0]! / 40), b[0]! % 40];
  let v = 0;
  for (let i = 1; i < b.length; i++) {
    v = v * 128 + (b[i]! & 0x7f);
    if (!(b[i]! & 0x80)) {
      parts.push(v);
      v = 0;
    }
  }
  return parts.join('.');
}

/** basicConstraints' cA flag (false when absent from the SEQUENCE). */
export function basicConstraintsCa(value: Buffer): boolean {
  const seq = tlv(value, 0, value.length);
  const first = children(value, seq)[0];
  return first?.tag === 0x01 && value[first.start] !== 0;
}

/** keyUsage's bits, bit 0 (digitalSignature) as 1 << 0, as GnuTLS numbers them reversed. */
export function keyUsageBits(value: Buffer): {
  digitalSignature: boolean;
  keyEncipherment: boolean;
  keyCertSign: boolean;
} {
  const bits = tlv(value, 0, value.length);
  const first = value[bits.start + 1] ?? 0;
  return {
    digitalSignature: (first & 0x80) !== 0,
    keyEncipherment: (first & 0x20) !== 0,
    keyCertSign: (first & 0x04) !== 0,
  };
}

/** extKeyUsage's purposes as dotted OIDs. */
export function extKeyUsage(value: Buffer): string[] {
  const seq = tlv(value, 0, value.length);
  return children(value, seq).map((c) => oidText(value.subarray(c.start, c.end)));
}

/**
 * Why `der` is not PKCS#3 DHParameter as GnuTLS imports it (one SEQUENCE of the prime and the
 * generator, INTEGERs, then an optional private value length), in libtasn1's terms: `tag`
 * for an element of another type, `der` for a length that does not fit; undefined when it is.
 */
export function dhParameterFault(der: Buffer): 'tag' | 'der' | undefined {
  try {
    if (der[0] !== 0x30) return 'tag';
    const seq = tlv(der, 0, der.length);
    if (seq.end !== der.length) return 'der';
    const ints = children(der, seq);
    if (ints.length < 2 || ints.length > 3) return 'der';
    return ints.every((i) => i.tag === 0x02) ? undefined : 'tag';
  } catch {
    return 'der';
  }
}
