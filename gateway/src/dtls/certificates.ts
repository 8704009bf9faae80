import { createHash, createPublicKey, type KeyObject, X509Certificate } from 'node:crypto';
import { AlertDescription } from './constants.ts';
import { DtlsError } from './errors.ts';
import type { RevocationCheck } from './types.ts';
import { readExtensions } from './x509-extensions.ts';

const MAX_CHAIN = 5;

/** The extensions this verifier acts on (RFC 5280 §4.2). A critical extension outside this set is refused. */
const KNOWN_EXTENSIONS = new Set([
  '2.5.29.14', // subjectKeyIdentifier
  '2.5.29.15', // keyUsage
  '2.5.29.17', // subjectAltName
  '2.5.29.18', // issuerAltName
  '2.5.29.19', // basicConstraints
  '2.5.29.35', // authorityKeyIdentifier
  '2.5.29.37', // extKeyUsage
]);
const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';

/** What node:crypto's X509Certificate does not expose: critical flags, path length, key usage bits. */
interface Constraints {
  /** The first critical extension outside KNOWN_EXTENSIONS, if any. */
  unknownCritical: string | null;
  pathLength: number | undefined;
  /** Undefined without the extension (then every usage is allowed). */
  keyUsage: { digitalSignature: boolean; keyCertSign: boolean; cRLSign: boolean } | undefined;
  /** Extended key usage OIDs, or undefined without the extension (then every purpose is allowed). */
  extKeyUsage: string[] | undefined;
}

// Read once per certificate object: anchors are the same objects handshake after handshake.
const parsed = new WeakMap<X509Certificate, Constraints>();

function constraintsOf(cert: X509Certificate): Constraints {
  let c = parsed.get(cert);
  if (c) return c;
  try {
    const e = readExtensions(cert.raw);
    c = {
      unknownCritical: e.critical.find((oid) => !KNOWN_EXTENSIONS.has(oid)) ?? null,
      pathLength: e.pathLength,
      keyUsage: e.keyUsage,
      extKeyUsage: e.extKeyUsage,
    };
  } catch {
    throw badCert('ERR_DTLS_CERT_PARSE', 'certificate extensions do not parse');
  }
  parsed.set(cert, c);
  return c;
}

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
 * Why `anchor` could never end a client path here (every chain to it would be refused), or null: for refusing
 * it when it is added rather than at every handshake.
 */
export function anchorProblem(anchor: X509Certificate): string | null {
  let c: Constraints;
  try {
    c = constraintsOf(anchor);
  } catch {
    return 'its extensions do not parse';
  }
  if (c.unknownCritical !== null) return `it has an unsupported critical extension (${c.unknownCritical})`;
  if (c.keyUsage !== undefined && !c.keyUsage.keyCertSign) return 'its key usage does not allow keyCertSign';
  return null;
}

/**
 * RFC 5280 §6.1 constraints on a path already linked by signatures: `path` is leaf first, each certificate
 * issued by the next, the last by `anchor`. No critical extension this code does not act on (anywhere,
 * anchor included); the leaf may authenticate a TLS client (extendedKeyUsage, if present, names clientAuth;
 * keyUsage, if present, allows digitalSignature for CertificateVerify); every issuer may sign certificates
 * (keyUsage keyCertSign, if present) and its pathLenConstraint bounds the CAs below it. EKU on intermediates
 * is read as a constraint on what they may certify, as OpenSSL and Windows do.
 */
function checkConstraints(path: X509Certificate[], anchor: X509Certificate): void {
  const all = [...path, anchor];
  for (let i = 0; i < all.length; i++) {
    const cert = all[i] as X509Certificate;
    const c = constraintsOf(cert);
    const what =
      i === 0 ? 'peer certificate' : i === path.length ? 'trust anchor' : 'intermediate certificate';
    if (c.unknownCritical !== null) {
      throw badCert(
        'ERR_DTLS_CERT_CRITICAL_EXTENSION',
        `${what} has an unsupported critical extension (${c.unknownCritical})`,
        AlertDescription.unsupportedCertificate,
      );
    }
    if (i === 0) {
      if (c.keyUsage !== undefined && !c.keyUsage.digitalSignature) {
        throw badCert(
          'ERR_DTLS_CERT_USAGE',
          'peer certificate key usage does not allow digitalSignature',
          AlertDescription.unsupportedCertificate,
        );
      }
    } else {
      if (c.keyUsage !== undefined && !c.keyUsage.keyCertSign) {
        throw badCert('ERR_DTLS_CERT_USAGE', `${what} key usage does not allow keyCertSign`);
      }
      // Intermediate CAs below this issuer: all[1..i-1].
      if (c.pathLength !== undefined && i - 1 > c.pathLength) {
        throw badCert(
          'ERR_DTLS_CERT_PATH_LENGTH',
          `${what} allows ${c.pathLength} intermediate CA(s) below it, the chain has ${i - 1}`,
        );
      }
    }
    // The anchor is trusted as configured, whatever purposes it lists.
    if (i < path.length && c.extKeyUsage !== undefined && !c.extKeyUsage.includes(CLIENT_AUTH)) {
      throw badCert(
        'ERR_DTLS_CERT_USAGE',
        `${what} extended key usage does not allow clientAuth`,
        AlertDescription.unsupportedCertificate,
      );
    }
  }
}

function checkRevocation(
  path: X509Certificate[],
  anchor: X509Certificate,
  revocation: RevocationCheck,
  now: Date,
): void {
  for (let i = 0; i < path.length; i++) {
    const what = i === 0 ? 'peer certificate' : 'intermediate certificate';
    const status = revocation(path[i] as X509Certificate, path[i + 1] ?? anchor, now);
    if (status === 'revoked') {
      throw badCert('ERR_DTLS_CERT_REVOKED', `${what} is revoked`, AlertDescription.certificateRevoked);
    }
    if (status !== 'good') {
      // Fail closed: a revocation list past its nextUpdate cannot say the certificate is still good.
      throw badCert(
        'ERR_DTLS_CERT_REVOCATION_UNKNOWN',
        `revocation status of the ${what} is unknown (revocation list out of date)`,
        AlertDescription.certificateUnknown,
      );
    }
  }
}

/**
 * Verifies a peer's X.509 chain (leaf first) against trust anchors: every link signed by the next, every
 * issuer a CA, every certificate (anchor included) valid at `now`, the leaf key P-256 (the only signature
 * scheme these suites negotiate), the path's constraints (see checkConstraints) and, with `revocation`,
 * every certificate of the path not revoked by its issuer. Returns the parsed chain.
 */
export function verifyCertificateChain(
  der: Buffer[],
  anchors: readonly X509Certificate[],
  now: Date,
  revocation?: RevocationCheck,
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
      const path = chain.slice(0, i + 1);
      checkConstraints(path, anchor);
      if (revocation) checkRevocation(path, anchor, revocation, now);
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

/**
 * The issuer of each certificate of an already verified chain, the last one's being the trust anchor that
 * signed it: what a revocation review of a live session walks. Empty when no anchor (any more) signs it.
 */
export function certificatePath(
  chain: readonly X509Certificate[],
  anchors: readonly X509Certificate[],
): { certificate: X509Certificate; issuer: X509Certificate }[] {
  for (let i = 0; i < chain.length; i++) {
    const cert = chain[i] as X509Certificate;
    const anchor = anchors.find((a) => cert.checkIssued(a) && cert.verify(a.publicKey));
    if (anchor) {
      return chain.slice(0, i + 1).map((c, j) => ({
        certificate: c,
        issuer: j < i ? (chain[j + 1] as X509Certificate) : anchor,
      }));
    }
  }
  return [];
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
