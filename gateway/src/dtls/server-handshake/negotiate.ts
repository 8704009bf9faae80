import { timingSafeEqual } from 'node:crypto';
import { verifyCertificateChain } from '../certificates.ts';
import {
  AlertDescription,
  CertificateType,
  ECDSA_SECP256R1_SHA256,
  type GroupName,
  NamedGroup,
} from '../constants.ts';
import { DtlsError } from '../errors.ts';
import type { ClientHello } from '../handshake.ts';
import type { ResolvedOptions } from '../options.ts';
import type { CachedSession, SessionCache } from '../session-cache.ts';
import { type CipherSuite, suiteById, usesEcdhe } from '../suites.ts';
import type { PeerAddress } from '../types.ts';
import type { HelloOffer } from './client-hello.ts';

/** The server's choices for a full handshake. */
export interface Negotiated {
  suite: CipherSuite;
  /** The ECDHE group, when the client shares one of ours. */
  group: GroupName | undefined;
  /** The certificate type the client will authenticate with, and the one we send (RFC 7250). */
  clientCertType: number | undefined;
  serverCertType: number | undefined;
}

/**
 * The server's suite order for this client: its own, except that a client whose first choice among the
 * server's suites is a ChaCha20-Poly1305 one (a device without AES hardware says so by putting it first) gets
 * ChaCha20 ahead of AES within each key exchange's forward-secrecy tier. Forward secrecy stays first.
 */
function serverPreference(
  suites: readonly CipherSuite[],
  offered: readonly number[],
): readonly CipherSuite[] {
  // The client's very first suite, as OpenSSL's PRIORITIZE_CHACHA reads it: general-purpose stacks list
  // ChaCha20 after AES-256-GCM (which this server lacks), and must not be pushed off the AES addon for it.
  const first = offered[0] === undefined ? undefined : suiteById(offered[0]);
  if (first?.aead !== 'chacha20-poly1305') return suites;
  const rank = (s: CipherSuite) => (usesEcdhe(s) ? 0 : 2) + (s.aead === 'chacha20-poly1305' ? 0 : 1);
  return [...suites].sort((a, b) => rank(a) - rank(b));
}

/** Whether the server has a credential of certificate type `t` (RFC 7250) to send. */
function serverCanSend(o: ResolvedOptions, t: number): boolean {
  return (
    (t === CertificateType.x509 && Boolean(o.identity?.chain)) ||
    (t === CertificateType.rawPublicKey && o.identity !== null)
  );
}

/** The client's first certificate type the server can verify: X.509 with trust anchors, raw keys if allowed. */
function chooseClientCertType(o: ResolvedOptions, offer: HelloOffer): number | undefined {
  for (const t of offer.clientCertTypes) {
    if (
      (t === CertificateType.x509 && o.trustAnchors.length > 0) ||
      (t === CertificateType.rawPublicKey && o.allowRawPublicKeys)
    ) {
      return t;
    }
  }
  return undefined;
}

/** A client authenticating with a raw public key usually expects one back (no PKI on either side). */
function chooseServerCertType(
  o: ResolvedOptions,
  offer: HelloOffer,
  clientCertType: number | undefined,
): number | undefined {
  if (
    clientCertType !== undefined &&
    offer.serverCertTypes.includes(clientCertType) &&
    serverCanSend(o, clientCertType)
  ) {
    return clientCertType;
  }
  for (const t of offer.serverCertTypes) if (serverCanSend(o, t)) return t;
  return undefined;
}

/**
 * Chooses the suite, group and certificate types: the first suite in the server's preference that the client
 * offers and that can run (a PSK lookup for PSK suites, a shared group for ECDHE, a credential each way and
 * ecdsa_secp256r1_sha256 for ECDHE-ECDSA). None: handshake_failure.
 */
export function negotiate(o: ResolvedOptions, hello: ClientHello, offer: HelloOffer): Negotiated {
  const group = chooseGroup(o, offer);
  const clientCertType = chooseClientCertType(o, offer);
  const serverCertType = chooseServerCertType(o, offer, clientCertType);
  const ecdsaUsable =
    o.identity !== null &&
    group !== undefined &&
    offer.signatureAlgorithms.includes(ECDSA_SECP256R1_SHA256) &&
    clientCertType !== undefined &&
    serverCertType !== undefined;
  // Loops rather than callbacks: this runs for every handshake.
  for (const suite of serverPreference(o.suites, hello.cipherSuites)) {
    if (!hello.cipherSuites.includes(suite.id)) continue;
    const usable =
      suite.keyExchange === 'psk'
        ? o.lookupPsk !== null
        : suite.keyExchange === 'ecdhe_psk'
          ? o.lookupPsk !== null && group !== undefined
          : ecdsaUsable;
    if (usable) return { suite, group, clientCertType, serverCertType };
  }
  throw new DtlsError(
    'ERR_DTLS_NO_SHARED_SUITE',
    'no cipher suite acceptable to both sides',
    AlertDescription.handshakeFailure,
  );
}

/** Our first group (server preference) that the client supports. */
function chooseGroup(o: ResolvedOptions, offer: HelloOffer): GroupName | undefined {
  for (const g of o.groups) if (offer.groups.includes(NamedGroup[g])) return g;
  return undefined;
}

/** A remembered session to resume and its suite. */
export interface Resumption {
  cached: CachedSession;
  suite: CipherSuite;
}

/**
 * An abbreviated handshake when the client names a session we remember, offers its suite again and the
 * session's credential still authorises it; otherwise undefined, a full handshake (a server may always decline).
 * A session that no longer authorises is forgotten.
 */
export function findResumable(
  o: ResolvedOptions,
  cache: SessionCache | null,
  hello: ClientHello,
  extendedMasterSecret: boolean,
  peer: PeerAddress,
): Resumption | undefined {
  const cached = cache?.get(hello.sessionId);
  if (!cached || !cache) return undefined;
  let suite: CipherSuite | undefined;
  for (const s of o.suites) {
    if (s.id === cached.suiteId) {
      suite = s;
      break;
    }
  }
  if (
    !suite ||
    !hello.cipherSuites.includes(cached.suiteId) ||
    // RFC 7627 §5.3: never resume across a change of Extended Master Secret.
    cached.extendedMasterSecret !== extendedMasterSecret
  ) {
    return undefined;
  }
  if (!reauthorize(o, cached, peer)) {
    cache.forget(hello.sessionId);
    return undefined;
  }
  return { cached, suite };
}

/**
 * Whether a remembered session's credential still authorises it, asked as a full handshake would ask: the
 * PSK identity must still have a key (the gateway answers none for a decommissioned, isolated or revoked
 * device), and the same key; a chain must still verify (expiry, revocation) and pass verifyPeer.
 */
function reauthorize(o: ResolvedOptions, cached: CachedSession, peer: PeerAddress): boolean {
  const c = cached.credential;
  try {
    if (c.kind === 'psk') {
      const psk = o.lookupPsk?.(c.identity, peer);
      if (!psk || !cached.pskDigest) return false;
      const digest = o.crypto.sha256([psk]);
      return timingSafeEqual(digest, cached.pskDigest);
    }
    if (c.kind === 'x509') {
      if (!cached.chainDer) return false;
      verifyCertificateChain(cached.chainDer, o.trustAnchors, new Date(o.now()), o.revocation);
    }
    return o.verifyPeer(c, peer);
  } catch {
    return false;
  }
}
