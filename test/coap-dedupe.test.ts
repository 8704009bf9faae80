/**
 * CoAP message-ID deduplication (RFC 7252 §4.5) in a ring of two 32-bit words an entry (issue 23: a Map of entry
 * objects with a Buffer answer each, then three arrays, were much of what a busy gateway's heap grew by).
 * Checked against obvious models (a Map; a list in arrival order), and end to end: a duplicate of a reading is
 * answered byte for byte as the first time, the handler run once.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { generate, parse } from 'coap-packet';
import { type Answer, codeOnlyAnswer, MessageIdDedupe } from '../gateway/src/coap/dedupe.ts';
import { CoapRouter } from '../gateway/src/coap/index.ts';
import { type Fixture, PSK_IDENTITY, startFixture } from './helpers/coaps-fixture.ts';
import { TestDtlsClient } from './helpers/dtls-test-client.ts';
import { prng } from './helpers/prng.ts';

describe('MessageIdDedupe', () => {
  it('finds an ID within the lifetime with its answer, and forgets it after', () => {
    const d = new MessageIdDedupe(1000, 8);
    assert.equal(d.lookup(7, 0), undefined);
    d.add(7, 0);
    assert.deepEqual(d.lookup(7, 10), { answer: null }, 'seen, still being handled');
    d.answer(7, 'packet');
    assert.deepEqual(d.lookup(7, 999), { answer: 'packet' });
    assert.equal(d.lookup(7, 1000), undefined, 'the exchange lifetime is over');
  });

  it('keeps at most its bound, forgetting the oldest first', () => {
    const d = new MessageIdDedupe(1_000_000, 4);
    for (let id = 0; id < 6; id++) d.add(id, id);
    assert.equal(d.size, 4);
    assert.equal(d.lookup(0, 10), undefined);
    assert.equal(d.lookup(1, 10), undefined);
    for (let id = 2; id < 6; id++) assert.ok(d.lookup(id, 10));
  });

  it('answers like a Map of {at, answer} over a random walk (expiry, the bound, answers given late)', () => {
    const r = prng(4_5);
    const lifetime = 500;
    const max = 16;
    const d = new MessageIdDedupe(lifetime, max);
    const model = new Map<number, { at: number; answer: string | null }>();
    let now = 0;
    const pending: number[] = [];
    for (let step = 0; step < 20_000; step++) {
      now += r.int(20);
      const id = r.int(40);
      const seen = model.get(id);
      const fresh = seen && now - seen.at < lifetime ? seen : undefined;
      assert.deepEqual(d.lookup(id, now), fresh ? { answer: fresh.answer } : undefined, `step ${step}`);
      if (!fresh) {
        d.add(id, now);
        model.delete(id);
        model.set(id, { at: now, answer: null });
        for (const [k, e] of model) {
          if (model.size <= max && now - e.at < lifetime) break;
          model.delete(k);
        }
        pending.push(id);
      }
      // Handlers finish out of order, some after their ID was forgotten.
      if (pending.length > 0 && r.next() < 0.7) {
        const done = pending.splice(r.int(pending.length), 1)[0] as number;
        d.answer(done, `answer ${step}`);
        const e = model.get(done);
        if (e) e.answer = `answer ${step}`;
      }
      assert.equal(d.size, model.size);
    }
  });

  it('answers like the model with bare codes and packets mixed, across growth, a 50-day session and a clock set back', () => {
    const r = prng(23_23);
    const lifetime = 20_000;
    const max = 100; // not a power of two: the ring grows past it, the bound still holds
    const codes = [codeOnlyAnswer('2.04'), codeOnlyAnswer('2.01'), codeOnlyAnswer('4.03')];
    for (let round = 0; round < 8; round++) {
      const d = new MessageIdDedupe(lifetime, max);
      // What the ring should be: every use in arrival order, the oldest forgotten first.
      const model: { id: number; at: number; answer: Answer }[] = [];
      const newest = (id: number) => model.findLast((e) => e.id === id);
      let now = 1_700_000_000_000;
      for (let step = 0; step < 3_000; step++) {
        // Quiet stretches (entries expire, the ring's head moves on) and bursts (it fills and grows), now and
        // then 50 days at once (more than 32 bits of milliseconds) or the clock set back.
        const jump = r.int(500);
        const burst = Math.floor(step / 300) % 2 === 1;
        now += jump === 0 ? 50 * 86_400_000 : jump === 1 ? -r.int(30_000) : r.int(burst ? 100 : 6_000);
        const id = r.int(300);
        const seen = newest(id);
        const fresh = seen && now - seen.at < lifetime ? seen : undefined;
        assert.deepEqual(d.lookup(id, now), fresh ? { answer: fresh.answer } : undefined, `${round}/${step}`);
        if (fresh) continue;
        d.add(id, now);
        while (model.length > 0 && (model.length >= max || now - (model[0]?.at as number) >= lifetime))
          model.shift();
        model.push({ id, at: now, answer: null });
        const answer: Answer = r.next() < 0.7 ? (codes[r.int(codes.length)] ?? null) : `packet ${step}`;
        // Some answers come later, when the ring may have grown meanwhile.
        const late = r.next() < 0.3 ? (model[r.int(model.length)]?.id as number) : id;
        d.answer(late, answer);
        (newest(late) as { answer: Answer }).answer = answer;
        assert.equal(d.size, model.length);
      }
    }
  });

  it('shares one answer object per bare code', () => {
    assert.equal(codeOnlyAnswer('2.04'), codeOnlyAnswer('2.04'));
    assert.notEqual(codeOnlyAnswer('2.04'), codeOnlyAnswer('2.01'));
  });
});

describe('CoAP duplicates over a DTLS session', () => {
  let f: Fixture;
  let c: TestDtlsClient;
  let readings = 0;
  const router = new CoapRouter()
    .on('POST', '/reading', () => {
      readings++;
      return { code: '2.04' };
    })
    .on('POST', '/echo', (req) => ({ code: '2.05', payload: req.payload }));
  before(async () => {
    f = await startFixture(null, {}, { router });
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

  const post = (path: string, messageId: number, token: number[], payload = '') =>
    generate({
      code: 'POST',
      messageId,
      token: Buffer.from(token),
      confirmable: true,
      options: [{ name: 'Uri-Path', value: Buffer.from(path) }],
      payload: Buffer.from(payload),
    });

  it('answers a duplicate reading (a bare 2.04) byte for byte as the first time, and handles it once', async () => {
    const req = post('reading', 0x4100, [0xaa, 0xbb, 0xcc, 0xdd, 1, 2, 3, 4]);
    c.send(req);
    const first = await c.receive();
    c.send(req);
    const second = await c.receive();
    assert.deepEqual(second, first);
    const p = parse(first);
    assert.equal(p.code, '2.04');
    assert.equal(p.ack, true);
    assert.equal(p.messageId, 0x4100);
    assert.deepEqual(p.token, Buffer.from([0xaa, 0xbb, 0xcc, 0xdd, 1, 2, 3, 4]));
    assert.equal(readings, 1, 'the handler ran once');
  });

  it('repeats an answer with a payload from the remembered packet', async () => {
    const req = post('echo', 0x4101, [9], 'payload');
    c.send(req);
    const first = await c.receive();
    c.send(req);
    assert.deepEqual(await c.receive(), first);
    assert.equal(parse(first).payload.toString(), 'payload');
  });

  it('handles a new message ID as a new request', async () => {
    const before = readings;
    c.send(post('reading', 0x4102, [1]));
    assert.equal(parse(await c.receive()).code, '2.04');
    assert.equal(readings, before + 1);
  });
});
