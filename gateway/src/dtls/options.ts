import { createPublicKey, type KeyObject, X509Certificate } from 'node:crypto';
import type { GroupName } from './constants.ts';
import { type DtlsCrypto, resolveDtlsCrypto } from './crypto.ts';
import { DtlsError } from './errors.ts';
import { DEFAULT_SESSION_CACHE, type SessionCacheOptions } from './session-cache.ts';
import { type CipherSuite, DEFAULT_SUITE_ORDER, suiteByName } from './suites.ts';
import type {
  DtlsLimits,
  DtlsServerHandlers,
  DtlsServerOptions,
  PeerAddress,
  PeerCredential,
  RetransmitPolicy,
  RevocationCheck,
} from './types.ts';

export interface ResolvedOptions {
  suites: CipherSuite[];
  groups: GroupName[];
  lookupPsk: ((identity: Buffer, peer: PeerAddress) => Buffer | undefined) | null;
  identity: { chain: Buffer[] | null; privateKey: KeyObject; spki: Buffer } | null;
  trustAnchors: X509Certificate[];
  revocation: RevocationCheck | undefined;
  allowRawPublicKeys: boolean;
  verifyPeer: (credential: PeerCredential, peer: PeerAddress) => boolean;
  requireExtendedMasterSecret: boolean;
  connectionIds: boolean;
  /** Length of the CIDs issued (0 when connectionIds is off): records parse with it. */
  cidLength: number;
  crypto: DtlsCrypto;
  mtu: number;
  limits: DtlsLimits;
  replaceSessionsOfIdentity: boolean;
  sessionResumption: SessionCacheOptions | null;
  retransmit: RetransmitPolicy;
  cookieRotateMs: number;
  now: () => number;
  handlers: DtlsServerHandlers;
}

export const DEFAULT_LIMITS: DtlsLimits = {
  maxSessions: 10_000,
  maxHandshakes: 500,
  handshakesPerSecondPerSource: 20,
  idleTimeoutMs: 10 * 60_000,
  maxHandshakeMessageLength: 16_384,
  // A sensor has one handshake in flight; a few more cover a NAT or a gateway of several. An attacker's
  // never-continued hellos stop at these instead of filling maxHandshakes (issue 19).
  maxHandshakesPerSource: 8,
  maxHandshakesPerPrefix: 64,
  // Covers the server's retransmissions at 1, 3 and 7 s (a client's lost flight) and a slow client's ECC.
  handshakeTimeoutMs: 10_000,
  // Off unless asked for: a library default cannot know whether clients share a credential. The gateway's
  // configuration turns them on.
  maxSessionsPerIdentity: Number.POSITIVE_INFINITY,
  maxSessionsPerSource: Number.POSITIVE_INFINITY,
};

export const DEFAULT_RETRANSMIT: RetransmitPolicy = { initialMs: 1000, maxMs: 60_000, maxRetransmits: 6 };

function invalid(message: string): DtlsError {
  return new DtlsError('ERR_DTLS_OPTIONS', message);
}

/** The server's key (P-256) and the chain that must match it, or null when it has none. */
function resolveIdentity(id: DtlsServerOptions['identity']): ResolvedOptions['identity'] {
  if (!id) return null;
  const key = id.privateKey;
  if (key.type !== 'private' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw invalid('server identity key must be a P-256 private key');
  }
  const spki = createPublicKey(key).export({ format: 'der', type: 'spki' });
  const chain = id.certificateChain ?? null;
  if (chain && chain.length > 0) {
    const leaf = new X509Certificate(chain[0] as Buffer);
    if (!leaf.checkPrivateKey(key)) throw invalid('server certificate does not match its private key');
  }
  return { chain: chain && chain.length > 0 ? chain : null, privateKey: key, spki };
}

/** Validates server options once, so the per-datagram path never has to. */
export function resolveOptions(o: DtlsServerOptions): ResolvedOptions {
  const names = o.cipherSuites ?? [...DEFAULT_SUITE_ORDER];
  if (names.length === 0) throw invalid('no cipher suites configured');
  const suites = names.map(suiteByName);
  const identity = resolveIdentity(o.identity);
  const ca = o.clientAuth ?? {};
  const mtu = o.mtu ?? 1200;
  // 128 still leaves a handshake fragment room beside its record, handshake and CID headers.
  if (!Number.isInteger(mtu) || mtu < 128 || mtu > 65_507) throw invalid('mtu must be between 128 and 65507');
  const {
    onSession,
    onData,
    onClose,
    onHandshakeFailure,
    onDiscard,
    onCapacity,
    onCookieRefused,
    onInternalError,
  } = o;
  const cid = o.connectionIds ?? false;
  const cidLength = cid === false ? 0 : cid === true ? 8 : cid.length;
  if (cid !== false && !(Number.isInteger(cidLength) && cidLength >= 1 && cidLength <= 32)) {
    throw invalid('connectionIds.length must be an integer from 1 to 32');
  }
  const resumption = o.sessionResumption
    ? { ...DEFAULT_SESSION_CACHE, ...(o.sessionResumption === true ? {} : o.sessionResumption) }
    : null;
  if (
    resumption &&
    !(Number.isInteger(resumption.maxEntries) && resumption.maxEntries >= 1 && resumption.lifetimeMs > 0)
  ) {
    throw invalid('sessionResumption needs maxEntries ≥ 1 and a positive lifetimeMs');
  }
  const limits = { ...DEFAULT_LIMITS, ...o.limits };
  for (const [name, v] of Object.entries(limits)) {
    if (!(v > 0)) throw invalid(`limits.${name} must be positive`);
  }
  return {
    suites,
    groups: o.groups ?? ['secp256r1', 'x25519'],
    lookupPsk: o.lookupPsk ?? null,
    identity,
    trustAnchors: ca.trustAnchors ?? [],
    revocation: ca.revocation,
    allowRawPublicKeys: ca.allowRawPublicKeys ?? false,
    verifyPeer: ca.verifyPeer ?? (() => true),
    requireExtendedMasterSecret: o.requireExtendedMasterSecret ?? false,
    connectionIds: cidLength > 0,
    cidLength,
    crypto: resolveDtlsCrypto(o.cryptoImplementation),
    mtu,
    limits,
    replaceSessionsOfIdentity: o.replaceSessionsOfIdentity ?? false,
    sessionResumption: resumption,
    retransmit: { ...DEFAULT_RETRANSMIT, ...o.retransmit },
    cookieRotateMs: o.cookieRotateMs ?? 60_000,
    now: o.now ?? Date.now,
    handlers: {
      onSession,
      onData,
      onClose,
      onHandshakeFailure,
      onDiscard,
      onCapacity,
      onCookieRefused,
      onInternalError,
    },
  };
}
