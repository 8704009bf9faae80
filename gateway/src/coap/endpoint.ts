import { randomInt } from 'node:crypto';
import { generate, type ParsedPacket, parse } from 'coap-packet';
import { monotonicClock } from '../clock.ts';
import type { DtlsSession } from '../dtls/index.ts';
import { type CodeOnly, codeOnlyAnswer, MessageIdDedupe } from './dedupe.ts';
import { type BlockOption, blockSize, decodeBlock, decodeUint, encodeBlock, encodeUint } from './options.ts';
import type { CoapMethod, CoapResponse, CoapRouter } from './router.ts';

/**
 * Header (4), token (≤ 8), payload marker and the options a block-wise response carries (Content-Format,
 * Max-Age, Block1, Block2, Size2), with room to spare.
 */
const COAP_HEADROOM = 48;
/** RFC 7252 §4.8.2: how long a message ID may be repeated by a retransmitting client. */
export const EXCHANGE_LIFETIME_MS = 247_000;
const MAX_REMEMBERED_IDS = 256;
const MAX_PARALLEL_UPLOADS = 4;

const METHODS: Record<string, CoapMethod> = {
  '0.01': 'GET',
  '0.02': 'POST',
  '0.03': 'PUT',
  '0.04': 'DELETE',
};
/** Options this endpoint understands; any other critical (odd) option is a 4.02 (RFC 7252 §5.4.1). */
const KNOWN_OPTIONS = new Set<string | number>([
  'If-Match',
  'Uri-Host',
  'ETag',
  'If-None-Match',
  'Uri-Port',
  'Uri-Path',
  'Content-Format',
  'Uri-Query',
  'Accept',
  'Block2',
  'Block1',
  'Size2',
  'Size1',
  'No-Response',
  'Max-Age',
  'Observe',
]);

export interface CoapEndpointOptions {
  router: CoapRouter;
  /** Largest request body accepted through Block1, in bytes. */
  maxBodyLength?: number;
  /** Largest block this server sends or asks for: 2^(szx+4) bytes; 6 (1024 B) fits a 1200-byte MTU. */
  maxBlockSzx?: number;
  now?: () => number;
  /** A handler threw; the client got 5.00. */
  onHandlerError?(err: unknown): void;
}

interface Upload {
  parts: Buffer[];
  length: number;
  at: number;
}

interface Download {
  response: CoapResponse;
  at: number;
}

interface SessionState {
  seen: MessageIdDedupe;
  /** Block-wise transfers in progress; made at a session's first (most sessions never have one). */
  uploads: Map<string, Upload> | null;
  downloads: Map<string, Download> | null;
  nextMessageId: number;
}

interface Reply {
  code: string;
  payload?: Buffer;
  options: { name: string; value: Buffer }[];
}

/** The answer to a duplicate: the remembered packet, or the bare code's ACK rebuilt as it was first sent. */
function repeated(answer: string | CodeOnly, messageId: number, msg: ParsedPacket): Buffer {
  if (typeof answer === 'string') return Buffer.from(answer, 'latin1');
  return generate(
    {
      code: answer.code,
      messageId,
      token: msg.token,
      ack: true,
      confirmable: false,
      options: [],
      payload: EMPTY,
    },
    65_535,
  );
}

const EMPTY = Buffer.alloc(0);
const DONE: Promise<void> = Promise.resolve();

/** A handler's answer still to come: any thenable, not only a native promise. */
function isPending<T>(v: T | PromiseLike<T>): v is PromiseLike<T> {
  return typeof (v as { then?: unknown }).then === 'function';
}

function option(msg: ParsedPacket, name: string): Buffer | undefined {
  return msg.options.find((o) => o.name === name)?.value;
}

/**
 * CoAP (RFC 7252) over DTLS sessions: piggy-backed responses to CON, NON answered with NON, message-ID
 * deduplication for the exchange lifetime, and block-wise transfer (RFC 7959) both ways.
 */
export class CoapEndpoint {
  private readonly states = new WeakMap<DtlsSession, SessionState>();
  private readonly maxBody: number;
  private readonly maxSzx: number;
  private readonly now: () => number;

  constructor(private readonly opts: CoapEndpointOptions) {
    this.maxBody = opts.maxBodyLength ?? 64 * 1024;
    this.maxSzx = opts.maxBlockSzx ?? 6;
    // Message IDs and block transfers are kept for durations: a clock that never steps.
    this.now = opts.now ?? monotonicClock.now;
  }

  private state(session: DtlsSession): SessionState {
    let s = this.states.get(session);
    if (!s) {
      s = {
        seen: new MessageIdDedupe(EXCHANGE_LIFETIME_MS, MAX_REMEMBERED_IDS),
        uploads: null,
        downloads: null,
        nextMessageId: randomInt(0, 0x10000),
      };
      this.states.set(session, s);
    }
    return s;
  }

  /** Handles one decrypted datagram. Never throws: a bad message gets RST or is dropped. */
  handle(session: DtlsSession, data: Buffer): Promise<void> {
    if (data.length < 4 || data[0] === undefined || data[0] >> 6 !== 1) return DONE;
    const confirmable = ((data[0] >> 4) & 3) === 0;
    const messageId = data.readUInt16BE(2);
    let msg: ParsedPacket;
    try {
      // Token lengths 9-15 are reserved and a format error (RFC 7252 §3); coap-packet accepts them.
      if ((data[0] & 0x0f) > 8) throw new Error('reserved token length');
      msg = parse(data);
    } catch {
      // RFC 7252 §4.2: a CON message with a format error is rejected with RST.
      if (confirmable) this.sendRaw(session, generate({ reset: true, messageId, code: '0.00' }));
      return DONE;
    }
    if (msg.reset || msg.ack) return DONE;
    if (msg.code === '0.00') {
      if (msg.confirmable) this.sendRaw(session, generate({ reset: true, messageId, code: '0.00' })); // CoAP ping
      return DONE;
    }
    if (!msg.code.startsWith('0.')) return DONE;

    const st = this.state(session);
    const now = this.now();
    const seen = st.seen.lookup(messageId, now);
    if (seen) {
      // A retransmission: repeat the answer (CON) without running the handler again.
      if (seen.answer !== null && msg.confirmable)
        this.sendRaw(session, repeated(seen.answer, messageId, msg));
      return DONE;
    }
    st.seen.add(messageId, now);

    const token = msg.token;
    let reply: Reply | Promise<Reply>;
    try {
      reply = this.respond(session, st, msg);
    } catch (err) {
      reply = this.failed(err);
    }
    if (!isPending(reply)) {
      this.answer(session, st, messageId, token, confirmable, reply);
      return DONE;
    }
    // While a handler waits (a reading waits for its queue commit, milliseconds) only the exchange's identity is
    // held, not the parsed packet or an async frame: what outlives a few young-generation collections is promoted
    // into V8's old space, and at 10,000 sensors that was most of a reading's garbage (issue 23).
    return Promise.resolve(reply).then(
      (r) => this.answer(session, st, messageId, token, confirmable, r),
      (err: unknown) => this.answer(session, st, messageId, token, confirmable, this.failed(err)),
    );
  }

  private failed(err: unknown): Reply {
    this.opts.onHandlerError?.(err);
    return { code: '5.00', options: [] };
  }

  /**
   * Sends the reply (piggy-backed on the ACK of a CON, a NON of its own otherwise) and remembers it for duplicates.
   * A reply that cannot be encoded is the handler's error: nothing is sent, and the exchange's retransmissions are
   * dropped as duplicates without an answer (none was recorded) until its lifetime ends.
   */
  private answer(
    session: DtlsSession,
    st: SessionState,
    messageId: number,
    token: Buffer,
    confirmable: boolean,
    reply: Reply,
  ): void {
    let packet: Buffer;
    try {
      packet = generate(
        {
          code: reply.code,
          messageId: confirmable ? messageId : this.nextMessageId(st),
          token,
          ack: confirmable,
          confirmable: false,
          options: reply.options,
          payload: reply.payload ?? EMPTY,
        },
        65_535,
      );
    } catch (err) {
      this.opts.onHandlerError?.(err);
      return;
    }
    const bare = confirmable && reply.options.length === 0 && !reply.payload?.length;
    st.seen.answer(messageId, (bare && codeOnlyAnswer(reply.code)) || packet.toString('latin1'));
    this.sendRaw(session, packet);
  }

  private nextMessageId(st: SessionState): number {
    st.nextMessageId = (st.nextMessageId + 1) & 0xffff;
    return st.nextMessageId;
  }

  private sendRaw(session: DtlsSession, packet: Buffer): void {
    try {
      session.send(packet);
    } catch {
      // The session closed while the handler ran; nothing to answer.
    }
  }

  /** The handler's reply, shaped for block-wise transfer; a promise only when the handler's answer is one. */
  private respond(session: DtlsSession, st: SessionState, msg: ParsedPacket): Reply | Promise<Reply> {
    const method = METHODS[msg.code];
    if (!method) return { code: '4.05', options: [] };
    for (const o of msg.options) {
      // coap-packet names the options it knows and gives the others as their number in a string.
      const n = Number(o.name);
      if (!KNOWN_OPTIONS.has(o.name) && Number.isInteger(n) && n % 2 === 1)
        return { code: '4.02', options: [] };
    }
    const path = `/${msg.options
      .filter((o) => o.name === 'Uri-Path')
      .map((o) => o.value.toString('utf8'))
      .join('/')}`;
    const query = msg.options.filter((o) => o.name === 'Uri-Query').map((o) => o.value.toString('utf8'));
    const cf = option(msg, 'Content-Format');
    const key = `${method} ${path}`;

    let payload = msg.payload;
    const block1Raw = option(msg, 'Block1');
    let block1Ack: BlockOption | null = null;
    if (block1Raw) {
      const b1 = decodeBlock(block1Raw);
      if (!b1) return { code: '4.02', options: [] };
      const upload = this.receiveBlock(st, key, b1, msg.payload);
      if (typeof upload === 'string') {
        return upload === '4.13'
          ? { code: '4.13', options: [{ name: 'Size1', value: encodeUint(this.maxBody) }] }
          : { code: upload, options: [] };
      }
      const ackSzx = Math.min(b1.szx, this.sessionSzx(session));
      if (b1.more) {
        // RFC 7959 §2.3: 2.31 Continue; a smaller szx here asks the client to shrink later blocks.
        return {
          code: '2.31',
          options: [{ name: 'Block1', value: encodeBlock({ num: b1.num, more: true, szx: ackSzx }) }],
        };
      }
      payload = upload;
      block1Ack = { num: b1.num, more: false, szx: ackSzx };
    }

    const block2Raw = option(msg, 'Block2');
    const b2 = block2Raw ? decodeBlock(block2Raw) : null;
    if (block2Raw && !b2) return { code: '4.02', options: [] };
    let response: CoapResponse;
    const cached = st.downloads?.get(key);
    if (b2 && b2.num > 0 && cached && this.now() - cached.at < EXCHANGE_LIFETIME_MS) {
      response = cached.response;
    } else {
      const handler = this.opts.router.resolve(method, path);
      if (typeof handler === 'string') return { code: handler, options: [] };
      const answer = handler({
        method,
        path,
        query,
        contentFormat: cf ? decodeUint(cf) : null,
        payload,
        session,
        confirmable: msg.confirmable,
      });
      if (isPending(answer)) return answer.then((r) => this.shape(session, st, key, r, b2, block1Ack));
      response = answer;
    }
    return this.shape(session, st, key, response, b2, block1Ack);
  }

  /** The reply to a handler's response: block-wise (RFC 7959 §2.2) when it does not fit the session's block. */
  private shape(
    session: DtlsSession,
    st: SessionState,
    key: string,
    response: CoapResponse,
    b2: BlockOption | null,
    block1Ack: BlockOption | null,
  ): Reply {
    const options: Reply['options'] = [];
    if (block1Ack) options.push({ name: 'Block1', value: encodeBlock(block1Ack) });
    if (response.contentFormat !== undefined) {
      options.push({ name: 'Content-Format', value: encodeUint(response.contentFormat) });
    }
    if (response.maxAge !== undefined) options.push({ name: 'Max-Age', value: encodeUint(response.maxAge) });
    const body = response.payload ?? EMPTY;
    const maxSzx = this.sessionSzx(session);
    const szx = Math.min(b2?.szx ?? maxSzx, maxSzx);
    const size = blockSize(szx);
    if (body.length <= size && !(b2 && b2.num > 0)) {
      st.downloads?.delete(key);
      return { code: response.code, payload: body, options };
    }
    const num = b2?.num ?? 0;
    if (num * size >= body.length && body.length > 0) return { code: '4.02', options: [] };
    const more = (num + 1) * size < body.length;
    if (more) {
      st.downloads ??= new Map();
      st.downloads.set(key, { response, at: this.now() });
    } else st.downloads?.delete(key);
    options.push({ name: 'Block2', value: encodeBlock({ num, more, szx }) });
    if (num === 0) options.push({ name: 'Size2', value: encodeUint(body.length) });
    return { code: response.code, payload: body.subarray(num * size, (num + 1) * size), options };
  }

  /**
   * The largest block size for this session: the configured one, smaller when the peer's record size limit
   * (max_fragment_length or record_size_limit, with the MTU: `maxPayload`) would not take a block and the
   * CoAP header and options around it. A response larger than that goes block-wise unasked (RFC 7959 §2.2).
   */
  private sessionSzx(session: DtlsSession): number {
    const room = (session.maxPayload ?? Number.POSITIVE_INFINITY) - COAP_HEADROOM;
    let szx = this.maxSzx;
    while (szx > 0 && blockSize(szx) > room) szx--;
    return szx;
  }

  /** Adds a Block1 part; returns the whole body when complete, or an error response code. */
  private receiveBlock(st: SessionState, key: string, b: BlockOption, part: Buffer): Buffer | string {
    const size = blockSize(b.szx);
    if (b.more && part.length !== size) return '4.00';
    st.uploads ??= new Map();
    const uploads = st.uploads;
    let up = uploads.get(key);
    if (b.num === 0) {
      if (!up && uploads.size >= MAX_PARALLEL_UPLOADS) return '5.03';
      up = { parts: [], length: 0, at: this.now() };
      uploads.set(key, up);
    }
    // RFC 7959 §2.5: blocks out of order or of an unknown transfer are 4.08 Request Entity Incomplete.
    // The offset, not the number, must line up: the client may shrink its blocks after our first 2.31.
    if (!up || b.num * size !== up.length || this.now() - up.at > EXCHANGE_LIFETIME_MS) {
      uploads.delete(key);
      return '4.08';
    }
    if (up.length + part.length > this.maxBody) {
      uploads.delete(key);
      return '4.13';
    }
    up.parts.push(Buffer.from(part));
    up.length += part.length;
    up.at = this.now();
    if (b.more) return Buffer.alloc(0); // the caller answers 2.31 Continue
    uploads.delete(key);
    return Buffer.concat(up.parts);
  }
}
