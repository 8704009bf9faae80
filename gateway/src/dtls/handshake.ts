import { Reader, Writer } from './bytes.ts';
import { HANDSHAKE_HEADER_LENGTH } from './constants.ts';
import { DtlsError, decodeError } from './errors.ts';

export interface HandshakeFragment {
  type: number;
  length: number;
  seq: number;
  offset: number;
  body: Buffer;
  /**
   * Header and body as they arrived when this fragment is the whole message (offset 0, full length): exactly
   * the bytes the transcript hashes, so they need no re-encoding. Null for a partial fragment.
   */
  whole: Buffer | null;
}

export interface HandshakeMessage {
  type: number;
  seq: number;
  body: Buffer;
  /** The message as the transcript hashes it, when it arrived whole (see HandshakeFragment.whole). */
  encoded?: Buffer | null;
}

/** Splits a handshake record into fragments; a record may carry several. */
export function parseFragments(data: Buffer): HandshakeFragment[] {
  const r = new Reader(data, 'handshake fragment');
  const out: HandshakeFragment[] = [];
  while (r.remaining > 0) {
    const type = r.u8();
    const length = r.u24();
    const seq = r.u16();
    const offset = r.u24();
    const fragLen = r.u24();
    if (offset + fragLen > length) throw decodeError('handshake fragment');
    const start = r.offset - HANDSHAKE_HEADER_LENGTH;
    const body = r.bytes(fragLen);
    const whole = offset === 0 && fragLen === length ? data.subarray(start, r.offset) : null;
    out.push({ type, length, seq, offset, body, whole });
  }
  return out;
}

/** The message as the transcript hashes it: one unfragmented DTLS handshake header plus body. */
export function encodeHandshake(type: number, seq: number, body: Buffer): Buffer {
  const w = new Writer(HANDSHAKE_HEADER_LENGTH + body.length);
  const start = beginHandshake(w, type, seq);
  w.bytes(body);
  return endHandshake(w, start);
}

/**
 * Starts a handshake message in `w` (its header, lengths to follow) and returns where it starts; the body is
 * then written straight into `w`, and endHandshake fills in the lengths. Saves building the body apart.
 */
export function beginHandshake(w: Writer, type: number, seq: number): number {
  const start = w.length;
  w.u8(type).u24(0).u16(seq).u24(0).u24(0);
  return start;
}

/** Completes the message begun at `start` and returns it, header included (a view into `w`'s buffer). */
export function endHandshake(w: Writer, start: number): Buffer {
  const bodyLength = w.length - start - HANDSHAKE_HEADER_LENGTH;
  w.u24At(start + 1, bodyLength);
  w.u24At(start + 9, bodyLength);
  return w.view(start, w.length);
}

/** Cuts an encoded message into fragments whose bodies are at most `maxBody` bytes. */
export function fragmentHandshake(message: Buffer, maxBody: number): Buffer[] {
  const body = message.subarray(HANDSHAKE_HEADER_LENGTH);
  if (body.length <= maxBody) return [message];
  const out: Buffer[] = [];
  for (let off = 0; off < body.length; off += maxBody) {
    const part = body.subarray(off, off + maxBody);
    const h = Buffer.from(message.subarray(0, HANDSHAKE_HEADER_LENGTH));
    h.writeUIntBE(off, 6, 3);
    h.writeUIntBE(part.length, 9, 3);
    out.push(Buffer.concat([h, part]));
  }
  return out;
}

interface Partial {
  type: number;
  body: Buffer;
  /** Which bytes arrived; null when the message arrived whole (its body is then the received view). */
  have: Uint8Array | null;
  missing: number;
  encoded: Buffer | null;
}

export interface ReassemblyLimits {
  /** Largest handshake message accepted (a certificate chain must fit). */
  maxMessageLength: number;
  /** How many messages ahead of the next expected one may be buffered. */
  maxAhead: number;
}

export type FragmentVerdict = 'accepted' | 'old' | 'ignored';

/**
 * Reassembles handshake messages in message_seq order with bounded memory: at most `maxAhead` messages
 * beyond the expected one, each at most `maxMessageLength` bytes, allocated only when its first fragment
 * arrives. Overlapping and duplicate fragments are fine; inconsistent ones are a decode error.
 */
export class Reassembler {
  private readonly partials = new Map<number, Partial>();

  constructor(
    public nextSeq: number,
    private readonly limits: ReassemblyLimits,
  ) {}

  add(f: HandshakeFragment): FragmentVerdict {
    if (f.seq < this.nextSeq) return 'old';
    if (f.seq > this.nextSeq + this.limits.maxAhead) return 'ignored';
    if (f.length > this.limits.maxMessageLength) {
      throw new DtlsError(
        'ERR_DTLS_HANDSHAKE_TOO_LARGE',
        `handshake message of ${f.length} bytes exceeds limit`,
      );
    }
    let p = this.partials.get(f.seq);
    if (!p) {
      if (f.whole && f.seq === this.nextSeq) {
        // The common case: the next message, unfragmented. It is handled before the datagram is done with,
        // so it needs no copy; later messages are copied, as they wait for datagrams to come.
        this.partials.set(f.seq, { type: f.type, body: f.body, have: null, missing: 0, encoded: f.whole });
        return 'accepted';
      }
      p = {
        type: f.type,
        body: Buffer.alloc(f.length),
        have: new Uint8Array(f.length),
        missing: f.length,
        encoded: null,
      };
      this.partials.set(f.seq, p);
    } else if (p.type !== f.type || p.body.length !== f.length) {
      throw decodeError('handshake fragment (inconsistent with earlier fragments)');
    }
    if (!p.have) return 'accepted'; // a duplicate of a message already whole
    f.body.copy(p.body, f.offset);
    for (let i = f.offset; i < f.offset + f.body.length; i++) {
      if (p.have[i] === 0) {
        p.have[i] = 1;
        p.missing--;
      }
    }
    return 'accepted';
  }

  /** The next in-order complete message, if any. */
  next(): HandshakeMessage | null {
    const p = this.partials.get(this.nextSeq);
    if (!p || p.missing > 0) return null;
    this.partials.delete(this.nextSeq);
    return { type: p.type, seq: this.nextSeq++, body: p.body, encoded: p.encoded };
  }

  clear(): void {
    this.partials.clear();
  }
}

/**
 * What a cookie exchange needs of a ClientHello (RFC 6347 §4.2.1): its version, its cookie, and what the
 * cookie binds.
 */
export interface ClientHelloHead {
  version: number;
  cookie: Buffer;
  /** The hello before and after its cookie: what the cookie's MAC covers. */
  beforeCookie: Buffer;
  afterCookie: Buffer;
}

export interface ClientHello extends ClientHelloHead {
  random: Buffer;
  sessionId: Buffer;
  cipherSuites: number[];
  compressionMethods: Buffer;
  extensions: Map<number, Buffer>;
}

/**
 * Reads a ClientHello up to its cookie, which is all a hello without a valid cookie gets looked at: it is
 * answered with a HelloVerifyRequest and nothing else, and parsed in full only once it comes back with one.
 */
export function readClientHelloHead(body: Buffer): ClientHelloHead {
  return readHead(new Reader(body, 'ClientHello'), body);
}

function readHead(r: Reader, body: Buffer): ClientHelloHead {
  const version = r.u16();
  r.skip(32); // random
  const sessionIdLength = r.u8();
  if (sessionIdLength > 32) throw decodeError('ClientHello session id');
  r.skip(sessionIdLength);
  const cookieStart = r.offset;
  const cookie = r.vec8();
  return {
    version,
    cookie,
    beforeCookie: body.subarray(0, cookieStart),
    afterCookie: body.subarray(r.offset),
  };
}

export function parseClientHello(body: Buffer): ClientHello {
  const r = new Reader(body, 'ClientHello');
  const head = readHead(r, body);
  // Where readHead stepped over them: version (2 bytes), random (32), session id (length-prefixed).
  const random = body.subarray(2, 34);
  const sessionId = body.subarray(35, 35 + (body[34] as number));
  const suitesRaw = r.vec16();
  if (suitesRaw.length % 2 !== 0 || suitesRaw.length === 0) throw decodeError('ClientHello cipher suites');
  const cipherSuites: number[] = [];
  for (let i = 0; i < suitesRaw.length; i += 2) cipherSuites.push(suitesRaw.readUInt16BE(i));
  const compressionMethods = r.vec8();
  const extensions = new Map<number, Buffer>();
  if (r.remaining > 0) {
    const er = new Reader(r.vec16(), 'ClientHello extensions');
    while (er.remaining > 0) {
      const type = er.u16();
      const data = er.vec16();
      if (extensions.has(type)) throw decodeError('ClientHello (duplicate extension)');
      extensions.set(type, data);
    }
  }
  r.end();
  // Spelled out: an object spread here costs several times the whole parse.
  return {
    version: head.version,
    cookie: head.cookie,
    beforeCookie: head.beforeCookie,
    afterCookie: head.afterCookie,
    random,
    sessionId,
    cipherSuites,
    compressionMethods,
    extensions,
  };
}

/** Reads a list of u16 values inside a vec16 (supported_groups, signature_algorithms). */
export function parseU16List(data: Buffer, what: string): number[] {
  const r = new Reader(data, what);
  const list = r.vec16();
  r.end();
  if (list.length % 2 !== 0) throw decodeError(what);
  const out: number[] = [];
  for (let i = 0; i < list.length; i += 2) out.push(list.readUInt16BE(i));
  return out;
}

/** Reads a list of u8 values inside a vec8 (ec_point_formats, certificate types). */
export function parseU8List(data: Buffer, what: string): number[] {
  const r = new Reader(data, what);
  const list = r.vec8();
  r.end();
  // A loop, not [...list]: spreading a Buffer walks its iterator.
  const out: number[] = [];
  for (let i = 0; i < list.length; i++) out.push(list[i] as number);
  return out;
}
