import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { lookup as dnsLookup, type LookupOneOptions } from 'node:dns';
import { once } from 'node:events';
import { isIP, isIPv4 } from 'node:net';
import { type CloseReason, type ConnectionHost, ServerConnection } from './connection.ts';
import {
  AlertDescription,
  AlertLevel,
  ContentType,
  DTLS_1_0,
  DTLS_1_2,
  HANDSHAKE_HEADER_LENGTH,
  HandshakeType,
  RECORD_HEADER_LENGTH,
} from './constants.ts';
import { CookieJar } from './cookie.ts';
import { DtlsError } from './errors.ts';
import { GroupIndex } from './group-index.ts';
import {
  type ClientHello,
  type ClientHelloHead,
  type HandshakeMessage,
  parseClientHello,
  parseFragments,
  Reassembler,
  readClientHelloHead,
} from './handshake.ts';
import { type ResolvedOptions, resolveOptions } from './options.ts';
import { publicRandom } from './random.ts';
import { type DtlsRecord, encodeRecord, parseRecords } from './record.ts';
import { SessionCache } from './session-cache.ts';
import type {
  CapacityReason,
  DiscardEvent,
  DtlsServerOptions,
  HandshakeFailure,
  PeerAddress,
  PeerCredential,
} from './types.ts';

/** Length of the Connection IDs this server issues unless told otherwise (`connectionIds: { length }`). */
export const CID_LENGTH = 8;
const MAX_RATE_BUCKETS = 10_000;
/** Generous: a client re-sending its hello after several HelloVerifyRequests counts up. */
const MAX_INITIAL_HELLO_SEQ = 16;
/**
 * Fragmented ClientHellos being put together (their first fragment carried a valid cookie): at most this many
 * at once, one per source address and port, each at most MAX_FRAGMENTED_HELLO bytes and kept at most
 * handshakeTimeoutMs. Real hellos are a few hundred bytes; one that needs fragmenting is a long extension
 * list on a small MTU.
 */
const MAX_HELLO_REASSEMBLIES = 64;
const MAX_FRAGMENTED_HELLO = 8192;

/** A fragmented ClientHello whose cookie verified, waiting for its other fragments. */
interface HelloReassembly {
  reassembler: Reassembler;
  /** The highest record number seen: the server's own records start after it. */
  recordSeq: number;
  expires: number;
}

export interface DtlsServerStats {
  datagrams: number;
  helloVerifyRequests: number;
  handshakesStarted: number;
  handshakesCompleted: number;
  /** Of the completed: abbreviated handshakes resuming a remembered session. */
  handshakesResumed: number;
  handshakesFailed: number;
  /** Half-open handshakes dropped because the client's next flight missed `handshakeTimeoutMs`. */
  handshakesTimedOut: number;
  /** Half-open handshakes of the heaviest source dropped to admit a lighter one when the table was full. */
  handshakesEvicted: number;
  /** Peers turned away by a limit, in all and by limit. */
  capacityRefusals: number;
  refusedBy: Record<CapacityReason, number>;
  discarded: number;
  internalErrors: number;
}

function peerKey(p: PeerAddress): string {
  return `${p.address}|${p.port}`;
}

/** The four leading 16-bit groups of an IPv6 address (its /64), or null if it is not one. */
function ipv6Prefix64(address: string): string | null {
  const plain = address.split('%')[0] as string;
  const halves = plain.split('::');
  if (halves.length > 2) return null;
  const groups = (part: string | undefined) =>
    part ? part.split(':').flatMap((g) => (g.includes('.') ? ['0', '0'] : [g])) : [];
  const head = groups(halves[0]);
  const tail = halves.length === 2 ? groups(halves[1]) : [];
  const all =
    halves.length === 2 ? [...head, ...new Array(8 - head.length - tail.length).fill('0'), ...tail] : head;
  if (all.length !== 8) return null;
  return all
    .slice(0, 4)
    .map((g) => Number.parseInt(g, 16).toString(16))
    .join(':');
}

/**
 * The network a source address belongs to for the per-prefix handshake cap: its IPv4 /24 (IPv4-mapped IPv6
 * included) or IPv6 /64 — what one host on a segment can usually take addresses from.
 */
export function sourcePrefix(address: string): string {
  const v4 = address.startsWith('::ffff:') && isIPv4(address.slice(7)) ? address.slice(7) : address;
  if (isIPv4(v4)) return `${v4.slice(0, v4.lastIndexOf('.'))}.0/24`;
  const p = ipv6Prefix64(address);
  return p === null ? address : `${p}::/64`;
}

/** One key per credential, for the per-identity session cap. */
function credentialKey(c: PeerCredential): string {
  return c.kind === 'psk' ? `psk:${c.identity.toString('hex')}` : `${c.kind}:${c.fingerprint}`;
}

/** A half-open handshake's place in the per-source and per-prefix counts. */
interface HalfOpen {
  address: string;
  prefix: string;
  /** Order of arrival: the lowest is the oldest. */
  seq: number;
}

function addTo<K, V>(index: Map<K, Set<V>>, key: K, value: V): void {
  let set = index.get(key);
  if (!set) {
    set = new Set();
    index.set(key, set);
  }
  set.add(value);
}

function removeFrom<K, V>(index: Map<K, Set<V>>, key: K, value: V): void {
  const set = index.get(key);
  if (!set) return;
  set.delete(value);
  if (set.size === 0) index.delete(key);
}

/**
 * Peers are always addresses the socket received from, so sending needs no name resolution; dgram's default
 * (dns.lookup) would still defer every send by a tick. Names (only ever a caller's bind host) go to dns.lookup.
 */
function literalLookup(
  address: string,
  options: LookupOneOptions,
  callback: (err: NodeJS.ErrnoException | null, address: string, family: number) => void,
): void {
  const family = isIP(address);
  if (family !== 0) callback(null, address, family);
  else dnsLookup(address, options, callback);
}

/**
 * RFC 6347 §4.2.1: the HelloVerifyRequest reuses the ClientHello's record and message sequence numbers. Every
 * cookie-less hello gets one, so it is written straight into the datagram: one allocation.
 */
function helloVerifyRequest(recordSeq: number, messageSeq: number, cookie: Buffer): Buffer {
  const bodyLength = 3 + cookie.length;
  const d = Buffer.allocUnsafe(RECORD_HEADER_LENGTH + HANDSHAKE_HEADER_LENGTH + bodyLength);
  d[0] = ContentType.handshake;
  d.writeUInt16BE(DTLS_1_0, 1);
  d.writeUInt16BE(0, 3); // epoch
  d.writeUIntBE(recordSeq, 5, 6);
  d.writeUInt16BE(HANDSHAKE_HEADER_LENGTH + bodyLength, 11);
  let at = RECORD_HEADER_LENGTH;
  d[at] = HandshakeType.helloVerifyRequest;
  d.writeUIntBE(bodyLength, at + 1, 3);
  d.writeUInt16BE(messageSeq, at + 4);
  d.writeUIntBE(0, at + 6, 3); // fragment offset
  d.writeUIntBE(bodyLength, at + 9, 3);
  at += HANDSHAKE_HEADER_LENGTH;
  d.writeUInt16BE(DTLS_1_0, at);
  d[at + 2] = cookie.length;
  cookie.copy(d, at + 3);
  return d;
}

/**
 * DTLS 1.2 server on one UDP socket, many peers. Nothing is allocated for a peer until it returns a valid
 * cookie; after that each peer has one `ServerConnection`, found by address or, after a NAT rebinding, by its
 * Connection ID.
 */
export class DtlsServer {
  readonly stats: DtlsServerStats = {
    datagrams: 0,
    helloVerifyRequests: 0,
    handshakesStarted: 0,
    handshakesCompleted: 0,
    handshakesResumed: 0,
    handshakesFailed: 0,
    handshakesTimedOut: 0,
    handshakesEvicted: 0,
    capacityRefusals: 0,
    refusedBy: {
      'handshakes-per-source': 0,
      'handshakes-per-prefix': 0,
      handshakes: 0,
      sessions: 0,
      'sessions-per-source': 0,
      'sessions-per-identity': 0,
    },
    discarded: 0,
    internalErrors: 0,
  };
  private readonly opts: ResolvedOptions;
  private readonly cookies: CookieJar;
  private readonly byAddress = new Map<string, ServerConnection>();
  private readonly byCid = new Map<string, ServerConnection>();
  /** Half-open handshakes; each source's and each prefix's are counted so one cannot take them all. */
  private readonly handshaking = new Map<ServerConnection, HalfOpen>();
  private readonly halfOpenBySource = new Map<string, Set<ServerConnection>>();
  private readonly halfOpenByPrefix = new Map<string, number>();
  private halfOpenSeq = 0;
  /** See peerBytes. */
  private readonly peerScratch = Buffer.allocUnsafeSlow(128);
  /** Established sessions by source address and by credential, kept only when a session cap or replacement needs them. */
  private readonly trackSessions: boolean;
  private readonly sessionsBySource = new GroupIndex<string, ServerConnection>();
  private readonly sessionsByCredential = new GroupIndex<string, ServerConnection>();
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  private readonly helloReassemblies = new Map<string, HelloReassembly>();
  /** Sessions that may be resumed (null: resumption off). */
  private readonly sessionCache: SessionCache | null;
  private socket: Socket | null = null;
  private sweeper: NodeJS.Timeout | null = null;
  private readonly host: ConnectionHost;

  constructor(options: DtlsServerOptions) {
    this.opts = resolveOptions(options);
    this.cookies = new CookieJar(this.opts.cookieRotateMs, this.opts.now, this.opts.crypto);
    this.sessionCache = this.opts.sessionResumption
      ? new SessionCache(this.opts.sessionResumption, this.opts.now)
      : null;
    this.host = this.makeHost();
    const l = this.opts.limits;
    this.trackSessions =
      this.opts.replaceSessionsOfIdentity ||
      Number.isFinite(l.maxSessionsPerIdentity) ||
      Number.isFinite(l.maxSessionsPerSource);
  }

  get sessionCount(): number {
    return this.byAddress.size - this.handshaking.size;
  }

  get handshakeCount(): number {
    return this.handshaking.size;
  }

  /** Binds the UDP socket. An IPv6 host (e.g. `::`) serves IPv4 peers too. */
  async listen(port: number, host = '127.0.0.1'): Promise<PeerAddress> {
    if (this.socket) throw new DtlsError('ERR_DTLS_LISTENING', 'server is already listening');
    const socket = createSocket({
      type: host.includes(':') ? 'udp6' : 'udp4',
      ipv6Only: false,
      lookup: literalLookup,
    });
    socket.on('message', (msg, rinfo) => this.onDatagram(msg, rinfo));
    socket.on('error', (err) => this.internalError(err));
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(port, host, () => {
        socket.removeListener('error', reject);
        resolve();
      });
    });
    try {
      socket.setRecvBufferSize(4 * 1024 * 1024);
    } catch {
      // The kernel cap applies; the default buffer still works.
    }
    this.socket = socket;
    const sweepEvery = Math.max(250, Math.min(this.opts.limits.idleTimeoutMs / 4, 10_000));
    this.sweeper = setInterval(() => this.sweepIdle(), sweepEvery);
    this.sweeper.unref();
    const a = socket.address();
    return { address: a.address, port: a.port, family: a.family === 'IPv6' ? 'IPv6' : 'IPv4' };
  }

  /** Sends close_notify to every session, then closes the socket. */
  async close(): Promise<void> {
    if (this.sweeper) clearInterval(this.sweeper);
    this.sweeper = null;
    for (const conn of [...this.byAddress.values()]) conn.close('local');
    this.sessionCache?.clear();
    const socket = this.socket;
    this.socket = null;
    if (socket) {
      const closed = once(socket, 'close');
      socket.close();
      await closed;
    }
  }

  private makeHost(): ConnectionHost {
    return {
      opts: this.opts,
      send: (datagram, peer) => this.send(datagram, peer),
      established: (conn) => {
        this.leaveHalfOpen(conn);
        this.stats.handshakesCompleted++;
        if (conn.resumed) this.stats.handshakesResumed++;
        if (conn.connectionId) this.byCid.set(conn.connectionId.toString('hex'), conn);
        if (this.trackSessions) this.indexSession(conn);
        this.opts.handlers.onSession?.(conn);
      },
      closed: (conn, reason) => this.forget(conn, reason),
      admit: (conn) => this.admitSession(conn),
      failed: (conn, failure: HandshakeFailure) => {
        this.stats.handshakesFailed++;
        if (failure.code === 'ERR_DTLS_HANDSHAKE_TIMEOUT') this.stats.handshakesTimedOut++;
        // `credential` is only assigned once a ClientKeyExchange or Certificate was parsed.
        const claimed = conn.credential as typeof conn.credential | undefined;
        this.opts.handlers.onHandshakeFailure?.(
          claimed?.kind === 'psk' ? { ...failure, claimedPskIdentity: claimed.identity } : failure,
        );
      },
      discard: (peer, reason) => this.discard(peer, reason),
      sessions: this.sessionCache,
      moved: (conn, from) => {
        if (this.byAddress.get(peerKey(from)) === conn) this.byAddress.delete(peerKey(from));
        const displaced = this.byAddress.get(peerKey(conn.peer));
        if (displaced && displaced !== conn) displaced.close('replaced');
        this.byAddress.set(peerKey(conn.peer), conn);
        const indexed = conn.indexedAddress;
        if (indexed !== null && indexed !== conn.peer.address) {
          this.sessionsBySource.remove(indexed, conn);
          conn.indexedAddress = conn.peer.address;
          this.sessionsBySource.add(conn.peer.address, conn);
        }
      },
    };
  }

  private leaveHalfOpen(conn: ServerConnection): boolean {
    const h = this.handshaking.get(conn);
    if (!h) return false;
    this.handshaking.delete(conn);
    removeFrom(this.halfOpenBySource, h.address, conn);
    const n = (this.halfOpenByPrefix.get(h.prefix) ?? 1) - 1;
    if (n > 0) this.halfOpenByPrefix.set(h.prefix, n);
    else this.halfOpenByPrefix.delete(h.prefix);
    return true;
  }

  private indexSession(conn: ServerConnection): void {
    const address = conn.peer.address;
    const credential = credentialKey(conn.credential);
    if (this.opts.replaceSessionsOfIdentity) {
      // The same credential from the same address: the sensor restarted on a new port. Its old session goes.
      for (const other of this.sessionsByCredential.get(credential)) {
        if (other !== conn && other.indexedAddress === address) other.close('replaced');
      }
    }
    conn.indexedAddress = address;
    conn.indexedCredential = credential;
    this.sessionsBySource.add(address, conn);
    this.sessionsByCredential.add(credential, conn);
  }

  /** The session caps, applied once the peer is authenticated (see ServerConnection.onFinished). */
  private admitSession(conn: ServerConnection): DtlsError | null {
    if (!this.trackSessions) return null;
    const l = this.opts.limits;
    const credential = credentialKey(conn.credential);
    const address = conn.peer.address;
    const replace = this.opts.replaceSessionsOfIdentity;
    // Sessions this one will replace do not count against it.
    let sameCredential = 0;
    for (const s of this.sessionsByCredential.get(credential)) {
      if (!(replace && s.indexedAddress === address)) sameCredential++;
    }
    let reason: CapacityReason | null = null;
    if (sameCredential >= l.maxSessionsPerIdentity) reason = 'sessions-per-identity';
    else {
      let sameSource = 0;
      for (const s of this.sessionsBySource.get(address)) {
        if (!(replace && s.indexedCredential === credential)) sameSource++;
      }
      if (sameSource >= l.maxSessionsPerSource) reason = 'sessions-per-source';
    }
    if (!reason) return null;
    this.refuse(conn.peer, reason, conn.credential);
    return new DtlsError(
      'ERR_DTLS_SESSION_LIMIT',
      reason === 'sessions-per-identity'
        ? 'this credential already holds the most sessions allowed'
        : 'this source address already holds the most sessions allowed',
      AlertDescription.accessDenied,
    );
  }

  /** Counts and reports a capacity refusal. */
  private refuse(peer: PeerAddress, reason: CapacityReason, credential?: PeerCredential): void {
    this.stats.capacityRefusals++;
    this.stats.refusedBy[reason]++;
    this.opts.handlers.onCapacity?.(
      credential ? { peer, reason, action: 'refused', credential } : { peer, reason, action: 'refused' },
    );
  }

  private forget(conn: ServerConnection, reason: CloseReason): void {
    const wasHandshaking = this.leaveHalfOpen(conn);
    const address = conn.indexedAddress;
    const credential = conn.indexedCredential;
    if (address !== null && credential !== null) {
      conn.indexedAddress = null;
      conn.indexedCredential = null;
      this.sessionsBySource.remove(address, conn);
      this.sessionsByCredential.remove(credential, conn);
    }
    const key = peerKey(conn.peer);
    if (this.byAddress.get(key) === conn) this.byAddress.delete(key);
    if (conn.connectionId) {
      const cid = conn.connectionId.toString('hex');
      if (this.byCid.get(cid) === conn) this.byCid.delete(cid);
    }
    if (!wasHandshaking) this.opts.handlers.onClose?.(conn, reason);
  }

  /**
   * Without a callback: dgram answers every successful send that has one with a process.nextTick, and so a
   * tick-queue run, per datagram. A send that fails (an unreachable peer, a local firewall) is then dropped
   * silently, as the network would drop it; handshakes retransmit and CoAP re-sends, and the socket goes on.
   */
  private send(datagram: Buffer, peer: PeerAddress): void {
    this.socket?.send(datagram, peer.port, peer.address);
  }

  private discard(peer: PeerAddress, reason: DiscardEvent['reason']): void {
    this.stats.discarded++;
    this.opts.handlers.onDiscard?.({ peer, reason });
  }

  private internalError(err: unknown): void {
    this.stats.internalErrors++;
    this.opts.handlers.onInternalError?.(err);
  }

  private onDatagram(msg: Buffer, rinfo: RemoteInfo): void {
    this.stats.datagrams++;
    const peer: PeerAddress = {
      address: rinfo.address,
      port: rinfo.port,
      family: rinfo.family === 'IPv6' ? 'IPv6' : 'IPv4',
    };
    try {
      this.dispatch(msg, peer);
    } catch (err) {
      // Peer input never gets here (connections turn it into alerts); this is a bug. Keep serving.
      this.internalError(err);
    }
  }

  private dispatch(msg: Buffer, peer: PeerAddress): void {
    const records = parseRecords(msg, this.opts.cidLength);
    const first = records[0];
    if (!first) {
      this.discard(peer, 'malformed');
      return;
    }
    const key = peerKey(peer);
    const conn = this.byAddress.get(key);
    if (conn) {
      // A fresh ClientHello in epoch 0 on an established session: the client restarted (RFC 6347 §4.2.8).
      // It gets a new session only once it proves its address with a cookie; until then the old one stands.
      if (conn.state === 'established' && first.epoch === 0 && first.type === ContentType.handshake) {
        const hello = this.readInitialHello(first);
        if (hello) {
          this.onClientHello(first, hello.message, hello.head, peer, key, conn);
          return;
        }
        // The same, its hello in fragments: reassembled beside the session, which stands until it completes.
        if (this.onHelloFragment(first, peer, key)) return;
      }
      conn.handleRecords(records, peer);
      return;
    }
    if (first.cid) {
      const byCid = this.byCid.get(first.cid.toString('hex'));
      if (byCid) byCid.handleRecords(records, peer);
      else this.discard(peer, 'unknown-cid');
      return;
    }
    const hello = this.readInitialHello(first);
    if (!hello) {
      if (!this.onHelloFragment(first, peer, key)) this.discard(peer, 'malformed');
      return;
    }
    this.onClientHello(first, hello.message, hello.head, peer, key, null);
  }

  /**
   * A fragment of a ClientHello too large for one datagram. Stateless until a first fragment (offset 0) shows a
   * valid cookie — without one it is answered with a HelloVerifyRequest, like a whole hello. Then the hello is
   * reassembled within the bounds above and, once whole, handled as if it had come in one piece. Returns
   * false when the record is no such fragment.
   */
  private onHelloFragment(rec: DtlsRecord, peer: PeerAddress, key: string): boolean {
    if (rec.epoch !== 0 || rec.type !== ContentType.handshake || rec.cid) return false;
    let frags: ReturnType<typeof parseFragments>;
    try {
      frags = parseFragments(rec.fragment);
    } catch {
      return false;
    }
    const now = this.opts.now();
    let pending = this.helloReassemblies.get(key);
    if (pending && pending.expires <= now) {
      this.helloReassemblies.delete(key);
      pending = undefined;
    }
    for (const f of frags) {
      if (f.type !== HandshakeType.clientHello || f.seq > MAX_INITIAL_HELLO_SEQ) return false;
      if (!pending) {
        if (f.offset !== 0) return false;
        let head: ClientHelloHead;
        try {
          head = readClientHelloHead(f.body);
        } catch {
          return false; // the first fragment must reach past the cookie
        }
        const peerBytes = this.peerBytes(key);
        if (!this.cookies.verify(peerBytes, head)) {
          if (head.cookie.length > 0) this.opts.handlers.onCookieRefused?.(peer);
          this.send(helloVerifyRequest(rec.seq, f.seq, this.cookies.make(peerBytes, head)), peer);
          this.stats.helloVerifyRequests++;
          return true;
        }
        if (f.length > Math.min(MAX_FRAGMENTED_HELLO, this.opts.limits.maxHandshakeMessageLength)) {
          return false;
        }
        this.sweepHelloReassemblies(now);
        if (this.helloReassemblies.size >= MAX_HELLO_REASSEMBLIES) {
          this.discard(peer, 'capacity');
          return true;
        }
        pending = {
          reassembler: new Reassembler(f.seq, { maxMessageLength: f.length, maxAhead: 0 }),
          recordSeq: rec.seq,
          expires: now + this.opts.limits.handshakeTimeoutMs,
        };
        this.helloReassemblies.set(key, pending);
      }
      try {
        if (pending.reassembler.add(f) !== 'accepted') return false;
      } catch {
        this.helloReassemblies.delete(key);
        return false;
      }
    }
    if (!pending) return false;
    pending.recordSeq = Math.max(pending.recordSeq, rec.seq);
    const message = pending.reassembler.next();
    if (!message) return true;
    this.helloReassemblies.delete(key);
    let head: ClientHelloHead;
    try {
      head = readClientHelloHead(message.body);
    } catch {
      return false;
    }
    const existing = this.byAddress.get(key);
    const replacing = existing?.state === 'established' ? existing : null;
    this.onClientHello({ ...rec, seq: pending.recordSeq }, message, head, peer, key, replacing);
    return true;
  }

  private sweepHelloReassemblies(now: number): void {
    for (const [k, p] of this.helloReassemblies) if (p.expires <= now) this.helloReassemblies.delete(k);
  }

  /**
   * A complete, unfragmented ClientHello in an epoch-0 record, read as far as its cookie; or null. Stateless:
   * nothing is kept.
   */
  private readInitialHello(rec: DtlsRecord): { message: HandshakeMessage; head: ClientHelloHead } | null {
    if (rec.epoch !== 0 || rec.type !== ContentType.handshake || rec.cid) return null;
    try {
      const frags = parseFragments(rec.fragment);
      const f = frags[0];
      if (!f || f.type !== HandshakeType.clientHello || f.offset !== 0 || f.body.length !== f.length)
        return null;
      // The server numbers its flight on from the hello's message_seq; a hello that opens a handshake
      // carries 0 or 1 (RFC 6347 §4.2.2), and a huge one would overflow the 16-bit counter.
      if (f.seq > MAX_INITIAL_HELLO_SEQ) return null;
      return {
        message: { type: f.type, seq: f.seq, body: f.body, encoded: f.whole },
        head: readClientHelloHead(f.body),
      };
    } catch {
      return null;
    }
  }

  private onClientHello(
    rec: DtlsRecord,
    message: HandshakeMessage,
    head: ClientHelloHead,
    peer: PeerAddress,
    key: string,
    replacing: ServerConnection | null,
  ): void {
    // DTLS versions count down: 0xfefd is 1.2, 0xfeff is 1.0.
    if (head.version > DTLS_1_2) {
      this.send(
        encodeRecord(
          ContentType.alert,
          DTLS_1_0,
          0,
          rec.seq,
          Buffer.from([AlertLevel.fatal, AlertDescription.protocolVersion]),
        ),
        peer,
      );
      this.stats.handshakesFailed++;
      this.opts.handlers.onHandshakeFailure?.({
        peer,
        code: 'ERR_DTLS_PROTOCOL_VERSION',
        message: 'client does not offer DTLS 1.2',
        alert: AlertDescription.protocolVersion,
        fromPeer: false,
      });
      return;
    }
    const peerBytes = this.peerBytes(key);
    if (!this.cookies.verify(peerBytes, head)) {
      // A hello that carried a cookie which does not verify (not the first, cookie-less hello): worth telling.
      if (head.cookie.length > 0) this.opts.handlers.onCookieRefused?.(peer);
      this.send(helloVerifyRequest(rec.seq, message.seq, this.cookies.make(peerBytes, head)), peer);
      this.stats.helloVerifyRequests++;
      return;
    }
    let hello: ClientHello;
    try {
      hello = parseClientHello(message.body);
    } catch {
      this.discard(peer, 'malformed');
      return;
    }
    if (!this.takeToken(peer.address)) {
      this.discard(peer, 'rate-limited');
      return;
    }
    const prefix = sourcePrefix(peer.address);
    const refused = this.admitHandshake(peer, prefix, replacing !== null);
    if (refused) {
      this.refuse(peer, refused);
      this.discard(peer, 'capacity');
      return;
    }
    if (replacing) replacing.close('replaced');
    const conn = new ServerConnection(this.host, peer);
    this.byAddress.set(key, conn);
    const h: HalfOpen = {
      address: peer.address,
      prefix,
      seq: this.halfOpenSeq++,
    };
    this.handshaking.set(conn, h);
    addTo(this.halfOpenBySource, h.address, conn);
    this.halfOpenByPrefix.set(h.prefix, (this.halfOpenByPrefix.get(h.prefix) ?? 0) + 1);
    this.stats.handshakesStarted++;
    conn.start(hello, message, rec.seq, this.opts.connectionIds ? this.newCid() : null);
  }

  /**
   * Whether a cookie-verified hello may open a half-open handshake: null, or the limit that refuses it. Each
   * source address and each prefix has its own cap, so a flood from one host or one /24 stops there; when the
   * table is full all the same (many prefixes), the heaviest source's oldest half-open handshake makes room for
   * a lighter source. A source that is itself the heaviest is refused: evicting its own would gain nothing.
   */
  private admitHandshake(peer: PeerAddress, prefix: string, replacing: boolean): CapacityReason | null {
    const l = this.opts.limits;
    if (!replacing && this.byAddress.size >= l.maxSessions) return 'sessions';
    const mine = this.halfOpenBySource.get(peer.address)?.size ?? 0;
    if (mine >= l.maxHandshakesPerSource) return 'handshakes-per-source';
    if ((this.halfOpenByPrefix.get(prefix) ?? 0) >= l.maxHandshakesPerPrefix) {
      return 'handshakes-per-prefix';
    }
    if (this.handshaking.size < l.maxHandshakes) return null;
    let heaviest: Set<ServerConnection> | null = null;
    let heaviestOldest = 0;
    for (const set of this.halfOpenBySource.values()) {
      const oldest = set.values().next().value as ServerConnection;
      const seq = (this.handshaking.get(oldest) as HalfOpen).seq;
      if (!heaviest || set.size > heaviest.size || (set.size === heaviest.size && seq < heaviestOldest)) {
        heaviest = set;
        heaviestOldest = seq;
      }
    }
    if (!heaviest || heaviest.size <= mine) return 'handshakes';
    const victim = heaviest.values().next().value as ServerConnection;
    this.stats.handshakesEvicted++;
    this.opts.handlers.onCapacity?.({
      peer,
      reason: 'handshakes',
      action: 'evicted',
      evicted: { ...victim.peer },
    });
    victim.dropHandshake();
    return null;
  }

  /**
   * The source address and port as the cookie binds them: the peer key and a NUL, written into a scratch
   * buffer the cookie's HMAC reads before it returns (two hellos per handshake took a Buffer each).
   */
  private peerBytes(key: string): Buffer {
    const scratch = this.peerScratch;
    // latin1: an address and port are ASCII. A key too long for the scratch (none is) takes a Buffer.
    if (key.length >= scratch.length) return Buffer.from(`${key}\0`, 'latin1');
    const n = scratch.write(key, 0, 'latin1');
    scratch[n] = 0;
    return scratch.subarray(0, n + 1);
  }

  private newCid(): Buffer {
    for (;;) {
      const cid = publicRandom(this.opts.cidLength);
      if (!this.byCid.has(cid.toString('hex'))) return cid;
    }
  }

  /** Token bucket per source address for cookie-verified handshakes. */
  private takeToken(address: string): boolean {
    const rate = this.opts.limits.handshakesPerSecondPerSource;
    const now = this.opts.now();
    let b = this.buckets.get(address);
    if (!b) {
      if (this.buckets.size >= MAX_RATE_BUCKETS) this.pruneBuckets(now, rate);
      // Still full (many sources, all busy): forget the longest-known ones, so memory stays bounded. They
      // start again with a full bucket, which only makes them as welcome as any new source.
      for (const addr of this.buckets.keys()) {
        if (this.buckets.size < MAX_RATE_BUCKETS) break;
        this.buckets.delete(addr);
      }
      b = { tokens: rate, at: now };
      this.buckets.set(address, b);
    }
    b.tokens = Math.min(rate, b.tokens + ((now - b.at) / 1000) * rate);
    b.at = now;
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  private pruneBuckets(now: number, rate: number): void {
    for (const [addr, b] of this.buckets) {
      if (b.tokens + ((now - b.at) / 1000) * rate >= rate) this.buckets.delete(addr);
    }
  }

  /** Resumable sessions remembered now. */
  get resumableSessions(): number {
    return this.sessionCache?.size ?? 0;
  }

  /** Forgets every resumable session (e.g. after a change of credentials the caller cannot pin down). */
  forgetResumableSessions(): void {
    this.sessionCache?.clear();
  }

  private sweepIdle(): void {
    const now = this.opts.now();
    this.sessionCache?.sweep();
    this.sweepHelloReassemblies(now);
    const limit = this.opts.limits.idleTimeoutMs;
    for (const conn of [...this.byAddress.values()]) {
      if (conn.state === 'established' && now - conn.lastActivity > limit) conn.close('idle');
    }
  }
}
