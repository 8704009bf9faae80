import { type KeyObject, randomBytes, sign, timingSafeEqual, verify } from 'node:crypto';
import type { AeadKey } from './aead.ts';
import { Reader, Writer } from './bytes.ts';
import {
  certificateFingerprint,
  parseRawPublicKey,
  spkiFingerprint,
  verifyCertificateChain,
} from './certificates.ts';
import {
  AlertDescription,
  AlertLevel,
  CertificateType,
  CLIENT_CERT_TYPE_ECDSA_SIGN,
  ContentType,
  DTLS_1_2,
  ECDSA_SECP256R1_SHA256,
  ExtensionType,
  type GroupName,
  HandshakeType,
  MAX_PLAINTEXT,
  NamedGroup,
  RECORD_HEADER_LENGTH,
  RENEGOTIATION_SCSV,
} from './constants.ts';
import { type EphemeralKey, generateEphemeral } from './ecdhe.ts';
import { DtlsError, decodeError } from './errors.ts';
import { type FlightItem, type RecordSink, transmitFlight } from './flight.ts';
import {
  beginHandshake,
  type ClientHello,
  encodeHandshake,
  endHandshake,
  type HandshakeMessage,
  parseFragments,
  parseU8List,
  parseU16List,
  Reassembler,
} from './handshake.ts';
import type { ResolvedOptions } from './options.ts';
import { finishedVerifyData, keyBlock, masterSecret } from './prf.ts';
import { publicRandom } from './random.ts';
import {
  type DtlsRecord,
  encodeRecordInto,
  openRecord,
  sealedRecordLength,
  sealRecordInto,
} from './record.ts';
import { ReplayWindow } from './replay.ts';
import type { CachedSession, SessionCache } from './session-cache.ts';
import {
  aeadParameters,
  type CipherSuite,
  type CipherSuiteName,
  suiteById,
  usesEcdhe,
  usesPsk,
} from './suites.ts';
import type { DtlsSession, HandshakeFailure, PeerAddress, PeerCredential } from './types.ts';

export type CloseReason = 'peer-closed' | 'idle' | 'local' | 'replaced' | 'alert';

/** What a connection needs from the server that owns the socket. */
export interface ConnectionHost {
  readonly opts: ResolvedOptions;
  send(datagram: Buffer, peer: PeerAddress): void;
  established(conn: ServerConnection): void;
  closed(conn: ServerConnection, reason: CloseReason): void;
  failed(conn: ServerConnection, failure: HandshakeFailure): void;
  /**
   * Whether the peer, authenticated (its Finished verified), may hold a session: null, or the error that
   * refuses it (a session cap).
   */
  admit(conn: ServerConnection): DtlsError | null;
  discard(peer: PeerAddress, reason: 'bad-record-mac' | 'replay' | 'unknown-epoch'): void;
  /** A newer authenticated record for a CID session came from another address (RFC 9146 §6). */
  moved(conn: ServerConnection, from: PeerAddress): void;
  /** Resumable sessions (RFC 5246 §7.3), or null when resumption is off. */
  readonly sessions: SessionCache | null;
}

interface HandshakeState {
  /** Every handshake message so far, as hashed (RFC 5246 §7.4.9), one after the other in one buffer. */
  transcript: Writer;
  reassembler: Reassembler;
  expect: number[];
  ephemeral: EphemeralKey | null;
  requestCertificate: boolean;
  clientCertType: number;
  clientKey: KeyObject | null;
  unknownPskIdentity: boolean;
  master: Buffer | null;
  nextSendSeq: number;
  /** An abbreviated handshake: the client's Finished completes it, and nothing follows from us. */
  resumed: boolean;
  /** SHA-256 of the PSK used, kept with a resumable session (a rotated key must not resume it). */
  pskDigest: Buffer | null;
}

const MAX_SEQ = 2 ** 48 - 1;
/** Only ever copied into records. */
const CHANGE_CIPHER_SPEC = Buffer.from([1]);
const MAX_PSK_IDENTITY = 256;
/** Next-epoch records kept while the keys they need are still missing (a Finished and its retransmissions). */
const MAX_EARLY_RECORDS = 4;

function fail(code: string, message: string, alert: number): DtlsError {
  return new DtlsError(code, message, alert);
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

/**
 * One peer's DTLS 1.2 connection, server side: the handshake state machine, then record protection for the
 * established session. Created only after the peer proved its address with a valid cookie.
 */
export class ServerConnection implements DtlsSession, RecordSink {
  state: 'handshake' | 'established' | 'closed' = 'handshake';
  lastActivity: number;
  credential!: PeerCredential;
  /**
   * The certificate or raw key the peer sent, fingerprinted before it is checked, so a refused one can be
   * named in the failure (who tried what); unauthenticated, never trusted for anything else.
   */
  private claimedCertificate: HandshakeFailure['claimedCertificate'];
  extendedMasterSecret = false;
  /** Whether this session was resumed by an abbreviated handshake. */
  resumed = false;
  /** The session ID given in the ServerHello (empty when resumption is off). */
  private sessionId: Buffer = Buffer.alloc(0);
  /** The CID this server issued: what the peer puts on records it sends us. */
  connectionId: Buffer | null = null;
  private peerCid: Buffer | null = null;
  /**
   * The largest record plaintext the peer takes: 2^14, or what it asked for with max_fragment_length
   * (RFC 6066 §4) or record_size_limit (RFC 8449). Every record we send, handshake fragments included, fits.
   */
  private sendLimit = MAX_PLAINTEXT;
  /** The client's chain as sent, kept for a resumable session's re-verification. */
  private chainDer: Buffer[] | null = null;
  private suite!: CipherSuite;
  private clientRandom!: Buffer;
  private serverRandom!: Buffer;
  private hs: HandshakeState | null = null;
  private readKey: AeadKey | null = null;
  private writeKey: AeadKey | null = null;
  private writeEpoch: 0 | 1 = 0;
  private readonly writeSeq = [0, 0];
  private readonly replay = new ReplayWindow();
  private flight: FlightItem[] | null = null;
  private timer: NodeJS.Timeout | null = null;
  private retransmits = 0;
  private timeoutMs: number;
  /** When the client's next flight is due (set when the server sends a flight that expects one). */
  private deadline = Number.POSITIVE_INFINITY;
  private resendWanted = false;
  /**
   * Epoch-1 records (the client's Finished) that overtook the ClientKeyExchange they depend on, e.g. when a
   * lossy link dropped it and the client retransmits its flight record by record. Bounded; replayed once the
   * keys exist (RFC 6347 §4.1 allows buffering next-epoch records).
   */
  private early: Array<{ rec: DtlsRecord; from: PeerAddress }> = [];

  constructor(
    private readonly host: ConnectionHost,
    public peer: PeerAddress,
  ) {
    this.lastActivity = host.opts.now();
    this.timeoutMs = host.opts.retransmit.initialMs;
  }

  get cipherSuite(): CipherSuiteName {
    return this.suite.name;
  }

  // ---------------------------------------------------------------- handshake start

  /** Answers a cookie-verified ClientHello with the server's first flight. */
  start(hello: ClientHello, helloMessage: HandshakeMessage, recordSeq: number, ownCid: Buffer | null): void {
    try {
      this.negotiate(hello, helloMessage, recordSeq, ownCid);
    } catch (err) {
      this.abort(err);
    }
  }

  private negotiate(
    hello: ClientHello,
    msg: HandshakeMessage,
    recordSeq: number,
    ownCid: Buffer | null,
  ): void {
    const o = this.host.opts;
    // The HelloVerifyRequest used the client's first record number; anything we send (an alert included)
    // must come after it or the client's replay window drops it.
    this.writeSeq[0] = recordSeq;
    if (hello.compressionMethods.indexOf(0) < 0) {
      throw fail(
        'ERR_DTLS_COMPRESSION',
        'client offers no null compression',
        AlertDescription.illegalParameter,
      );
    }
    const reneg = hello.extensions.get(ExtensionType.renegotiationInfo);
    if (reneg && !(reneg.length === 1 && reneg[0] === 0)) {
      throw fail(
        'ERR_DTLS_RENEGOTIATION',
        'renegotiation is not supported',
        AlertDescription.handshakeFailure,
      );
    }
    this.extendedMasterSecret = hello.extensions.has(ExtensionType.extendedMasterSecret);
    if (o.requireExtendedMasterSecret && !this.extendedMasterSecret) {
      throw fail(
        'ERR_DTLS_EMS_REQUIRED',
        'client does not offer Extended Master Secret',
        AlertDescription.handshakeFailure,
      );
    }
    const ext = hello.extensions;
    const sigAlgs = ext.has(ExtensionType.signatureAlgorithms)
      ? parseU16List(ext.get(ExtensionType.signatureAlgorithms) as Buffer, 'signature_algorithms')
      : [ECDSA_SECP256R1_SHA256];
    const clientGroups = ext.has(ExtensionType.supportedGroups)
      ? parseU16List(ext.get(ExtensionType.supportedGroups) as Buffer, 'supported_groups')
      : [NamedGroup.secp256r1];
    let group: GroupName | undefined;
    for (const g of o.groups) {
      if (clientGroups.includes(NamedGroup[g])) {
        group = g;
        break;
      }
    }
    if (ext.has(ExtensionType.ecPointFormats)) {
      const formats = parseU8List(ext.get(ExtensionType.ecPointFormats) as Buffer, 'ec_point_formats');
      if (!formats.includes(0)) throw decodeError('ec_point_formats (no uncompressed)');
    }
    // RFC 7250: each side lists the certificate types it can send (client) or process (server's).
    const clientTypes = ext.has(ExtensionType.clientCertificateType)
      ? parseU8List(ext.get(ExtensionType.clientCertificateType) as Buffer, 'client_certificate_type')
      : [CertificateType.x509];
    const serverTypes = ext.has(ExtensionType.serverCertificateType)
      ? parseU8List(ext.get(ExtensionType.serverCertificateType) as Buffer, 'server_certificate_type')
      : [CertificateType.x509];
    let clientCertType: number | undefined;
    for (const t of clientTypes) {
      if (
        (t === CertificateType.x509 && o.trustAnchors.length > 0) ||
        (t === CertificateType.rawPublicKey && o.allowRawPublicKeys)
      ) {
        clientCertType = t;
        break;
      }
    }
    // A client authenticating with a raw public key usually expects one back (no PKI on either side).
    let serverCertType: number | undefined;
    if (
      clientCertType !== undefined &&
      serverTypes.includes(clientCertType) &&
      serverCanSend(o, clientCertType)
    ) {
      serverCertType = clientCertType;
    } else {
      for (const t of serverTypes) {
        if (serverCanSend(o, t)) {
          serverCertType = t;
          break;
        }
      }
    }
    const ecdsaUsable =
      o.identity !== null &&
      group !== undefined &&
      sigAlgs.includes(ECDSA_SECP256R1_SHA256) &&
      clientCertType !== undefined &&
      serverCertType !== undefined;
    let suite: CipherSuite | undefined;
    for (const s of serverPreference(o.suites, hello.cipherSuites)) {
      if (!hello.cipherSuites.includes(s.id)) continue;
      const usable =
        s.keyExchange === 'psk'
          ? o.lookupPsk !== null
          : s.keyExchange === 'ecdhe_psk'
            ? o.lookupPsk !== null && group !== undefined
            : ecdsaUsable;
      if (usable) {
        suite = s;
        break;
      }
    }
    if (!suite) {
      throw fail(
        'ERR_DTLS_NO_SHARED_SUITE',
        'no cipher suite acceptable to both sides',
        AlertDescription.handshakeFailure,
      );
    }
    this.suite = suite;
    this.clientRandom = Buffer.from(hello.random);
    this.serverRandom = publicRandom(32);
    const requestCertificate = suite.keyExchange === 'ecdhe_ecdsa';

    // RFC 8449 §5: with both, record_size_limit wins and max_fragment_length is ignored (not echoed).
    let echoMfl: number | null = null;
    const rsl = ext.get(ExtensionType.recordSizeLimit);
    const mfl = ext.get(ExtensionType.maxFragmentLength);
    if (rsl) {
      if (rsl.length !== 2) throw decodeError('record_size_limit');
      const limit = rsl.readUInt16BE(0);
      if (limit < 64) {
        throw fail(
          'ERR_DTLS_RECORD_SIZE_LIMIT',
          'record_size_limit below 64',
          AlertDescription.illegalParameter,
        );
      }
      this.sendLimit = Math.min(MAX_PLAINTEXT, limit);
    } else if (mfl) {
      const code = mfl.length === 1 ? (mfl[0] as number) : 0;
      if (code < 1 || code > 4) {
        throw fail(
          'ERR_DTLS_MAX_FRAGMENT_LENGTH',
          'max_fragment_length is not one of 2^9..2^12',
          AlertDescription.illegalParameter,
        );
      }
      this.sendLimit = 1 << (8 + code);
      echoMfl = code;
    }
    const cidAgreed = ownCid !== null && ext.has(ExtensionType.connectionId);
    if (cidAgreed) {
      const r = new Reader(ext.get(ExtensionType.connectionId) as Buffer, 'connection_id');
      const peerCid = r.vec8();
      r.end();
      this.peerCid = peerCid.length > 0 ? Buffer.from(peerCid) : null;
      this.connectionId = ownCid;
    }

    // An abbreviated handshake when the client names a session we remember, offers its suite again and the
    // session's credential still authorises it; otherwise a full handshake (a server may always decline).
    const cache = this.host.sessions;
    const cached = cache ? cache.get(hello.sessionId) : undefined;
    let resuming: CachedSession | undefined;
    if (cached && cache) {
      const cachedSuite = o.suites.find((s) => s.id === cached.suiteId);
      if (
        cachedSuite &&
        hello.cipherSuites.includes(cached.suiteId) &&
        // RFC 7627 §5.3: never resume across a change of Extended Master Secret.
        cached.extendedMasterSecret === this.extendedMasterSecret
      ) {
        if (this.reauthorize(cached)) {
          resuming = cached;
          this.suite = cachedSuite;
        } else {
          cache.forget(hello.sessionId);
        }
      }
    }
    this.sessionId = resuming ? Buffer.from(hello.sessionId) : cache ? publicRandom(32) : Buffer.alloc(0);

    const hs: HandshakeState = {
      transcript: new Writer(512).bytes(msg.encoded ?? encodeHandshake(msg.type, msg.seq, msg.body)),
      reassembler: new Reassembler(msg.seq + 1, {
        maxMessageLength: o.limits.maxHandshakeMessageLength,
        maxAhead: 4,
      }),
      expect: resuming
        ? [HandshakeType.finished]
        : requestCertificate
          ? [
              HandshakeType.certificate,
              HandshakeType.clientKeyExchange,
              HandshakeType.certificateVerify,
              HandshakeType.finished,
            ]
          : [HandshakeType.clientKeyExchange, HandshakeType.finished],
      ephemeral:
        !resuming && usesEcdhe(this.suite) ? generateEphemeral(group as NonNullable<typeof group>) : null,
      requestCertificate,
      clientCertType: clientCertType ?? CertificateType.x509,
      clientKey: null,
      unknownPskIdentity: false,
      master: null,
      // The server is stateless until now, so it numbers its messages from the client's (RFC 6347 §4.2.2).
      nextSendSeq: msg.seq,
      resumed: resuming !== undefined,
      pskDigest: null,
    };
    this.hs = hs;

    // The whole flight is written into one buffer; each message is a view of it, kept for retransmission.
    const w = new Writer(suite.keyExchange === 'ecdhe_ecdsa' ? 1024 : 128);
    const out: FlightItem[] = [];
    let start = beginHandshake(w, HandshakeType.serverHello, hs.nextSendSeq++);
    w.u16(DTLS_1_2).bytes(this.serverRandom).vec8(this.sessionId).u16(this.suite.id).u8(0);
    const extensionsAt = w.length;
    w.u16(0);
    if (reneg || hello.cipherSuites.includes(RENEGOTIATION_SCSV)) {
      w.u16(ExtensionType.renegotiationInfo).u16(1).u8(0);
    }
    if (this.extendedMasterSecret) w.u16(ExtensionType.extendedMasterSecret).u16(0);
    if (usesEcdhe(this.suite) && ext.has(ExtensionType.ecPointFormats)) {
      w.u16(ExtensionType.ecPointFormats).u16(2).u8(1).u8(0);
    }
    if (!resuming && suite.keyExchange === 'ecdhe_ecdsa') {
      if (ext.has(ExtensionType.clientCertificateType)) {
        w.u16(ExtensionType.clientCertificateType).u16(1);
        w.u8(clientCertType as number);
      }
      if (ext.has(ExtensionType.serverCertificateType)) {
        w.u16(ExtensionType.serverCertificateType).u16(1);
        w.u8(serverCertType as number);
      }
    }
    if (rsl) {
      // Our own limit: the DTLS 1.2 maximum; we take any record size.
      w.u16(ExtensionType.recordSizeLimit).u16(2).u16(MAX_PLAINTEXT);
    } else if (echoMfl !== null) {
      w.u16(ExtensionType.maxFragmentLength).u16(1).u8(echoMfl);
    }
    if (cidAgreed && ownCid) {
      w.u16(ExtensionType.connectionId)
        .u16(1 + ownCid.length)
        .vec8(ownCid);
    }
    const extensionsLength = w.length - extensionsAt - 2;
    // No extensions: the field is left out altogether (RFC 5246 §7.4.1.3).
    if (extensionsLength > 0) w.u16At(extensionsAt, extensionsLength);
    else w.truncate(extensionsAt);
    this.addToFlight(hs, out, endHandshake(w, start));
    if (resuming) {
      this.sendResumedFlight(hs, out, resuming);
      return;
    }
    if (suite.keyExchange === 'ecdhe_ecdsa') {
      const identity = o.identity as NonNullable<ResolvedOptions['identity']>;
      start = beginHandshake(w, HandshakeType.certificate, hs.nextSendSeq++);
      if (serverCertType === CertificateType.rawPublicKey) {
        w.vec24(identity.spki);
      } else {
        const list = new Writer();
        for (const der of identity.chain as Buffer[]) list.vec24(der);
        w.vec24(list.finish());
      }
      this.addToFlight(hs, out, endHandshake(w, start));
      const eph = hs.ephemeral as EphemeralKey;
      const params = new Writer().u8(3).u16(NamedGroup[eph.group]).vec8(eph.publicPoint).finish();
      const signature = sign(
        'sha256',
        Buffer.concat([this.clientRandom, this.serverRandom, params]),
        identity.privateKey,
      );
      start = beginHandshake(w, HandshakeType.serverKeyExchange, hs.nextSendSeq++);
      w.bytes(params).u16(ECDSA_SECP256R1_SHA256).vec16(signature);
      this.addToFlight(hs, out, endHandshake(w, start));
      start = beginHandshake(w, HandshakeType.certificateRequest, hs.nextSendSeq++);
      w.u8(1).u8(CLIENT_CERT_TYPE_ECDSA_SIGN).u16(2).u16(ECDSA_SECP256R1_SHA256).u16(0);
      this.addToFlight(hs, out, endHandshake(w, start));
    } else if (suite.keyExchange === 'ecdhe_psk') {
      const eph = hs.ephemeral as EphemeralKey;
      start = beginHandshake(w, HandshakeType.serverKeyExchange, hs.nextSendSeq++);
      w.u16(0).u8(3).u16(NamedGroup[eph.group]).vec8(eph.publicPoint);
      this.addToFlight(hs, out, endHandshake(w, start));
    }
    start = beginHandshake(w, HandshakeType.serverHelloDone, hs.nextSendSeq++);
    this.addToFlight(hs, out, endHandshake(w, start));
    this.sendFlight(out, true);
  }

  /**
   * The abbreviated handshake's server flight (RFC 5246 §7.3): ServerHello, ChangeCipherSpec and Finished under
   * keys from the remembered master secret and the new randoms. The client's Finished then completes it.
   */
  private sendResumedFlight(hs: HandshakeState, out: FlightItem[], cached: CachedSession): void {
    const { crypto } = this.host.opts;
    this.credential = cached.credential;
    this.resumed = true;
    hs.master = Buffer.from(cached.master);
    hs.pskDigest = cached.pskDigest;
    this.chainDer = cached.chainDer;
    const kb = keyBlock(
      crypto.prf,
      hs.master,
      this.clientRandom,
      this.serverRandom,
      aeadParameters(this.suite.aead),
    );
    this.readKey = crypto.aeadKey(this.suite, kb.clientKey, kb.clientSalt);
    this.writeKey = crypto.aeadKey(this.suite, kb.serverKey, kb.serverSalt);
    const serverFinished = encodeHandshake(
      HandshakeType.finished,
      hs.nextSendSeq++,
      finishedVerifyData(crypto.prf, hs.master, 'server', crypto.sha256([hs.transcript.finish()])),
    );
    hs.transcript.bytes(serverFinished);
    out.push({ epoch: 0, type: ContentType.changeCipherSpec, payload: CHANGE_CIPHER_SPEC });
    out.push({ epoch: 1, type: ContentType.handshake, payload: serverFinished });
    this.sendFlight(out, true);
  }

  /**
   * Whether a remembered session's credential still authorises it, asked as a full handshake would ask: the
   * PSK identity must still have a key (the gateway answers none for a decommissioned, isolated or revoked
   * device), and the same key; a chain must still verify (expiry, revocation) and pass verifyPeer.
   */
  private reauthorize(cached: CachedSession): boolean {
    const o = this.host.opts;
    const c = cached.credential;
    try {
      if (c.kind === 'psk') {
        const psk = o.lookupPsk?.(c.identity, this.peer);
        if (!psk || !cached.pskDigest) return false;
        const digest = o.crypto.sha256([psk]);
        return timingSafeEqual(digest, cached.pskDigest);
      }
      if (c.kind === 'x509') {
        if (!cached.chainDer) return false;
        verifyCertificateChain(cached.chainDer, o.trustAnchors, new Date(o.now()), o.revocation);
      }
      return o.verifyPeer(c, this.peer);
    } catch {
      return false;
    }
  }

  private addToFlight(hs: HandshakeState, out: FlightItem[], message: Buffer): void {
    hs.transcript.bytes(message);
    out.push({ epoch: 0, type: ContentType.handshake, payload: message });
  }

  // ---------------------------------------------------------------- records in

  /** Handles the records of one datagram from this peer. Never throws. */
  handleRecords(records: DtlsRecord[], from: PeerAddress): void {
    this.resendWanted = false;
    try {
      for (const rec of records) {
        if (this.state === 'closed') return;
        this.handleRecord(rec, from);
      }
      if (this.readKey && this.early.length > 0) {
        const early = this.early;
        this.early = [];
        for (const e of early) {
          if (this.state !== 'handshake') break;
          this.handleRecord(e.rec, e.from);
        }
      }
      if (this.resendWanted && this.flight) this.resendFlight();
    } catch (err) {
      this.abort(err);
    }
  }

  private handleRecord(rec: DtlsRecord, from: PeerAddress): void {
    if (rec.epoch === 0) {
      if (rec.cid) return; // CID records are always protected
      this.handlePlainRecord(rec);
      return;
    }
    if (
      rec.epoch === 1 &&
      !this.readKey &&
      this.state === 'handshake' &&
      this.early.length < MAX_EARLY_RECORDS
    ) {
      // Copied: the datagram's buffer is not ours to keep.
      this.early.push({
        rec: { ...rec, fragment: Buffer.from(rec.fragment), cid: rec.cid && Buffer.from(rec.cid) },
        from,
      });
      return;
    }
    if (rec.epoch !== 1 || !this.readKey) {
      this.host.discard(from, 'unknown-epoch');
      return;
    }
    if (!this.replay.check(rec.seq)) {
      this.host.discard(from, 'replay');
      return;
    }
    const opened = openRecord(this.readKey, rec);
    if (!opened) {
      if (this.state === 'handshake') {
        const hs = this.hs as HandshakeState;
        throw hs.unknownPskIdentity
          ? fail('ERR_DTLS_UNKNOWN_PSK_IDENTITY', 'unknown PSK identity', AlertDescription.badRecordMac)
          : fail(
              'ERR_DTLS_BAD_RECORD_MAC',
              'record did not authenticate (wrong key or tampered record)',
              AlertDescription.badRecordMac,
            );
      }
      // Established sessions drop forged records silently (RFC 6347 §4.1.2.7): an off-path sender must not
      // be able to tear a session down.
      this.host.discard(from, 'bad-record-mac');
      return;
    }
    const newest = this.replay.accept(rec.seq);
    this.lastActivity = this.host.opts.now();
    if (newest && rec.cid && (from.address !== this.peer.address || from.port !== this.peer.port)) {
      const old = this.peer;
      this.peer = from;
      this.host.moved(this, old);
    }
    switch (opened.type) {
      case ContentType.applicationData:
        if (this.state !== 'established') return;
        // The peer has our Finished: the final flight is no longer needed for retransmission.
        this.flight = null;
        this.host.opts.handlers.onData?.(this, opened.data);
        return;
      case ContentType.handshake:
        this.handleHandshakeData(opened.data, 1);
        return;
      case ContentType.alert:
        this.handleAlert(opened.data);
        return;
      default:
        throw fail(
          'ERR_DTLS_UNEXPECTED_MESSAGE',
          `unexpected record type ${opened.type}`,
          AlertDescription.unexpectedMessage,
        );
    }
  }

  private handlePlainRecord(rec: DtlsRecord): void {
    this.lastActivity = this.host.opts.now();
    if (this.state === 'established') {
      // Unauthenticated; only a retransmitted final flight from the client matters: our Finished was lost.
      if (rec.type === ContentType.handshake && this.flight) this.resendWanted = true;
      return;
    }
    switch (rec.type) {
      case ContentType.handshake:
        this.handleHandshakeData(rec.fragment, 0);
        return;
      case ContentType.changeCipherSpec:
        if (rec.fragment.length !== 1 || rec.fragment[0] !== 1) throw decodeError('ChangeCipherSpec');
        return;
      case ContentType.alert:
        this.handleAlert(rec.fragment);
        return;
      default:
        return;
    }
  }

  private handleAlert(data: Buffer): void {
    if (data.length !== 2) throw decodeError('alert');
    const [level, description] = [data[0] as number, data[1] as number];
    if (description === AlertDescription.closeNotify) {
      if (this.state === 'established') this.sendAlert(AlertLevel.warning, AlertDescription.closeNotify);
      this.terminate('peer-closed');
      return;
    }
    if (level === AlertLevel.fatal) {
      if (this.state === 'handshake') {
        this.host.failed(this, {
          peer: this.peer,
          code: 'ERR_DTLS_PEER_ALERT',
          message: `peer sent fatal alert ${description}`,
          ...(this.claimedCertificate ? { claimedCertificate: this.claimedCertificate } : {}),
          alert: description,
          fromPeer: true,
        });
      }
      this.terminate('alert');
    }
  }

  private handleHandshakeData(data: Buffer, epoch: 0 | 1): void {
    if (this.state === 'established') {
      // Either a retransmitted Finished (our final flight was lost) or a renegotiation attempt.
      const frags = parseFragments(data);
      if (frags.some((f) => f.type === HandshakeType.clientHello)) {
        this.sendAlert(AlertLevel.warning, AlertDescription.noRenegotiation);
      } else if (this.flight) {
        this.resendWanted = true;
      }
      return;
    }
    const hs = this.hs as HandshakeState;
    for (const f of parseFragments(data)) {
      // The Finished must arrive under the new keys, and nothing else may.
      if ((f.type === HandshakeType.finished) !== (epoch === 1)) {
        throw fail(
          'ERR_DTLS_UNEXPECTED_MESSAGE',
          'handshake message in the wrong epoch',
          AlertDescription.unexpectedMessage,
        );
      }
      if (hs.reassembler.add(f) === 'old') this.resendWanted = true;
    }
    for (let m = hs.reassembler.next(); m && this.state === 'handshake'; m = hs.reassembler.next()) {
      this.handleMessage(hs, m);
    }
  }

  private handleMessage(hs: HandshakeState, m: HandshakeMessage): void {
    const expected = hs.expect.shift();
    if (m.type !== expected) {
      throw fail(
        'ERR_DTLS_UNEXPECTED_MESSAGE',
        `unexpected handshake message ${m.type}`,
        AlertDescription.unexpectedMessage,
      );
    }
    const encoded = m.encoded ?? encodeHandshake(m.type, m.seq, m.body);
    switch (m.type) {
      case HandshakeType.certificate:
        this.onClientCertificate(hs, m.body);
        break;
      case HandshakeType.clientKeyExchange:
        hs.transcript.bytes(encoded);
        this.onClientKeyExchange(hs, m.body);
        return;
      case HandshakeType.certificateVerify:
        this.onCertificateVerify(hs, m.body);
        break;
      case HandshakeType.finished:
        this.onFinished(hs, m.body, encoded);
        return;
    }
    hs.transcript.bytes(encoded);
  }

  private onClientCertificate(hs: HandshakeState, body: Buffer): void {
    const o = this.host.opts;
    const r = new Reader(body, 'Certificate');
    const list = r.vec24();
    r.end();
    let credential: PeerCredential;
    let key: KeyObject;
    if (hs.clientCertType === CertificateType.rawPublicKey) {
      if (list.length === 0) {
        throw fail(
          'ERR_DTLS_NO_CERTIFICATE',
          'peer sent no raw public key',
          AlertDescription.handshakeFailure,
        );
      }
      this.claimedCertificate = { kind: 'rpk', fingerprint: spkiFingerprint(list) };
      key = parseRawPublicKey(list);
      credential = { kind: 'rpk', spki: Buffer.from(list), fingerprint: spkiFingerprint(list) };
    } else {
      const lr = new Reader(list, 'Certificate list');
      const ders: Buffer[] = [];
      while (lr.remaining > 0) ders.push(Buffer.from(lr.vec24()));
      // SHA-256 of the leaf's DER: the same hex as certificateFingerprint once it parses.
      if (ders[0]) this.claimedCertificate = { kind: 'x509', fingerprint: spkiFingerprint(ders[0]) };
      const chain = verifyCertificateChain(ders, o.trustAnchors, new Date(o.now()), o.revocation);
      this.chainDer = ders;
      const leaf = chain[0] as (typeof chain)[0];
      key = leaf.publicKey;
      credential = {
        kind: 'x509',
        chain,
        fingerprint: certificateFingerprint(leaf),
      };
    }
    if (!o.verifyPeer(credential, this.peer)) {
      throw fail(
        'ERR_DTLS_PEER_REJECTED',
        'peer credential rejected by policy',
        AlertDescription.accessDenied,
      );
    }
    hs.clientKey = key;
    this.credential = credential;
  }

  private onClientKeyExchange(hs: HandshakeState, body: Buffer): void {
    const r = new Reader(body, 'ClientKeyExchange');
    let psk: Buffer | null = null;
    if (usesPsk(this.suite)) {
      const identity = r.vec16();
      if (identity.length === 0 || identity.length > MAX_PSK_IDENTITY) throw decodeError('PSK identity');
      this.credential = { kind: 'psk', identity: Buffer.from(identity) };
      const found = (this.host.opts.lookupPsk as NonNullable<ResolvedOptions['lookupPsk']>)(
        identity,
        this.peer,
      );
      // RFC 4279 §2: carry on with a random key so an unknown identity looks exactly like a wrong key.
      hs.unknownPskIdentity = found === undefined;
      if (found && this.host.sessions) hs.pskDigest = this.host.opts.crypto.sha256([found]);
      psk = found ?? randomBytes(16);
    }
    let pms: Buffer;
    if (this.suite.keyExchange === 'psk') {
      const p = psk as Buffer;
      // RFC 4279 §2: uint16 N, N zero bytes, uint16 N, the PSK.
      pms = Buffer.allocUnsafe(4 + 2 * p.length);
      pms.writeUInt16BE(p.length, 0);
      pms.fill(0, 2, 2 + p.length);
      pms.writeUInt16BE(p.length, 2 + p.length);
      p.copy(pms, 4 + p.length);
    } else {
      const point = r.vec8();
      const shared = (hs.ephemeral as EphemeralKey).derive(point);
      pms = psk ? new Writer().vec16(shared).vec16(psk).finish() : shared;
    }
    r.end();
    hs.ephemeral = null;
    const { crypto } = this.host.opts;
    hs.master = masterSecret(
      crypto.prf,
      pms,
      this.clientRandom,
      this.serverRandom,
      this.extendedMasterSecret ? crypto.sha256([hs.transcript.finish()]) : null,
    );
    pms.fill(0);
    const kb = keyBlock(
      crypto.prf,
      hs.master,
      this.clientRandom,
      this.serverRandom,
      aeadParameters(this.suite.aead),
    );
    this.readKey = crypto.aeadKey(this.suite, kb.clientKey, kb.clientSalt);
    this.writeKey = crypto.aeadKey(this.suite, kb.serverKey, kb.serverSalt);
  }

  private onCertificateVerify(hs: HandshakeState, body: Buffer): void {
    const r = new Reader(body, 'CertificateVerify');
    const scheme = r.u16();
    const sig = r.vec16();
    r.end();
    if (scheme !== ECDSA_SECP256R1_SHA256) {
      throw fail(
        'ERR_DTLS_BAD_SIGNATURE_SCHEME',
        'unsupported CertificateVerify scheme',
        AlertDescription.illegalParameter,
      );
    }
    let ok = false;
    try {
      ok = verify('sha256', hs.transcript.finish(), hs.clientKey as KeyObject, sig);
    } catch {
      ok = false;
    }
    if (!ok) {
      throw fail(
        'ERR_DTLS_BAD_CERTIFICATE_VERIFY',
        'CertificateVerify signature is invalid',
        AlertDescription.decryptError,
      );
    }
  }

  private onFinished(hs: HandshakeState, body: Buffer, encoded: Buffer): void {
    const master = hs.master as Buffer;
    const { crypto } = this.host.opts;
    const expected = finishedVerifyData(
      crypto.prf,
      master,
      'client',
      crypto.sha256([hs.transcript.finish()]),
    );
    if (body.length !== expected.length || !timingSafeEqual(body, expected)) {
      throw fail(
        'ERR_DTLS_BAD_FINISHED',
        'client Finished does not match the handshake',
        AlertDescription.decryptError,
      );
    }
    // Authenticated now, so a refusal by the session caps cannot be provoked by someone without the key.
    const refused = this.host.admit(this);
    if (refused) throw refused;
    if (hs.resumed) {
      // Our Finished went first; the client's completes the abbreviated handshake. Nothing is left to resend.
      master.fill(0);
      this.clearTimer();
      this.hs = null;
      this.flight = null;
      this.state = 'established';
      this.host.established(this);
      return;
    }
    this.host.sessions?.put(this.sessionId, {
      master,
      suiteId: this.suite.id,
      extendedMasterSecret: this.extendedMasterSecret,
      credential: this.credential,
      pskDigest: hs.pskDigest,
      chainDer: this.chainDer,
    });
    hs.transcript.bytes(encoded);
    const serverFinished = encodeHandshake(
      HandshakeType.finished,
      hs.nextSendSeq++,
      finishedVerifyData(crypto.prf, master, 'server', crypto.sha256([hs.transcript.finish()])),
    );
    master.fill(0);
    this.clearTimer();
    this.hs = null;
    this.state = 'established';
    this.sendFlight(
      [
        { epoch: 0, type: ContentType.changeCipherSpec, payload: CHANGE_CIPHER_SPEC },
        { epoch: 1, type: ContentType.handshake, payload: serverFinished },
      ],
      false,
    );
    this.host.established(this);
  }

  // ---------------------------------------------------------------- records out

  private nextSeq(epoch: 0 | 1): number {
    const seq = this.writeSeq[epoch] as number;
    if (seq >= MAX_SEQ)
      throw fail(
        'ERR_DTLS_SEQ_EXHAUSTED',
        'record sequence numbers exhausted',
        AlertDescription.internalError,
      );
    this.writeSeq[epoch] = seq + 1;
    return seq;
  }

  /** One record on its own (an alert, application data): writeRecord into a buffer of its size. */
  private protect(epoch: 0 | 1, type: number, payload: Buffer): Buffer {
    const out = Buffer.allocUnsafe(this.recordLength(epoch, payload.length));
    this.writeRecord(epoch, type, payload, out, 0);
    return out;
  }

  // RecordSink, for transmitFlight (methods, not a per-connection object of closures).

  /** @internal */
  recordLength(epoch: 0 | 1, payloadLength: number): number {
    if (epoch === 0) return RECORD_HEADER_LENGTH + payloadLength;
    return sealedRecordLength(this.writeKey as AeadKey, payloadLength, this.peerCid);
  }

  /** @internal */
  writeRecord(epoch: 0 | 1, type: number, payload: Buffer, out: Buffer, offset: number): number {
    const seq = this.nextSeq(epoch);
    if (epoch === 0) return encodeRecordInto(type, DTLS_1_2, seq, payload, out, offset);
    return sealRecordInto(
      this.writeKey as AeadKey,
      type,
      DTLS_1_2,
      1,
      seq,
      payload,
      this.peerCid,
      out,
      offset,
    );
  }

  /** @internal */
  sendDatagram(datagram: Buffer): void {
    this.host.send(datagram, this.peer);
  }

  private transmitFlight(items: FlightItem[]): void {
    transmitFlight(items, this.host.opts.mtu, this, this.recordPayloadLimit());
  }

  /** The peer's plaintext limit per record; with a peer CID the inner content type takes one byte of it. */
  private recordPayloadLimit(): number {
    return this.peerCid ? this.sendLimit - 1 : this.sendLimit;
  }

  get maxPayload(): number {
    const limit = this.recordPayloadLimit();
    if (!this.writeKey) return limit;
    return Math.min(limit, this.host.opts.mtu - this.recordLength(1, 0));
  }

  private sendFlight(items: FlightItem[], expectReply: boolean): void {
    this.flight = items;
    this.retransmits = 0;
    this.timeoutMs = this.host.opts.retransmit.initialMs;
    this.transmitFlight(items);
    for (const item of items) if (item.epoch === 1) this.writeEpoch = 1;
    if (expectReply) {
      this.deadline = this.host.opts.now() + this.host.opts.limits.handshakeTimeoutMs;
      this.armTimer();
    }
  }

  private resendFlight(): void {
    if (!this.flight) return;
    // Each retransmission, timed or prompted by the peer, counts: a peer cannot make us amplify forever.
    if (++this.retransmits > this.host.opts.retransmit.maxRetransmits * 2) return;
    this.transmitFlight(this.flight);
  }

  private armTimer(): void {
    this.clearTimer();
    // The next retransmission, or the deadline if it comes first.
    const delay = Math.max(0, Math.min(this.timeoutMs, this.deadline - this.host.opts.now()));
    this.timer = setTimeout(ServerConnection.timerFired, delay, this);
    this.timer.unref();
  }

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private static timerFired(conn: ServerConnection): void {
    conn.onTimer();
  }

  private onTimer(): void {
    this.timer = null;
    if (this.state !== 'handshake') return;
    const policy = this.host.opts.retransmit;
    if (this.host.opts.now() >= this.deadline) {
      this.abort(
        fail('ERR_DTLS_HANDSHAKE_TIMEOUT', 'peer did not send its next flight before the deadline', -1),
      );
      return;
    }
    if (this.retransmits >= policy.maxRetransmits) {
      this.abort(fail('ERR_DTLS_HANDSHAKE_TIMEOUT', 'peer stopped answering during the handshake', -1));
      return;
    }
    this.retransmits++;
    try {
      if (this.flight) this.transmitFlight(this.flight);
    } catch (err) {
      this.abort(err);
      return;
    }
    this.timeoutMs = Math.min(this.timeoutMs * 2, policy.maxMs);
    this.armTimer();
  }

  private sendAlert(level: number, description: number): void {
    try {
      this.host.send(
        this.protect(this.writeEpoch, ContentType.alert, Buffer.from([level, description])),
        this.peer,
      );
    } catch {
      // Alerts are best effort; the connection is going away.
    }
  }

  /** Ends a failed handshake (or session): fatal alert unless the failure came from the peer or a timeout. */
  private abort(err: unknown): void {
    if (this.state === 'closed') return;
    const e =
      err instanceof DtlsError
        ? err
        : fail('ERR_DTLS_INTERNAL', 'internal error while handling the peer', AlertDescription.internalError);
    if (!(err instanceof DtlsError)) this.host.opts.handlers.onInternalError?.(err);
    if (e.alert >= 0) this.sendAlert(AlertLevel.fatal, e.alert);
    if (this.state === 'handshake') {
      this.host.failed(this, {
        peer: this.peer,
        code: e.code,
        message: e.message,
        alert: e.alert,
        fromPeer: false,
        ...(this.claimedCertificate ? { claimedCertificate: this.claimedCertificate } : {}),
      });
    }
    this.terminate('alert');
  }

  private terminate(reason: CloseReason): void {
    if (this.state === 'closed') return;
    // RFC 5246 §7.2.2: a session that ended in a fatal alert must not be resumed.
    // Not for a failed abbreviated handshake: session IDs travel in clear, and anyone could otherwise make the
    // server forget a session by starting to resume it and never finishing.
    if (reason === 'alert' && this.state === 'established' && this.sessionId.length > 0) {
      this.host.sessions?.forget(this.sessionId);
    }
    const wasEstablished = this.state === 'established';
    this.state = 'closed';
    this.clearTimer();
    this.hs = null;
    this.flight = null;
    this.readKey = null;
    this.writeKey = null;
    this.early = [];
    this.host.closed(this, wasEstablished ? reason : 'alert');
  }

  // ---------------------------------------------------------------- session API

  send(data: Buffer): void {
    if (this.state !== 'established') {
      throw new DtlsError(
        'ERR_DTLS_NOT_ESTABLISHED',
        'session is not established',
        AlertDescription.internalError,
      );
    }
    if (data.length > this.recordPayloadLimit()) {
      throw new DtlsError(
        'ERR_DTLS_TOO_LARGE',
        'application data exceeds one record (or the peer’s record size limit)',
        AlertDescription.internalError,
      );
    }
    this.host.send(this.protect(1, ContentType.applicationData, data), this.peer);
  }

  /** Drops a half-open handshake without a word to the peer (evicted to make room for another). */
  dropHandshake(): void {
    if (this.state === 'handshake') this.terminate('local');
  }

  close(reason: CloseReason = 'local'): void {
    if (this.state === 'established') this.sendAlert(AlertLevel.warning, AlertDescription.closeNotify);
    this.terminate(reason);
  }
}
