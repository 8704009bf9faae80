import type { KeyObject, X509Certificate } from 'node:crypto';
import type { GroupName } from './constants.ts';
import type { CryptoImplementation } from './crypto.ts';
import type { CipherSuiteName } from './suites.ts';

export interface PeerAddress {
  address: string;
  port: number;
  family: 'IPv4' | 'IPv6';
}

/** What the peer authenticated with. PSK values never appear here, only the identity. */
export type PeerCredential =
  | { kind: 'psk'; identity: Buffer }
  | { kind: 'x509'; chain: X509Certificate[]; fingerprint: string }
  | { kind: 'rpk'; spki: Buffer; fingerprint: string };

/**
 * Revocation status of `certificate` as its `issuer` (the next certificate of the chain, or the trust anchor)
 * publishes it: `unknown` when the issuer's revocation list is out of date, and the handshake is refused.
 */
export type RevocationStatus = 'good' | 'revoked' | 'unknown';
export type RevocationCheck = (
  certificate: X509Certificate,
  issuer: X509Certificate,
  now: Date,
) => RevocationStatus;

export interface HandshakeFailure {
  peer: PeerAddress;
  code: string;
  message: string;
  /** The alert description sent to the peer, or the one it sent us (`fromPeer`). */
  alert: number;
  fromPeer: boolean;
  /**
   * The PSK identity the peer claimed before it failed, if it got that far. Unauthenticated: good for
   * attributing failed attempts (credential guessing) to a device, never for trusting anything.
   */
  claimedPskIdentity?: Buffer;
  /** Likewise the certificate (SHA-256 of the leaf's DER) or raw public key (of its SPKI) it sent, if any. */
  claimedCertificate?: { kind: 'x509' | 'rpk'; fingerprint: string };
}

export interface DiscardEvent {
  peer: PeerAddress;
  reason:
    | 'bad-record-mac'
    | 'replay'
    | 'unknown-epoch'
    | 'malformed'
    | 'rate-limited'
    | 'capacity'
    | 'unknown-cid';
}

/** Which limit refused a peer (or, for `handshakes` with `evicted`, made room by evicting another). */
export type CapacityReason =
  | 'handshakes-per-source'
  | 'handshakes-per-prefix'
  | 'handshakes'
  | 'sessions'
  | 'sessions-per-source'
  | 'sessions-per-identity';

/**
 * A capacity decision. `refused`: the peer's cookie-verified hello (or, for the session caps, its completed
 * handshake) was turned away. `evicted`: the half-open handshake table was full, so the oldest half-open
 * handshake of the heaviest source (`evicted`) was dropped to admit `peer`.
 */
export interface CapacityEvent {
  peer: PeerAddress;
  reason: CapacityReason;
  action: 'refused' | 'evicted';
  evicted?: PeerAddress;
  /** For the session caps: the authenticated credential that was refused. */
  credential?: PeerCredential;
}

export interface ServerIdentity {
  /** DER certificates, leaf first. Omit to offer only a raw public key. */
  certificateChain?: Buffer[];
  /** P-256 private key of the leaf (or of the raw public key). */
  privateKey: KeyObject;
}

export interface DtlsLimits {
  maxSessions: number;
  maxHandshakes: number;
  /** Valid-cookie ClientHellos per second per source address (burst: the same number). */
  handshakesPerSecondPerSource: number;
  idleTimeoutMs: number;
  maxHandshakeMessageLength: number;
  /** Half-open handshakes (the server's flight sent, the client's not yet in) from one source address. */
  maxHandshakesPerSource: number;
  /** Half-open handshakes from one IPv4 /24 or IPv6 /64. */
  maxHandshakesPerPrefix: number;
  /** How long a client has for its next flight once the server has sent its own; then the handshake is dropped. */
  handshakeTimeoutMs: number;
  /** Established sessions per credential (PSK identity, certificate or raw key). */
  maxSessionsPerIdentity: number;
  /** Established sessions per source address. */
  maxSessionsPerSource: number;
}

export interface RetransmitPolicy {
  initialMs: number;
  maxMs: number;
  /** After this many retransmissions of one flight the handshake is abandoned. */
  maxRetransmits: number;
}

export interface DtlsSessionInfo {
  readonly peer: PeerAddress;
  readonly credential: PeerCredential;
  readonly cipherSuite: CipherSuiteName;
  readonly extendedMasterSecret: boolean;
  readonly connectionId: Buffer | null;
  /**
   * The most application data one record to this peer carries without exceeding its record size limit
   * (max_fragment_length, RFC 6066; record_size_limit, RFC 8449) or the MTU. CoAP goes block-wise above it.
   */
  readonly maxPayload?: number;
  /** Whether the session was resumed by an abbreviated handshake. */
  readonly resumed?: boolean;
}

export interface DtlsSession extends DtlsSessionInfo {
  send(data: Buffer): void;
  close(): void;
}

export interface DtlsServerHandlers {
  onSession?(session: DtlsSession): void;
  onData?(session: DtlsSession, data: Buffer): void;
  onClose?(session: DtlsSession, reason: 'peer-closed' | 'idle' | 'local' | 'replaced' | 'alert'): void;
  onHandshakeFailure?(failure: HandshakeFailure): void;
  onDiscard?(event: DiscardEvent): void;
  /** A limit refused a peer, or a half-open handshake was evicted to make room (see `CapacityEvent`). */
  onCapacity?(event: CapacityEvent): void;
  /**
   * A ClientHello carried a cookie that did not verify (made for another address or client random, or under a
   * secret rotated out twice); it was answered with a fresh HelloVerifyRequest. Unauthenticated, so floodable:
   * a handler keeps at most a bounded summary.
   */
  onCookieRefused?(peer: PeerAddress): void;
  /** A bug, never a peer's doing; the socket keeps serving. */
  onInternalError?(err: unknown): void;
}

export interface DtlsServerOptions extends DtlsServerHandlers {
  /** Server preference order; only these are ever negotiated. */
  cipherSuites?: CipherSuiteName[];
  groups?: GroupName[];
  /** PSK for an identity, or undefined if unknown. Called once per handshake. */
  lookupPsk?(identity: Buffer, peer: PeerAddress): Buffer | undefined;
  identity?: ServerIdentity;
  /** Client authentication for ECDHE_ECDSA suites. */
  clientAuth?: {
    trustAnchors?: X509Certificate[];
    allowRawPublicKeys?: boolean;
    /** Asked for every certificate of a chain that reached a trust anchor (revocation lists live outside). */
    revocation?: RevocationCheck;
    /** Final say on an authenticated credential (pinning, revocation, device state). */
    verifyPeer?(credential: PeerCredential, peer: PeerAddress): boolean;
  };
  /** Refuse clients that do not offer RFC 7627 Extended Master Secret. */
  requireExtendedMasterSecret?: boolean;
  /**
   * Issue RFC 9146 Connection IDs to clients that offer the extension: `true` for 8-byte CIDs, or the length
   * (1–32 bytes). A session with a CID follows its peer to a new address (NAT rebinding), moved only by the
   * newest authenticated record (RFC 9146 §6).
   */
  connectionIds?: boolean | { length: number };
  /**
   * Who computes record AEAD, PRF, cookies and transcript hashes: the native addon (the default where it loads)
   * or node:crypto. Asking for `native` where the addon does not load is an ERR_DTLS_OPTIONS error.
   */
  cryptoImplementation?: CryptoImplementation;
  /** Largest datagram the server sends. */
  mtu?: number;
  limits?: Partial<DtlsLimits>;
  /**
   * A handshake completed with a credential closes that credential's earlier sessions from the same source
   * address (a sensor that restarted on a new port), so they neither linger nor count against the caps.
   */
  replaceSessionsOfIdentity?: boolean;
  retransmit?: Partial<RetransmitPolicy>;
  /**
   * Session resumption by session ID (RFC 5246 §7.3) from a bounded cache: `true` for 10,000 sessions for
   * 24 hours, or the numbers. Every resumption re-asks lookupPsk / the chain checks / verifyPeer. Off by default.
   */
  sessionResumption?: boolean | { maxEntries?: number; lifetimeMs?: number };
  cookieRotateMs?: number;
  now?: () => number;
}
