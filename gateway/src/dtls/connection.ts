import { packOwned, Writer } from './bytes.ts';
import { AlertDescription, AlertLevel, CertificateType, ContentType, HandshakeType } from './constants.ts';
import { DtlsError, decodeError } from './errors.ts';
import type { FlightItem } from './flight.ts';
import {
  type ClientHello,
  encodeHandshake,
  type HandshakeMessage,
  parseFragments,
  Reassembler,
} from './handshake.ts';
import type { ResolvedOptions } from './options.ts';
import { publicRandom } from './random.ts';
import type { DtlsRecord } from './record.ts';
import { RecordLayer } from './record-layer.ts';
import { type FlightOwner, Retransmitter } from './retransmit.ts';
import { readClientMessage } from './server-handshake/client-flight.ts';
import { readConnectionId, readHelloOffer, readSizeLimit } from './server-handshake/client-hello.ts';
import { checkClientFinished, finishHandshake } from './server-handshake/finished.ts';
import { findResumable, negotiate } from './server-handshake/negotiate.ts';
import { type HelloAnswer, writeServerFlight } from './server-handshake/server-flight.ts';
import {
  type HandshakeContext,
  type HandshakeState,
  newSessionParams,
  type SessionParams,
} from './server-handshake/state.ts';
import type { SessionCache } from './session-cache.ts';
import type { CipherSuite, CipherSuiteName } from './suites.ts';
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

/** Next-epoch records kept while the keys they need are still missing (a Finished and its retransmissions). */
const MAX_EARLY_RECORDS = 4;

function fail(code: string, message: string, alert: number): DtlsError {
  return new DtlsError(code, message, alert);
}

/**
 * One peer's DTLS 1.2 connection, server side. It routes the peer's records: clear handshake records and,
 * once keys exist, protected ones to the handshake phases (server-handshake/: read hello → negotiate → write
 * flight → read client flight → finished), application data to the session's handler, alerts to the end of
 * the connection. Record protection is the RecordLayer's, resending our flight the Retransmitter's. Created
 * only after the peer proved its address with a valid cookie.
 */
export class ServerConnection implements DtlsSession, HandshakeContext, FlightOwner {
  state: 'handshake' | 'established' | 'closed' = 'handshake';
  lastActivity: number;
  readonly params: SessionParams = newSessionParams();
  readonly records: RecordLayer;
  /**
   * Resends our flight while one is held; dropped once the peer shows our final flight arrived (its first
   * application-data record), as an established session never needs it again (~0.1 KiB a session).
   */
  private retransmit: Retransmitter | null;
  private hs: HandshakeState | null = null;
  /** Set while handling one datagram: the peer re-sent a flight, so ours was lost. */
  private resendWanted = false;
  /**
   * Epoch-1 records (the client's Finished) that overtook the ClientKeyExchange they depend on, e.g. when a
   * lossy link dropped it and the client retransmits its flight record by record. Bounded; replayed once the
   * keys exist (RFC 6347 §4.1 allows buffering next-epoch records). Null while none is (nearly always: an
   * empty array was 32 bytes of every established session).
   */
  private early: Array<{ rec: DtlsRecord; from: PeerAddress }> | null = null;
  /**
   * @internal The server's: the source address and credential key this established session is filed under in
   * its per-source and per-credential indexes (server.ts indexSession), null while it is not. Two fields here
   * rather than an entry in a map of the server's: ~0.08 KiB a session less at 10,000 (issue 23).
   */
  indexedAddress: string | null = null;
  indexedCredential: string | null = null;

  constructor(
    private readonly host: ConnectionHost,
    public peer: PeerAddress,
  ) {
    const o = host.opts;
    this.lastActivity = o.now();
    this.records = new RecordLayer(o.mtu, this);
    this.retransmit = new Retransmitter(o.retransmit, o.limits.handshakeTimeoutMs, o.now, this);
  }

  // ---------------------------------------------------------------- session facts (DtlsSession)

  get opts(): ResolvedOptions {
    return this.host.opts;
  }

  get sessions(): SessionCache | null {
    return this.host.sessions;
  }

  /** The peer's credential; before the handshake has read one (a failure that early), undefined. */
  get credential(): PeerCredential {
    return this.params.credential as PeerCredential;
  }

  get cipherSuite(): CipherSuiteName {
    return (this.params.suite as CipherSuite).name;
  }

  get extendedMasterSecret(): boolean {
    return this.params.extendedMasterSecret;
  }

  /** Whether this session was resumed by an abbreviated handshake. */
  get resumed(): boolean {
    return this.params.resumed;
  }

  /** The CID this server issued: what the peer puts on records it sends us. */
  get connectionId(): Buffer | null {
    return this.params.connectionId;
  }

  get maxPayload(): number {
    return this.records.maxPayload;
  }

  /** @internal FlightOwner */
  get handshaking(): boolean {
    return this.state === 'handshake';
  }

  // ---------------------------------------------------------------- handshake start

  /** Answers a cookie-verified ClientHello with the server's first flight. */
  start(hello: ClientHello, helloMessage: HandshakeMessage, recordSeq: number, ownCid: Buffer | null): void {
    try {
      this.records.continueAfter(recordSeq);
      this.retransmit?.send(this.firstFlight(hello, helloMessage, ownCid), true);
    } catch (err) {
      this.abort(err);
    }
  }

  /** Read hello → choose suite and credential (or a session to resume) → write the server's flight. */
  private firstFlight(hello: ClientHello, msg: HandshakeMessage, ownCid: Buffer | null): FlightItem[] {
    const o = this.opts;
    const p = this.params;
    const offer = readHelloOffer(hello, o);
    p.extendedMasterSecret = offer.extendedMasterSecret;
    const negotiated = negotiate(o, hello, offer);
    const size = readSizeLimit(hello);
    this.records.sendLimit = size.sendLimit;
    const peerCid = ownCid ? readConnectionId(hello) : undefined;
    if (peerCid !== undefined) {
      this.records.peerCid = peerCid;
      p.connectionId = ownCid;
    }
    const resuming = findResumable(o, this.sessions, hello, offer.extendedMasterSecret, this.peer);
    const suite = resuming ? resuming.suite : negotiated.suite;
    p.suite = suite;
    // A copy (the hello is the datagram's memory); packSession moves it into the session's own allocation.
    p.sessionId = resuming
      ? Buffer.from(hello.sessionId)
      : this.sessions
        ? this.sessions.newId(publicRandom)
        : p.sessionId;
    const hs = this.newHandshake(hello, msg, suite, negotiated.clientCertType, resuming !== undefined);
    this.hs = hs;
    const answer: HelloAnswer = { offer, negotiated, size, ownCid: p.connectionId, resuming };
    return writeServerFlight(this, hs, answer);
  }

  private newHandshake(
    hello: ClientHello,
    msg: HandshakeMessage,
    suite: CipherSuite,
    clientCertType: number | undefined,
    resumed: boolean,
  ): HandshakeState {
    return {
      suite,
      clientRandom: Buffer.from(hello.random),
      serverRandom: publicRandom(32),
      transcript: new Writer(512).bytes(msg.encoded ?? encodeHandshake(msg.type, msg.seq, msg.body)),
      reassembler: new Reassembler(msg.seq + 1, {
        maxMessageLength: this.opts.limits.maxHandshakeMessageLength,
        maxAhead: 4,
      }),
      expect: resumed
        ? [HandshakeType.finished]
        : suite.keyExchange === 'ecdhe_ecdsa'
          ? [
              HandshakeType.certificate,
              HandshakeType.clientKeyExchange,
              HandshakeType.certificateVerify,
              HandshakeType.finished,
            ]
          : [HandshakeType.clientKeyExchange, HandshakeType.finished],
      ephemeral: null,
      clientCertType: clientCertType ?? CertificateType.x509,
      clientKey: null,
      unknownPskIdentity: false,
      master: null,
      // The server is stateless until now, so it numbers its messages from the client's (RFC 6347 §4.2.2).
      nextSendSeq: msg.seq,
      resumed,
      pskDigest: null,
    };
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
      if (this.records.canRead && this.early) {
        const early = this.early;
        this.early = null;
        for (const e of early) {
          if (this.state !== 'handshake') break;
          this.handleRecord(e.rec, e.from);
        }
      }
      if (this.resendWanted) this.retransmit?.resend();
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
    const canRead = this.records.canRead;
    if (
      rec.epoch === 1 &&
      !canRead &&
      this.state === 'handshake' &&
      (this.early?.length ?? 0) < MAX_EARLY_RECORDS
    ) {
      // Copied: the datagram's buffer is not ours to keep.
      this.early ??= [];
      this.early.push({
        rec: { ...rec, fragment: Buffer.from(rec.fragment), cid: rec.cid && Buffer.from(rec.cid) },
        from,
      });
      return;
    }
    if (rec.epoch !== 1 || !canRead) {
      this.host.discard(from, 'unknown-epoch');
      return;
    }
    const opened = this.records.open(rec);
    if (opened === 'replay') {
      this.host.discard(from, 'replay');
      return;
    }
    if (opened === 'forged') {
      this.onForgedRecord(from);
      return;
    }
    this.lastActivity = this.opts.now();
    if (opened.newest && rec.cid && (from.address !== this.peer.address || from.port !== this.peer.port)) {
      const old = this.peer;
      this.peer = from;
      this.host.moved(this, old);
    }
    this.handleProtected(opened.type, opened.data);
  }

  /** A record that did not authenticate: fatal in the handshake (wrong key), dropped in a session. */
  private onForgedRecord(from: PeerAddress): void {
    if (this.state === 'handshake') {
      throw (this.hs as HandshakeState).unknownPskIdentity
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
  }

  private handleProtected(type: number, data: Buffer): void {
    switch (type) {
      case ContentType.applicationData:
        if (this.state !== 'established') return;
        // The peer has our Finished: the final flight is no longer needed for retransmission.
        this.dropRetransmit();
        this.opts.handlers.onData?.(this, data);
        return;
      case ContentType.handshake:
        this.handleHandshakeData(data, 1);
        return;
      case ContentType.alert:
        this.handleAlert(data);
        return;
      default:
        throw fail(
          'ERR_DTLS_UNEXPECTED_MESSAGE',
          `unexpected record type ${type}`,
          AlertDescription.unexpectedMessage,
        );
    }
  }

  private handlePlainRecord(rec: DtlsRecord): void {
    this.lastActivity = this.opts.now();
    if (this.state === 'established') {
      // Unauthenticated; only a retransmitted final flight from the client matters: our Finished was lost.
      if (rec.type === ContentType.handshake && this.retransmit?.holding) this.resendWanted = true;
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
          ...this.claimed(),
          alert: description,
          fromPeer: true,
        });
      }
      this.terminate('alert');
    }
  }

  // ---------------------------------------------------------------- the client's flight

  private handleHandshakeData(data: Buffer, epoch: 0 | 1): void {
    if (this.state === 'established') {
      // Either a retransmitted Finished (our final flight was lost) or a renegotiation attempt.
      const frags = parseFragments(data);
      if (frags.some((f) => f.type === HandshakeType.clientHello)) {
        this.sendAlert(AlertLevel.warning, AlertDescription.noRenegotiation);
      } else if (this.retransmit?.holding) {
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
      const finished = readClientMessage(this, hs, m);
      if (finished) this.onClientFinished(hs, m.body, finished);
    }
  }

  /** The client's Finished: checked, admitted by the session caps, answered; the session is established. */
  private onClientFinished(hs: HandshakeState, body: Buffer, encoded: Buffer): void {
    checkClientFinished(this, hs, body);
    // Authenticated now, so a refusal by the session caps cannot be provoked by someone without the key.
    const refused = this.host.admit(this);
    if (refused) throw refused;
    const finalFlight = finishHandshake(this, hs, encoded);
    this.retransmit?.stop();
    this.hs = null;
    this.state = 'established';
    this.packSession(finalFlight);
    // A resumed handshake's Finished went first: nothing is left to resend.
    if (finalFlight) this.retransmit?.send(finalFlight, false);
    else this.dropRetransmit();
    this.host.established(this);
  }

  private dropRetransmit(): void {
    this.retransmit?.release();
    this.retransmit = null;
  }

  /**
   * What the session keeps for its life — session ID, PSK identity, Connection IDs, record keys and the Finished
   * held for resending — moved into one allocation of its own (bytes.ts packOwned): each was a small Buffer
   * with its own ArrayBuffer and backing store, together most of an idle session's memory (issue 23).
   */
  private packSession(finalFlight: FlightItem[] | null): void {
    const p = this.params;
    const c = p.credential;
    packOwned((move) => {
      p.sessionId = move(p.sessionId);
      if (c?.kind === 'psk') c.identity = move(c.identity);
      if (p.connectionId) p.connectionId = move(p.connectionId);
      if (this.records.peerCid) this.records.peerCid = move(this.records.peerCid);
      this.records.relocateKeys(move);
      for (const item of finalFlight ?? []) if (item.epoch === 1) item.payload = move(item.payload);
    });
  }

  // ---------------------------------------------------------------- records out, ending

  /** @internal DatagramOut: the record layer's datagrams, to the peer's current address. */
  sendDatagram(datagram: Buffer): void {
    this.host.send(datagram, this.peer);
  }

  /** @internal FlightOwner */
  transmit(items: readonly FlightItem[]): void {
    this.records.transmit(items);
  }

  private sendAlert(level: number, description: number): void {
    try {
      const r = this.records;
      this.host.send(
        r.protect(r.writeEpoch, ContentType.alert, Buffer.from([level, description])),
        this.peer,
      );
    } catch {
      // Alerts are best effort; the connection is going away.
    }
  }

  private claimed(): Pick<HandshakeFailure, 'claimedCertificate'> {
    const c = this.params.claimedCertificate;
    return c ? { claimedCertificate: c } : {};
  }

  /**
   * @internal FlightOwner. Ends a failed handshake (or session): fatal alert unless the failure came from the
   * peer or a timeout.
   */
  abort(err: unknown): void {
    if (this.state === 'closed') return;
    const e =
      err instanceof DtlsError
        ? err
        : fail('ERR_DTLS_INTERNAL', 'internal error while handling the peer', AlertDescription.internalError);
    if (!(err instanceof DtlsError)) this.opts.handlers.onInternalError?.(err);
    if (e.alert >= 0) this.sendAlert(AlertLevel.fatal, e.alert);
    if (this.state === 'handshake') {
      this.host.failed(this, {
        peer: this.peer,
        code: e.code,
        message: e.message,
        alert: e.alert,
        fromPeer: false,
        ...this.claimed(),
      });
    }
    this.terminate('alert');
  }

  private terminate(reason: CloseReason): void {
    if (this.state === 'closed') return;
    // RFC 5246 §7.2.2: a session that ended in a fatal alert must not be resumed.
    // Not for a failed abbreviated handshake: session IDs travel in clear, and anyone could otherwise make the
    // server forget a session by starting to resume it and never finishing.
    if (reason === 'alert' && this.state === 'established' && this.params.sessionId.length > 0) {
      this.sessions?.forget(this.params.sessionId);
    }
    const wasEstablished = this.state === 'established';
    this.state = 'closed';
    this.dropRetransmit();
    this.hs = null;
    this.records.clear();
    this.early = null;
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
    if (data.length > this.records.payloadLimit) {
      throw new DtlsError(
        'ERR_DTLS_TOO_LARGE',
        'application data exceeds one record (or the peer’s record size limit)',
        AlertDescription.internalError,
      );
    }
    this.host.send(this.records.protect(1, ContentType.applicationData, data), this.peer);
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
