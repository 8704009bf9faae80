import type { KeyObject } from 'node:crypto';
import type { Writer } from '../bytes.ts';
import type { EphemeralKey } from '../ecdhe.ts';
import type { Reassembler } from '../handshake.ts';
import type { ResolvedOptions } from '../options.ts';
import type { RecordLayer } from '../record-layer.ts';
import type { SessionCache } from '../session-cache.ts';
import type { CipherSuite } from '../suites.ts';
import type { HandshakeFailure, PeerAddress, PeerCredential } from '../types.ts';

/**
 * What the handshake agrees and proves, kept for the session's lifetime: the connection exposes it (cipher
 * suite, credential, …) and the server reads it to index and cap sessions.
 */
export interface SessionParams {
  suite: CipherSuite | null;
  extendedMasterSecret: boolean;
  /** Who the peer claims to be (a PSK identity once its ClientKeyExchange is read), authenticated once established. */
  credential: PeerCredential | undefined;
  /**
   * The certificate or raw key the peer sent, fingerprinted before it is checked, so a refused one can be
   * named in the failure (who tried what); unauthenticated, never trusted for anything else.
   */
  claimedCertificate: HandshakeFailure['claimedCertificate'];
  /** Whether the session was resumed by an abbreviated handshake. */
  resumed: boolean;
  /** The session ID given in the ServerHello (empty when resumption is off). */
  sessionId: Buffer;
  /** The CID this server issued: what the peer puts on records it sends us. */
  connectionId: Buffer | null;
  /** The client's chain as sent, kept for a resumable session's re-verification. */
  chainDer: Buffer[] | null;
}

export function newSessionParams(): SessionParams {
  return {
    suite: null,
    extendedMasterSecret: false,
    credential: undefined,
    claimedCertificate: undefined,
    resumed: false,
    sessionId: EMPTY,
    connectionId: null,
    chainDer: null,
  };
}

const EMPTY = Buffer.alloc(0);

/** What the handshake phases need of the connection they run on. */
export interface HandshakeContext {
  readonly opts: ResolvedOptions;
  /** Resumable sessions, or null when resumption is off. */
  readonly sessions: SessionCache | null;
  readonly peer: PeerAddress;
  readonly params: SessionParams;
  readonly records: RecordLayer;
}

/**
 * The state of one server handshake, from the cookie-verified ClientHello to the client's Finished; dropped
 * once the handshake ends (Go's crypto/tls calls its counterpart serverHandshakeState).
 */
export interface HandshakeState {
  suite: CipherSuite;
  clientRandom: Buffer;
  serverRandom: Buffer;
  /** Every handshake message so far, as hashed (RFC 5246 §7.4.9), one after the other in one buffer. */
  transcript: Writer;
  reassembler: Reassembler;
  /** The client's messages still to come, in order. */
  expect: number[];
  ephemeral: EphemeralKey | null;
  /** The certificate type the client authenticates with (RFC 7250), for an ECDHE-ECDSA suite. */
  clientCertType: number;
  clientKey: KeyObject | null;
  unknownPskIdentity: boolean;
  master: Buffer | null;
  /** The message_seq of our next handshake message. */
  nextSendSeq: number;
  /** An abbreviated handshake: the client's Finished completes it, and nothing follows from us. */
  resumed: boolean;
  /** SHA-256 of the PSK used, kept with a resumable session (a rotated key must not resume it). */
  pskDigest: Buffer | null;
}
