/**
 * CoAP (RFC 7252) and block-wise transfer (RFC 7959) over the DTLS sessions: libcoap's client where it can
 * express the exchange, the crafted client where the test needs exact bytes (duplicates, malformed messages).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { generate, type ParsedPacket, parse } from 'coap-packet';
import { CoapRouter } from '../gateway/src/coap/index.ts';
import { type Fixture, PSK_IDENTITY, startFixture, waitFor } from './helpers/coaps-fixture.ts';
import { TestDtlsClient } from './helpers/dtls-test-client.ts';
import { runPeer } from './helpers/peers.ts';
import { tempDir } from './helpers/tmp.ts';

const BIG = randomBytes(2500).toString('hex'); // 5,000 bytes: five 1024-byte blocks
const uploads: Buffer[] = [];
const handlerErrors: unknown[] = [];
let echoCalls = 0;

const router = new CoapRouter()
  .on('GET', '/big', () => ({ code: '2.05', payload: Buffer.from(BIG), contentFormat: 0 }))
  .on('POST', '/upload', (req) => {
    uploads.push(req.payload);
    return { code: '2.04', payload: Buffer.from(String(req.payload.length)) };
  })
  .on('POST', '/echo', (req) => {
    echoCalls++;
    return { code: '2.05', payload: req.payload };
  })
  .on('GET', '/boom', () => {
    throw new Error('handler bug');
  });

function coap(f: Fixture, args: string[], path: string) {
  return runPeer(
    'coap-client-openssl',
    ['-u', PSK_IDENTITY, '-k', f.psk, ...args, `coaps://127.0.0.1:${f.port}${path}`],
    { timeoutMs: 20_000 },
  );
}

function request(p: {
  code?: string;
  path: string;
  messageId: number;
  payload?: Buffer;
  confirmable?: boolean;
  options?: { name: string | number; value: Buffer }[];
}): Buffer {
  return generate({
    code: p.code ?? 'POST',
    messageId: p.messageId,
    token: Buffer.from([0x01, 0x02]),
    confirmable: p.confirmable ?? true,
    options: [
      ...p.path
        .split('/')
        .filter(Boolean)
        .map((seg) => ({ name: 'Uri-Path', value: Buffer.from(seg) })),
      ...(p.options ?? []),
    ] as { name: string; value: Buffer }[],
    payload: p.payload ?? Buffer.alloc(0),
  });
}

describe('CoAP endpoint', () => {
  let f: Fixture;
  let c: TestDtlsClient;
  before(async () => {
    f = await startFixture(
      null,
      {},
      { router, maxBodyLength: 4096, onHandlerError: (e) => handlerErrors.push(e) },
    );
    c = new TestDtlsClient({
      port: f.port,
      suite: 'TLS_PSK_WITH_AES_128_CCM_8',
      psk: { identity: PSK_IDENTITY, key: Buffer.from(f.psk) },
    });
    await c.connect();
  });
  after(async () => {
    c.close();
    await f.close();
  });

  const exchange = async (datagram: Buffer): Promise<ParsedPacket> => {
    c.send(datagram);
    return parse(await c.receive());
  };

  it('fetches a large resource block by block (Block2) with coap-client', async () => {
    const r = await coap(f, ['-m', 'get'], '/big');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.toString().trim(), BIG);
  });

  it('receives a large request body block by block (Block1) with coap-client -b 64', async (t) => {
    const body = randomBytes(1500);
    const file = join(tempDir(t), 'body');
    writeFileSync(file, body);
    const r = await coap(f, ['-m', 'post', '-b', '64', '-f', file], '/upload');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.toString().trim(), '1500');
    assert.ok(
      uploads.some((u) => u.equals(body)),
      'the handler saw the whole body once reassembled',
    );
  });

  it('answers a NON request with a NON response (coap-client -N)', async () => {
    const r = await coap(f, ['-N', '-m', 'post', '-e', 'non'], '/echo');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.toString().trim(), 'non');
    const res = await exchange(
      request({ path: '/echo', messageId: 0x0900, confirmable: false, payload: Buffer.from('x') }),
    );
    assert.equal(res.confirmable, false);
    assert.equal(res.ack, false);
    assert.equal(res.payload.toString(), 'x');
  });

  it('answers 4.04 for an unknown path and 4.05 for a known path with another method', async () => {
    assert.equal((await exchange(request({ path: '/nowhere', messageId: 0x0100 }))).code, '4.04');
    assert.equal((await exchange(request({ code: 'DELETE', path: '/big', messageId: 0x0101 }))).code, '4.05');
    const r = await coap(f, ['-m', 'get'], '/nowhere');
    assert.match(r.stdout.toString() + r.stderr, /4\.04/);
  });

  it('piggy-backs the response on the ACK of a CON request', async () => {
    const res = await exchange(request({ path: '/echo', messageId: 0x0200, payload: Buffer.from('hi') }));
    assert.equal(res.ack, true);
    assert.equal(res.messageId, 0x0200);
    assert.deepEqual(res.token, Buffer.from([0x01, 0x02]));
    assert.equal(res.code, '2.05');
  });

  it('runs a retransmitted CON request once and repeats the same answer (deduplication)', async () => {
    const before = echoCalls;
    const req = request({ path: '/echo', messageId: 0x0300, payload: Buffer.from('once') });
    c.send(req);
    const first = await c.receive();
    c.send(req);
    const second = await c.receive();
    assert.deepEqual(second, first);
    assert.equal(echoCalls - before, 1, 'the handler ran once');
  });

  it('resets a malformed CON message and a CoAP ping, and keeps the session', async () => {
    // Version 1, CON, token length 9 (reserved): a format error.
    c.send(Buffer.from([0x49, 0x02, 0x04, 0x00]));
    const rst = parse(await c.receive());
    assert.equal(rst.reset, true);
    assert.equal(rst.messageId, 0x0400);
    c.send(generate({ code: '0.00', messageId: 0x0401, confirmable: true }));
    const pong = parse(await c.receive());
    assert.equal(pong.reset, true);
    assert.equal(pong.messageId, 0x0401);
    assert.equal((await exchange(request({ path: '/echo', messageId: 0x0402 }))).code, '2.05');
  });

  it('rejects an unknown critical option with 4.02 and ignores an unknown elective one', async () => {
    const critical = await exchange(
      request({ path: '/echo', messageId: 0x0500, options: [{ name: '65001', value: Buffer.from([1]) }] }),
    );
    assert.equal(critical.code, '4.02');
    const elective = await exchange(
      request({ path: '/echo', messageId: 0x0501, options: [{ name: '65000', value: Buffer.from([1]) }] }),
    );
    assert.equal(elective.code, '2.05');
  });

  it('answers 4.08 to a Block1 transfer that skips a block', async () => {
    const block = (num: number, more: boolean) => Buffer.from([(num << 4) | (more ? 0x08 : 0) | 2]); // 64 B
    const first = await exchange(
      request({
        path: '/upload',
        messageId: 0x0600,
        payload: Buffer.alloc(64),
        options: [{ name: 'Block1', value: block(0, true) }],
      }),
    );
    assert.equal(first.code, '2.31');
    const gap = await exchange(
      request({
        path: '/upload',
        messageId: 0x0601,
        payload: Buffer.alloc(64),
        options: [{ name: 'Block1', value: block(2, true) }],
      }),
    );
    assert.equal(gap.code, '4.08');
  });

  it('answers 4.13 with Size1 to a body over the limit and accepts one at the limit', async (t) => {
    const file = join(tempDir(t), 'too-big');
    writeFileSync(file, randomBytes(4097));
    const r = await coap(f, ['-m', 'post', '-b', '512', '-f', file], '/upload');
    assert.match(r.stdout.toString() + r.stderr, /4\.13/);
    assert.ok(!uploads.some((u) => u.length > 4096), 'no oversized body reached the handler');
    writeFileSync(file, randomBytes(4096));
    const ok = await coap(f, ['-m', 'post', '-b', '512', '-f', file], '/upload');
    assert.equal(ok.stdout.toString().trim(), '4096');
  });

  it('answers 5.00 when a handler throws, reports it, and keeps serving', async () => {
    const res = await exchange(request({ code: 'GET', path: '/boom', messageId: 0x0700 }));
    assert.equal(res.code, '5.00');
    assert.equal(res.payload.length, 0, 'no internals leak to the client');
    await waitFor('the handler error report', () => (handlerErrors.length > 0 ? true : undefined));
    assert.equal((await exchange(request({ path: '/echo', messageId: 0x0701 }))).code, '2.05');
  });
});
