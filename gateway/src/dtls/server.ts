import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { lookup as dnsLookup, type LookupOneOptions } from 'node:dns';
import { once } from 'node:events';
import { isIP } from 'node:net';
import { Writer } from './bytes.ts';
import { type CloseReason, type ConnectionHost, ServerConnection } from './connection.ts';
import {
  AlertDescription,
  AlertLevel,
  ContentType,
  DTLS_1_0,
  DTLS_1_2,
  HANDSHAKE_HEADER_LENGTH,
  HandshakeType,
} from './constants.ts';
import { CookieJar } from './cookie.ts';
import { DtlsError } from './errors.ts';
import {
  beginHandshake,
  type ClientHello,
  type ClientHelloHead,
  endHandshake,
  type HandshakeMessage,
  parseClientHello,
  parseFragments,
  readClientHelloHead,
} from './handshake.ts';
import { type ResolvedOptions, resolveOptions } from './options.ts';
import { publicRandom } from './random.ts';
import { type DtlsRecord, encodeRecord, parseRecords } from './record.ts';
import type { DiscardEvent, DtlsServerOptions, HandshakeFailure, PeerAddress } from './types.ts';

/** Length of the Connection IDs this server issues. */
export const CID_LENGTH = 8;
const MAX_RATE_BUCKETS = 10_000;
/** Generous: a client re-sending its hello after several HelloVerifyRequests counts up. */
const MAX_INITIAL_HELLO_SEQ = 16;

export interface DtlsServerStats {
  datagrams: number;
  helloVerifyRequests: number;
  handshakesStarted: number;
  handshakesCompleted: number;
  handshakesFailed: number;
  discarded: number;
  internalErrors: number;
}

function peerKey(p: PeerAddress): string {
  return `${p.address}|${p.port}`;
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

/** RFC 6347 §4.2.1: the HelloVerifyRequest reuses the ClientHello's record and message sequence numbers. */
function helloVerifyRequest(recordSeq: number, messageSeq: number, cookie: Buffer): Buffer {
  const w = new Writer(HANDSHAKE_HEADER_LENGTH + 3 + cookie.length);
  const start = beginHandshake(w, HandshakeType.helloVerifyRequest, messageSeq);
  w.u16(DTLS_1_0).vec8(cookie);
  return encodeRecord(ContentType.handshake, DTLS_1_0, 0, recordSeq, endHandshake(w, start));
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
    handshakesFailed: 0,
    discarded: 0,
    internalErrors: 0,
  };
  private readonly opts: ResolvedOptions;
  private readonly cookies: CookieJar;
  private readonly byAddress = new Map<string, ServerConnection>();
  private readonly byCid = new Map<string, ServerConnection>();
  private readonly handshaking = new Set<ServerConnection>();
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  private socket: Socket | null = null;
  private sweeper: NodeJS.Timeout | null = null;
  private readonly host: ConnectionHost;

  constructor(options: DtlsServerOptions) {
    this.opts = resolveOptions(options);
    this.cookies = new CookieJar(this.opts.cookieRotateMs, this.opts.now, this.opts.crypto);
    this.host = this.makeHost();
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
        this.handshaking.delete(conn);
        this.stats.handshakesCompleted++;
        if (conn.connectionId) this.byCid.set(conn.connectionId.toString('hex'), conn);
        this.opts.handlers.onSession?.(conn);
      },
      closed: (conn, reason) => this.forget(conn, reason),
      failed: (conn, failure: HandshakeFailure) => {
        this.stats.handshakesFailed++;
        // `credential` is only assigned once a ClientKeyExchange or Certificate was parsed.
        const claimed = conn.credential as typeof conn.credential | undefined;
        this.opts.handlers.onHandshakeFailure?.(
          claimed?.kind === 'psk' ? { ...failure, claimedPskIdentity: claimed.identity } : failure,
        );
      },
      discard: (peer, reason) => this.discard(peer, reason),
      moved: (conn, from) => {
        if (this.byAddress.get(peerKey(from)) === conn) this.byAddress.delete(peerKey(from));
        const displaced = this.byAddress.get(peerKey(conn.peer));
        if (displaced && displaced !== conn) displaced.close('replaced');
        this.byAddress.set(peerKey(conn.peer), conn);
      },
    };
  }

  private forget(conn: ServerConnection, reason: CloseReason): void {
    const wasHandshaking = this.handshaking.delete(conn);
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
    const records = parseRecords(msg, this.opts.connectionIds ? CID_LENGTH : 0);
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
      this.discard(peer, 'malformed');
      return;
    }
    this.onClientHello(first, hello.message, hello.head, peer, key, null);
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
    const peerBytes = Buffer.from(`${key}\0`);
    if (!this.cookies.verify(peerBytes, head)) {
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
    const l = this.opts.limits;
    if (!this.takeToken(peer.address)) {
      this.discard(peer, 'rate-limited');
      return;
    }
    if (this.handshaking.size >= l.maxHandshakes || (!replacing && this.byAddress.size >= l.maxSessions)) {
      this.discard(peer, 'capacity');
      return;
    }
    if (replacing) replacing.close('replaced');
    const conn = new ServerConnection(this.host, peer);
    this.byAddress.set(key, conn);
    this.handshaking.add(conn);
    this.stats.handshakesStarted++;
    conn.start(hello, message, rec.seq, this.opts.connectionIds ? this.newCid() : null);
  }

  private newCid(): Buffer {
    for (;;) {
      const cid = publicRandom(CID_LENGTH);
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

  private sweepIdle(): void {
    const now = this.opts.now();
    const limit = this.opts.limits.idleTimeoutMs;
    for (const conn of [...this.byAddress.values()]) {
      if (conn.state === 'established' && now - conn.lastActivity > limit) conn.close('idle');
    }
  }
}
