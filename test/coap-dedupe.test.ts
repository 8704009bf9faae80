/**
 * CoAP message-ID deduplication (RFC 7252 §4.5) in a ring of one 32-bit word an entry (issue 23: a Map of entry
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
  it('finds an ID within the lifetime with its answer, and forgets it at most two ticks after', () => {
    // A tick is the lifetime's 512th, rounded up to whole milliseconds: 2 ms here.
    const d = new MessageIdDedupe(1024, 8);
    assert.equal(d.lookup(7, 0), undefined);
    d.add(7, 1);
    assert.deepEqual(d.lookup(7, 10), { answer: null }, 'seen, still being handled');
    d.answer(7, 'packet');
    assert.deepEqual(d.lookup(7, 1024), { answer: 'packet' }, 'never forgotten within the lifetime');
    assert.equal(d.lookup(7, 1 + 1024 + 4), undefined, 'the exchange lifetime is over');
  });

  it('remembers an ID for at least the lifetime and forgets it within two ticks after, at any arrival time', () => {
    const r = prng(2_47);
    for (const lifetime of [247_000, 20_000, 1000, 333]) {
      const tick = Math.max(1, Math.ceil(lifetime / 512));
      for (let n = 0; n < 2_000; n++) {
        const d = new MessageIdDedupe(lifetime, 8);
        const at = 1_700_000_000_000 + r.int(10_000_000);
        d.add(42, at);
        const young = at + r.int(lifetime);
        assert.ok(d.lookup(42, young), `${lifetime}: ${young - at} ms old`);
        const old = at + lifetime + 2 * tick + r.int(3 * lifetime);
        assert.equal(d.lookup(42, old), undefined, `${lifetime}: ${old - at} ms old`);
      }
    }
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
    const lifetime = 500; // a tick is 1 ms: an entry is fresh up to and including the lifetime
    const max = 16;
    const d = new MessageIdDedupe(lifetime, max);
    const model = new Map<number, { at: number; answer: string | null }>();
    let now = 0;
    const pending: number[] = [];
    for (let step = 0; step < 20_000; step++) {
      now += r.int(20);
      const id = r.int(40);
      const seen = model.get(id);
      const fresh = seen && now - seen.at <= lifetime ? seen : undefined;
      assert.deepEqual(d.lookup(id, now), fresh ? { answer: fresh.answer } : undefined, `step ${step}`);
      if (!fresh) {
        d.add(id, now);
        model.delete(id);
        model.set(id, { at: now, answer: null });
        for (const [k, e] of model) {
          if (model.size <= max && now - e.at <= lifetime) break;
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
    // Arrivals in ticks of 40 ms (the lifetime's 512th): fresh while at most 500 ticks old.
    const fresh = (at: number, now: number) => Math.floor(now / 40) - Math.floor(at / 40) <= 500;
    const codes = [codeOnlyAnswer('2.04'), codeOnlyAnswer('2.01'), codeOnlyAnswer('4.03')];
    for (let round = 0; round < 8; round++) {
      const d = new MessageIdDedupe(lifetime, max);
      // What the ring should be: every use in arrival order, the oldest forgotten first.
      const model: { id: number; at: number; answer: Answer }[] = [];
      const newest = (id: number) => model.findLast((e) => e.id === id);
      // The ring's time never goes back past its newest entry: a clock set back stops it until it catches up.
      const ringTime = (now: number) => Math.max(now, model.at(-1)?.at ?? now);
      let now = 1_700_000_000_000;
      for (let step = 0; step < 3_000; step++) {
        // Quiet stretches (entries expire, the ring's head moves on) and bursts (it fills and grows), now and
        // then 50 days at once (the ring's base moves) or the clock set back by up to ten minutes.
        const jump = r.int(500);
        const burst = Math.floor(step / 300) % 2 === 1;
        now += jump === 0 ? 50 * 86_400_000 : jump === 1 ? -r.int(600_000) : r.int(burst ? 100 : 6_000);
        const id = r.int(300);
        const at = ringTime(now);
        const seen = newest(id);
        const known = seen && fresh(seen.at, at) ? seen : undefined;
        assert.deepEqual(d.lookup(id, now), known ? { answer: known.answer } : undefined, `${round}/${step}`);
        if (known) continue;
        d.add(id, now);
        while (model.length > 0 && (model.length >= max || !fresh(model[0]?.at as number, at))) model.shift();
        model.push({ id, at, answer: null });
        const answer: Answer = r.next() < 0.7 ? (codes[r.int(codes.length)] ?? null) : `packet ${step}`;
        // Some answers come later, when the ring may have grown meanwhile.
        const late = r.next() < 0.3 ? (model[r.int(model.length)]?.id as number) : id;
        d.answer(late, answer);
        (newest(late) as { answer: Answer }).answer = answer;
        assert.equal(d.size, model.length);
      }
    }
  });

  it('keeps what it holds for the lifetime when the clock is set back an hour, and when it is set forward again', () => {
    const t = 1_700_000_000_000;
    const back = t - 3_600_000;
    // Set back and left there: what it held and what came after stay a lifetime of real time.
    const d = new MessageIdDedupe(247_000, 8);
    d.add(1, t);
    d.answer(1, 'first');
    d.add(2, back + 1000);
    assert.deepEqual(d.lookup(1, back + 247_000), { answer: 'first' });
    assert.ok(d.lookup(2, back + 1000 + 247_000));
    // Set back, then forward to the right time again: the first ID is as old as it is, no older.
    const e = new MessageIdDedupe(247_000, 8);
    e.add(1, t);
    e.answer(1, 'first');
    e.add(2, back);
    assert.deepEqual(e.lookup(1, t + 2000), { answer: 'first' }, '2 s after it arrived');
    assert.deepEqual(e.lookup(1, t + 247_000), { answer: 'first' }, 'a lifetime after it arrived');
    assert.equal(e.lookup(1, t + 247_000 + 2 * 483), undefined, 'forgotten two ticks after');
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
