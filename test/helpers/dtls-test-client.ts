/**
 * A small DTLS 1.2 client for tests that no Debian peer can run: crafted attacks (wrong Finished, bad
 * CertificateVerify, tampered and replayed records) and RFC 9146 Connection IDs. Built from the server's own
 * record and key-schedule pieces; the interop tests against openssl, libcoap and node-dtls-client keep those
 * pieces honest.
 */
import { createPublicKey, type KeyObject, randomBytes, sign, verify, X509Certificate } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import { once } from 'node:events';
import type { AeadKey } from '../../gateway/src/dtls/aead.ts';
import { Reader, Writer } from '../../gateway/src/dtls/bytes.ts';
import {
  CertificateType,
  ContentType,
  DTLS_1_2,
  ECDSA_SECP256R1_SHA256,
  ExtensionType,
  HandshakeType,
  NamedGroup,
} from '../../gateway/src/dtls/constants.ts';
import { resolveDtlsCrypto } from '../../gateway/src/dtls/crypto.ts';
import { generateEphemeral } from '../../gateway/src/dtls/ecdhe.ts';
import {
  encodeHandshake,
  fragmentHandshake,
  parseFragments,
  Reassembler,
} from '../../gateway/src/dtls/handshake.ts';
import { finishedVerifyData, keyBlock, masterSecret } from '../../gateway/src/dtls/prf.ts';
import {
  type DtlsRecord,
  encodeRecord,
  openRecord,
  parseRecords,
  sealRecord,
} from '../../gateway/src/dtls/record.ts';
import { aeadParameters, type CipherSuiteName, suiteByName } from '../../gateway/src/dtls/suites.ts';

export class AlertReceived extends Error {
  constructor(readonly description: number) {
    super(`server sent alert ${description}`);
  }
}

export interface TestClientOptions {
  port: number;
  host?: string;
  /** The suite the server must choose. */
  suite: CipherSuiteName;
  /** The suites offered, in the client's order (default: just `suite`). */
  offer?: CipherSuiteName[];
  psk?: { identity: string; key: Buffer };
  /** X.509 chain (leaf first) or, with `rawPublicKey`, just the key. */
  certificate?: { chain?: Buffer[]; key: KeyObject; rawPublicKey?: boolean };
  extendedMasterSecret?: boolean;
  /** Offer RFC 9146 Connection ID (the client asks for none itself unless `ownConnectionId`). */
  connectionId?: boolean;
  /** Send each ClientHello in fragments of this many body bytes (a long hello on a small MTU). */
  helloFragmentSize?: number;
  /** More ClientHello extensions (type, body), e.g. max_fragment_length or record_size_limit. */
  extensions?: Array<[number, Buffer]>;
  /** The CID the server must put on the records it sends us (RFC 9146), with `connectionId`. */
  ownConnectionId?: Buffer;
  tamper?: {
    finishedVerifyData?(v: Buffer): Buffer;
    certificateVerifySignature?(sig: Buffer): Buffer;
    /** Rewrites the datagram carrying the client's Finished record. */
    finishedDatagram?(d: Buffer): Buffer;
  };
  timeoutMs?: number;
  /** Bind this local port (to play a sensor that rebooted and came back from the same address). */
  localPort?: number;
  /** Bind this local address (loopback: any of 127.0.0.0/8, to play another host). */
  localAddress?: string;
  /** Keep every datagram sent in `sent`. */
  recordSent?: boolean;
  /** Keep every datagram received in `received`. */
  recordReceived?: boolean;
}

/** A hello's extensions block (the server writes its own in place, in server-handshake/server-flight.ts). */
function encodeExtensions(exts: Array<[number, Buffer]>): Buffer {
  if (exts.length === 0) return Buffer.alloc(0);
  const w = new Writer();
  for (const [type, data] of exts) w.u16(type).vec16(data);
  return new Writer().vec16(w.finish()).finish();
}

/** The same PRF, hash and AEAD as the server's default (the addon where it loads). */
const dtlsCrypto = resolveDtlsCrypto();

export class TestDtlsClient {
  private socket: Socket;
  private readonly queue: DtlsRecord[] = [];
  private waiter: (() => void) | null = null;
  private epoch0Seq = 0;
  private epoch1Seq = 0;
  private readKey: AeadKey | null = null;
  private writeKey: AeadKey | null = null;
  /** The CID the server issued; records we send carry it. */
  serverCid: Buffer | null = null;
  readonly appData: Buffer[] = [];
  readonly alerts: number[] = [];
  serverCertificate: X509Certificate | null = null;
  /** The ServerHello's extensions, by type. */
  readonly serverExtensions = new Map<number, Buffer>();
  /** The session's raw key block, for tests that check record bytes against the RFCs independently. */
  keys: ReturnType<typeof keyBlock> | null = null;

  /** The last flight of this client's handshake (ClientKeyExchange … Finished), as sent: to send it again. */
  finalFlight: Buffer | null = null;

  constructor(private readonly o: TestClientOptions) {
    this.socket = this.openSocket();
  }

  private openSocket(localAddress = this.o.localAddress): Socket {
    const s = createSocket('udp4');
    // A test that forgets to close its client must not keep the runner alive.
    s.unref();
    if (this.o.localPort || localAddress) s.bind(this.o.localPort ?? 0, localAddress ?? '127.0.0.1');
    s.on('message', (m) => {
      if (this.o.recordReceived) this.received.push(m);
      for (const r of parseRecords(m, this.o.ownConnectionId?.length ?? 0)) this.queue.push(r);
      this.waiter?.();
    });
    return s;
  }

  private get timeout(): number {
    return this.o.timeoutMs ?? 3000;
  }

  /** Every datagram sent, in order, when `recordSent` is set (a corpus for the fuzzer). */
  readonly sent: Buffer[] = [];
  /** Every datagram received, in order, when `recordReceived` is set. */
  readonly received: Buffer[] = [];

  sendRaw(datagram: Buffer): void {
    if (this.o.recordSent) this.sent.push(datagram);
    this.socket.send(datagram, this.o.port, this.o.host ?? '127.0.0.1');
  }

  private async nextRecord(): Promise<DtlsRecord> {
    const deadline = Date.now() + this.timeout;
    for (;;) {
      const r = this.queue.shift();
      if (r) return r;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('timed out waiting for the server');
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.waiter = null;
    }
  }

  /** Next record, decrypted if protected. Alerts are recorded and thrown when fatal. */
  private async nextPlain(): Promise<{ type: number; data: Buffer; epoch: number }> {
    for (;;) {
      const r = await this.nextRecord();
      let type = r.type;
      let data = r.fragment;
      if (r.epoch > 0) {
        if (!this.readKey) continue;
        const opened = openRecord(this.readKey, r);
        if (!opened) continue;
        type = opened.type;
        data = opened.data;
      }
      if (type === ContentType.alert) {
        this.alerts.push(data[1] as number);
        if (data[0] === 2 || data[1] === 0) throw new AlertReceived(data[1] as number);
      }
      return { type, data, epoch: r.epoch };
    }
  }

  private plainRecord(type: number, payload: Buffer): Buffer {
    return encodeRecord(type, DTLS_1_2, 0, this.epoch0Seq++, payload);
  }

  private protectedRecord(type: number, payload: Buffer): Buffer {
    return sealRecord(this.writeKey as AeadKey, type, DTLS_1_2, 1, this.epoch1Seq++, payload, this.serverCid);
  }

  private clientHello(cookie: Buffer, random: Buffer): Buffer {
    const exts: Array<[number, Buffer]> = [
      [
        ExtensionType.supportedGroups,
        new Writer().vec16(new Writer().u16(NamedGroup.secp256r1).finish()).finish(),
      ],
      [ExtensionType.ecPointFormats, Buffer.from([1, 0])],
      [
        ExtensionType.signatureAlgorithms,
        new Writer().vec16(new Writer().u16(ECDSA_SECP256R1_SHA256).finish()).finish(),
      ],
    ];
    if (this.o.extendedMasterSecret !== false)
      exts.push([ExtensionType.extendedMasterSecret, Buffer.alloc(0)]);
    if (this.o.certificate?.rawPublicKey) {
      exts.push([ExtensionType.clientCertificateType, Buffer.from([1, CertificateType.rawPublicKey])]);
      exts.push([ExtensionType.serverCertificateType, Buffer.from([1, CertificateType.rawPublicKey])]);
    }
    for (const e of this.o.extensions ?? []) exts.push(e);
    if (this.o.connectionId)
      exts.push([
        ExtensionType.connectionId,
        new Writer().vec8(this.o.ownConnectionId ?? Buffer.alloc(0)).finish(),
      ]);
    return new Writer()
      .u16(DTLS_1_2)
      .bytes(random)
      .vec8(Buffer.alloc(0))
      .vec8(cookie)
      .vec16(this.offeredSuites())
      .vec8(Buffer.from([0]))
      .bytes(encodeExtensions(exts))
      .finish();
  }

  /** A ClientHello in one record, or in fragments of `helloFragmentSize` body bytes, one datagram each. */
  private sendHello(message: Buffer): void {
    const size = this.o.helloFragmentSize;
    const pieces = size ? fragmentHandshake(message, size) : [message];
    for (const piece of pieces) this.sendRaw(this.plainRecord(ContentType.handshake, piece));
  }

  private offeredSuites(): Buffer {
    const w = new Writer();
    for (const name of this.o.offer ?? [this.o.suite]) w.u16(suiteByName(name).id);
    return w.finish();
  }

  async connect(): Promise<void> {
    const suite = suiteByName(this.o.suite);
    const random = randomBytes(32);
    this.sendHello(encodeHandshake(HandshakeType.clientHello, 0, this.clientHello(Buffer.alloc(0), random)));
    const hvr = await this.nextPlain();
    const hvrFrag = parseFragments(hvr.data)[0];
    if (!hvrFrag || hvrFrag.type !== HandshakeType.helloVerifyRequest)
      throw new Error('expected HelloVerifyRequest');
    const hr = new Reader(hvrFrag.body, 'HVR');
    hr.u16();
    const cookie = hr.vec8();

    const ch2 = encodeHandshake(HandshakeType.clientHello, 1, this.clientHello(cookie, random));
    const transcript = [ch2];
    this.sendHello(ch2);

    const reasm = new Reassembler(1, { maxMessageLength: 65_536, maxAhead: 8 });
    let serverRandom = Buffer.alloc(0);
    let serverKey: KeyObject | null = null;
    let serverPoint: Buffer | null = null;
    let certRequested = false;
    let done = false;
    while (!done) {
      const rec = await this.nextPlain();
      if (rec.type !== ContentType.handshake) continue;
      for (const f of parseFragments(rec.data)) reasm.add(f);
      for (let m = reasm.next(); m; m = reasm.next()) {
        transcript.push(encodeHandshake(m.type, m.seq, m.body));
        const r = new Reader(m.body, 'server message');
        switch (m.type) {
          case HandshakeType.serverHello: {
            r.u16();
            serverRandom = Buffer.from(r.bytes(32));
            r.vec8();
            if (r.u16() !== suite.id) throw new Error('server chose another suite');
            r.u8();
            if (r.remaining > 0) {
              const er = new Reader(r.vec16(), 'server extensions');
              while (er.remaining > 0) {
                const type = er.u16();
                const data = er.vec16();
                this.serverExtensions.set(type, Buffer.from(data));
                if (type === ExtensionType.connectionId)
                  this.serverCid = Buffer.from(new Reader(data, 'cid').vec8());
              }
            }
            break;
          }
          case HandshakeType.certificate: {
            const list = r.vec24();
            if (this.o.certificate?.rawPublicKey) {
              serverKey = createPublicKey({ key: list, format: 'der', type: 'spki' });
            } else {
              const leaf = new X509Certificate(new Reader(list, 'cert').vec24());
              this.serverCertificate = leaf;
              serverKey = leaf.publicKey;
            }
            break;
          }
          case HandshakeType.serverKeyExchange: {
            if (suite.keyExchange === 'psk') break; // only an identity hint, which this client ignores
            if (suite.keyExchange === 'ecdhe_psk') r.vec16();
            const start = r.offset;
            r.u8();
            r.u16();
            serverPoint = Buffer.from(r.vec8());
            if (suite.keyExchange === 'ecdhe_ecdsa') {
              const params = m.body.subarray(start, r.offset);
              r.u16();
              const sig = r.vec16();
              const ok = verify(
                'sha256',
                Buffer.concat([random, serverRandom, params]),
                serverKey as KeyObject,
                sig,
              );
              if (!ok) throw new Error('server key exchange signature invalid');
            }
            break;
          }
          case HandshakeType.certificateRequest:
            certRequested = true;
            break;
          case HandshakeType.serverHelloDone:
            done = true;
            break;
        }
      }
    }

    let seq = 2;
    const flight: Buffer[] = [];
    const add = (type: number, body: Buffer) => {
      const msg = encodeHandshake(type, seq++, body);
      transcript.push(msg);
      flight.push(this.plainRecord(ContentType.handshake, msg));
    };
    if (certRequested) {
      const c = this.o.certificate;
      if (c?.rawPublicKey) {
        add(
          HandshakeType.certificate,
          new Writer().vec24(createPublicKey(c.key).export({ format: 'der', type: 'spki' })).finish(),
        );
      } else {
        const list = new Writer();
        for (const der of c?.chain ?? []) list.vec24(der);
        add(HandshakeType.certificate, new Writer().vec24(list.finish()).finish());
      }
    }
    let pms: Buffer;
    const cke = new Writer();
    if (suite.keyExchange === 'psk' || suite.keyExchange === 'ecdhe_psk') {
      cke.vec16(Buffer.from(this.o.psk?.identity ?? '', 'utf8'));
    }
    const psk = this.o.psk?.key ?? Buffer.alloc(0);
    if (suite.keyExchange === 'psk') {
      pms = new Writer().vec16(Buffer.alloc(psk.length)).vec16(psk).finish();
    } else {
      const eph = generateEphemeral('secp256r1');
      cke.vec8(eph.publicPoint);
      const shared = eph.derive(serverPoint as Buffer);
      pms = suite.keyExchange === 'ecdhe_psk' ? new Writer().vec16(shared).vec16(psk).finish() : shared;
    }
    add(HandshakeType.clientKeyExchange, cke.finish());
    const ems = this.o.extendedMasterSecret !== false;
    const master = masterSecret(
      dtlsCrypto.prf,
      pms,
      random,
      serverRandom,
      ems ? dtlsCrypto.sha256(transcript) : null,
    );
    const kb = keyBlock(dtlsCrypto.prf, master, random, serverRandom, aeadParameters(suite.aead));
    this.keys = kb;
    this.writeKey = dtlsCrypto.aeadKey(suite, kb.clientKey, kb.clientSalt);
    this.readKey = dtlsCrypto.aeadKey(suite, kb.serverKey, kb.serverSalt);
    if (certRequested && this.o.certificate) {
      let sig: Buffer = sign('sha256', Buffer.concat(transcript), this.o.certificate.key);
      if (this.o.tamper?.certificateVerifySignature) sig = this.o.tamper.certificateVerifySignature(sig);
      add(HandshakeType.certificateVerify, new Writer().u16(ECDSA_SECP256R1_SHA256).vec16(sig).finish());
    }
    flight.push(this.plainRecord(ContentType.changeCipherSpec, Buffer.from([1])));
    let vd: Buffer = finishedVerifyData(dtlsCrypto.prf, master, 'client', dtlsCrypto.sha256(transcript));
    if (this.o.tamper?.finishedVerifyData) vd = this.o.tamper.finishedVerifyData(vd);
    const fin = encodeHandshake(HandshakeType.finished, seq++, vd);
    transcript.push(fin);
    flight.push(this.protectedRecord(ContentType.handshake, fin));
    let datagram: Buffer = Buffer.concat(flight);
    if (this.o.tamper?.finishedDatagram) datagram = this.o.tamper.finishedDatagram(datagram);
    this.finalFlight = datagram;
    this.sendRaw(datagram);

    const expected = finishedVerifyData(dtlsCrypto.prf, master, 'server', dtlsCrypto.sha256(transcript));
    for (;;) {
      const rec = await this.nextPlain();
      if (rec.type === ContentType.handshake && rec.epoch === 1) {
        const f = parseFragments(rec.data)[0];
        if (f?.type === HandshakeType.finished) {
          if (!f.body.equals(expected)) throw new Error('server Finished is wrong');
          return;
        }
      }
    }
  }

  /** The server's next handshake record (a resent final flight, say): its epoch. */
  async nextHandshakeRecord(): Promise<number> {
    for (;;) {
      const r = await this.nextPlain();
      if (r.type === ContentType.handshake) return r.epoch;
    }
  }

  /** Sends application data; returns the datagram so a test can replay or tamper with it. */
  send(data: Buffer): Buffer {
    return this.sendProtected(ContentType.applicationData, data);
  }

  /** Sends any record type under the session keys (e.g. a ClientHello, to attempt renegotiation). */
  sendProtected(type: number, payload: Buffer): Buffer {
    const d = this.protectedRecord(type, payload);
    this.sendRaw(d);
    return d;
  }

  /** Waits for the next alert from the server (warning or fatal) and returns its description. */
  async nextAlert(): Promise<number> {
    try {
      for (;;) {
        const r = await this.nextPlain();
        if (r.type === ContentType.alert) return r.data[1] as number;
      }
    } catch (err) {
      if (err instanceof AlertReceived) return err.description;
      throw err;
    }
  }

  /** Protects application data without sending it (to tamper with it first). */
  seal(data: Buffer): Buffer {
    return this.protectedRecord(ContentType.applicationData, data);
  }

  /** Next application-data record from the server. */
  async receive(): Promise<Buffer> {
    for (;;) {
      const r = await this.nextPlain();
      if (r.type === ContentType.applicationData) return r.data;
    }
  }

  get localPort(): number {
    return this.socket.address().port;
  }

  /** Moves to a new local port (and, if given, loopback address), as a NAT rebinding would. */
  async rebind(localAddress?: string): Promise<void> {
    const old = this.socket;
    this.socket = this.openSocket(localAddress);
    if (localAddress) await once(this.socket, 'listening');
    old.close();
    await once(old, 'close');
  }

  /** Ends the session politely (close_notify) so the server frees it at once, then closes the socket. */
  async closeNotify(): Promise<void> {
    if (this.writeKey) {
      const d = this.protectedRecord(ContentType.alert, Buffer.from([1, 0]));
      await new Promise<void>((resolve) =>
        this.socket.send(d, this.o.port, this.o.host ?? '127.0.0.1', () => resolve()),
      );
    }
    this.close();
  }

  close(): void {
    try {
      this.socket.close();
    } catch {
      // already closed
    }
  }
}
