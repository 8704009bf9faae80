import { createHash, createPublicKey, type KeyObject, X509Certificate } from 'node:crypto';
import { AlertDescription } from './constants.ts';
import { DtlsError } from './errors.ts';

const MAX_CHAIN = 5;

function isP256(key: KeyObject): boolean {
  return key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1';
}

function badCert(code: string, message: string, alert: number = AlertDescription.badCertificate): DtlsError {
  return new DtlsError(code, message, alert);
}

function checkValidity(cert: X509Certificate, now: Date, what: string): void {
  if (now < new Date(cert.validFrom) || now > new Date(cert.validTo)) {
    throw badCert(
      'ERR_DTLS_CERT_EXPIRED',
      `${what} is outside its validity period`,
      AlertDescription.certificateExpired,
    );
  }
}

/**
 * Verifies a peer's X.509 chain (leaf first) against trust anchors: every link signed by the next, every
 * issuer a CA, every certificate (anchor included) valid at `now`, the leaf key P-256 (the only signature
 * scheme these suites negotiate). Returns the parsed chain.
 */
export function verifyCertificateChain(
  der: Buffer[],
  anchors: readonly X509Certificate[],
  now: Date,
): X509Certificate[] {
  if (der.length === 0)
    throw badCert('ERR_DTLS_NO_CERTIFICATE', 'peer sent no certificate', AlertDescription.handshakeFailure);
  if (der.length > MAX_CHAIN) throw badCert('ERR_DTLS_CERT_CHAIN', 'certificate chain too long');
  let chain: X509Certificate[];
  try {
    chain = der.map((d) => {
      const cert = new X509Certificate(d);
      // The key is decoded lazily and can fail on its own (found by fuzzing): decode it here, once.
      void cert.publicKey;
      return cert;
    });
  } catch {
    throw badCert('ERR_DTLS_CERT_PARSE', 'peer certificate does not parse');
  }
  const leaf = chain[0] as X509Certificate;
  if (!isP256(leaf.publicKey)) {
    throw badCert(
      'ERR_DTLS_CERT_KEY',
      'peer certificate key is not P-256',
      AlertDescription.unsupportedCertificate,
    );
  }
  for (let i = 0; i < chain.length; i++) {
    const cert = chain[i] as X509Certificate;
    checkValidity(cert, now, i === 0 ? 'peer certificate' : 'intermediate certificate');
    const anchor = anchors.find((a) => cert.checkIssued(a) && cert.verify(a.publicKey));
    if (anchor) {
      checkValidity(anchor, now, 'trust anchor');
      return chain;
    }
    const issuer = chain[i + 1];
    if (!issuer?.ca || !cert.checkIssued(issuer) || !cert.verify(issuer.publicKey)) break;
  }
  throw badCert(
    'ERR_DTLS_CERT_UNTRUSTED',
    'peer certificate does not chain to a trust anchor',
    AlertDescription.unknownCa,
  );
}

/** SHA-256 of the DER SubjectPublicKeyInfo, hex: how raw public keys are pinned. */
export function spkiFingerprint(spki: Buffer): string {
  return createHash('sha256').update(spki).digest('hex');
}

/** SHA-256 of the DER certificate, lowercase hex without colons: how certificate devices are looked up. */
export function certificateFingerprint(cert: X509Certificate): string {
  return cert.fingerprint256.replaceAll(':', '').toLowerCase();
}

export function parseRawPublicKey(spki: Buffer): KeyObject {
  let key: KeyObject;
  try {
    key = createPublicKey({ key: spki, format: 'der', type: 'spki' });
  } catch {
    throw badCert('ERR_DTLS_RPK_PARSE', 'raw public key does not parse');
  }
  if (!isP256(key))
    throw badCert('ERR_DTLS_RPK_KEY', 'raw public key is not P-256', AlertDescription.unsupportedCertificate);
  return key;
}
