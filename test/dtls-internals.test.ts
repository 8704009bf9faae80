/**
 * The DTLS server's bookkeeping that the handshake tests only reach in its common cases: the anti-replay
 * window at its edges, handshake reassembly without copies, and the byte writer's in-place edits.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Writer } from '../gateway/src/dtls/bytes.ts';
import { HandshakeType } from '../gateway/src/dtls/constants.ts';
import {
  beginHandshake,
  encodeHandshake,
  endHandshake,
  fragmentHandshake,
  parseFragments,
  Reassembler,
} from '../gateway/src/dtls/handshake.ts';
import { ReplayWindow } from '../gateway/src/dtls/replay.ts';
import { prng } from './helpers/prng.ts';

/** The RFC 6347 §4.1.2.6 window written the obvious way: every accepted number remembered. */
class ReferenceWindow {
  private top = -1;
  private readonly seen = new Set<number>();

  check(seq: number): boolean {
    return seq > this.top || (this.top - seq < 64 && !this.seen.has(seq));
  }

  accept(seq: number): boolean {
    this.seen.add(seq);
    if (seq > this.top) {
      this.top = seq;
      return true;
    }
    return false;
  }
}

describe('DTLS anti-replay window', () => {
  it('agrees with a reference window on 200,000 seeded sequence numbers, jumps and edges included', () => {
    const rnd = prng(0x5eed);
    const w = new ReplayWindow();
    const ref = new ReferenceWindow();
    let base = 0;
    for (let i = 0; i < 200_000; i++) {
      const r = rnd.next();
      // Mostly near the top (in order, reordered, replayed, exactly 31/32/63/64 back), sometimes far ahead.
      if (r < 0.02) base += 1 + rnd.int(200);
      const offsets = [0, 1, 31, 32, 33, 63, 64, 65];
      const seq = Math.max(
        0,
        r < 0.5 ? base + rnd.int(3) : base - (offsets[rnd.int(offsets.length)] as number) + rnd.int(2),
      );
      if (seq > base) base = seq;
      const expected = ref.check(seq);
      assert.equal(w.check(seq), expected, `check(${seq}) at step ${i}`);
      if (expected) assert.equal(w.accept(seq), ref.accept(seq), `accept(${seq}) at step ${i}`);
    }
  });

  it('rejects a replay 63 back and anything 64 back, after a jump of exactly 32 and of 64', () => {
    for (const jump of [32, 64]) {
      const w = new ReplayWindow();
      for (let s = 0; s < 70; s++) w.accept(s);
      w.accept(69 + jump);
      const top = 69 + jump;
      assert.equal(w.check(top), false, 'the top itself');
      assert.equal(w.check(top - 1), true, 'never received');
      assert.equal(w.check(top - 63), top - 63 > 69, '63 back');
      assert.equal(w.check(top - 64), false, '64 back: outside the window');
    }
  });

  it('accepts sequence numbers up to 2^48 - 1', () => {
    const w = new ReplayWindow();
    const max = 2 ** 48 - 1;
    assert.equal(w.accept(max - 40), true);
    assert.equal(w.check(max), true);
    assert.equal(w.accept(max), true);
    assert.equal(w.check(max - 40), false);
    assert.equal(w.check(max - 39), true);
  });
});

describe('DTLS handshake reassembly', () => {
  const limits = { maxMessageLength: 4096, maxAhead: 4 };
  const message = (seq: number, length: number) =>
    encodeHandshake(HandshakeType.clientKeyExchange, seq, Buffer.alloc(length, seq + 1));

  it('hands over a whole in-order message without a copy, and its bytes as the transcript hashes them', () => {
    const m = message(1, 40);
    const record = Buffer.concat([m]);
    const r = new Reassembler(1, limits);
    for (const f of parseFragments(record)) assert.equal(r.add(f), 'accepted');
    const out = r.next();
    assert.ok(out);
    assert.equal(out.body.buffer, record.buffer, 'a view of the record');
    assert.deepEqual(out.encoded, m);
    assert.equal(r.next(), null);
  });

  it('ignores a duplicate of a whole message in the same record and never writes into the record', () => {
    const m = message(1, 16);
    const record = Buffer.concat([m, m]);
    const before = Buffer.from(record);
    const r = new Reassembler(1, limits);
    for (const f of parseFragments(record)) r.add(f);
    assert.deepEqual(r.next()?.body, Buffer.alloc(16, 2));
    assert.deepEqual(record, before);
  });

  it('copies a message that arrives ahead of its turn, so the datagram it came in can go', () => {
    const ahead = message(2, 24);
    const r = new Reassembler(1, limits);
    const record = Buffer.from(ahead);
    for (const f of parseFragments(record)) r.add(f);
    record.fill(0);
    assert.equal(r.next(), null);
    for (const f of parseFragments(message(1, 8))) r.add(f);
    assert.equal(r.next()?.seq, 1);
    const second = r.next();
    assert.deepEqual(second?.body, Buffer.alloc(24, 3));
    assert.equal(second?.encoded, null, 'copied, so re-encoded for the transcript');
  });

  it('reassembles fragments in any order and refuses a fragment inconsistent with the first', () => {
    const m = message(1, 300);
    const pieces = fragmentHandshake(m, 64);
    const r = new Reassembler(1, limits);
    for (const p of [...pieces].reverse()) for (const f of parseFragments(p)) r.add(f);
    assert.deepEqual(r.next()?.body, m.subarray(12));
    const r2 = new Reassembler(1, limits);
    for (const f of parseFragments(pieces[0] as Buffer)) r2.add(f);
    const liar = Buffer.from(pieces[1] as Buffer);
    liar.writeUIntBE(301, 1, 3); // claims another total length
    assert.throws(() => {
      for (const f of parseFragments(liar)) r2.add(f);
    }, /inconsistent/);
  });
});

describe('DTLS byte writer', () => {
  it('writes a handshake message in place and fills in its lengths afterwards', () => {
    const w = new Writer(4);
    const start = beginHandshake(w, HandshakeType.serverHello, 7);
    w.u16(0xfefd).bytes(Buffer.alloc(40, 9));
    const m = endHandshake(w, start);
    assert.deepEqual(m, encodeHandshake(HandshakeType.serverHello, 7, w.view(12, 54)));
  });

  it('keeps earlier views intact when it grows, and refuses edits beyond what was written', () => {
    const w = new Writer(8);
    w.u16(1).u16(2);
    const early = w.view(0, 4);
    w.bytes(Buffer.alloc(100, 5));
    assert.deepEqual(early, Buffer.from([0, 1, 0, 2]));
    assert.throws(() => w.u24At(w.length - 2, 1), RangeError);
    assert.throws(() => w.u16At(w.length, 1), RangeError);
    assert.throws(() => w.truncate(w.length + 1), RangeError);
    w.truncate(2);
    assert.deepEqual(w.finish(), Buffer.from([0, 1]));
  });
});
