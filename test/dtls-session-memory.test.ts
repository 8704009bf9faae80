/**
 * What a session keeps for its life, made smaller (issue 23): its long-lived bytes in one allocation of its own
 * (bytes.ts packOwned), and the per-source and per-credential indexes holding a lone session without a Set of
 * its own — each must still behave as before.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parse } from 'coap-packet';
import { packOwned } from '../gateway/src/dtls/bytes.ts';
import { GroupIndex } from '../gateway/src/dtls/group-index.ts';
import type { DtlsSession } from '../gateway/src/dtls/index.ts';
import { coapPost, PSK_IDENTITY, startFixture, waitFor } from './helpers/coaps-fixture.ts';
import { TestDtlsClient } from './helpers/dtls-test-client.ts';
import { prng } from './helpers/prng.ts';

describe('GroupIndex (sessions by source and by credential)', () => {
  it('keeps a lone value, grows to a group, and shrinks back', () => {
    const a = { n: 1 };
    const b = { n: 2 };
    const ix = new GroupIndex<string, { n: number }>();
    assert.deepEqual(ix.get('k'), []);
    ix.add('k', a);
    ix.add('k', a);
    assert.deepEqual(ix.get('k'), [a]);
    ix.add('k', b);
    assert.deepEqual(new Set(ix.get('k')), new Set([a, b]));
    ix.remove('k', a);
    assert.deepEqual(ix.get('k'), [b]);
    ix.remove('k', a);
    assert.deepEqual(ix.get('k'), [b]);
    ix.remove('k', b);
    assert.deepEqual(ix.get('k'), []);
  });

  it('answers like a Map of Sets over a random walk of adds and removes', () => {
    const r = prng(23);
    const rand = () => r.next();
    const values = Array.from({ length: 6 }, (_, n) => ({ n }));
    const ix = new GroupIndex<number, { n: number }>();
    const model = new Map<number, Set<{ n: number }>>();
    for (let step = 0; step < 2000; step++) {
      const key = Math.floor(rand() * 3);
      const v = values[Math.floor(rand() * values.length)] as { n: number };
      if (rand() < 0.55) {
        ix.add(key, v);
        model.set(key, (model.get(key) ?? new Set()).add(v));
      } else {
        ix.remove(key, v);
        model.get(key)?.delete(v);
      }
      for (let k = 0; k < 3; k++) {
        assert.deepEqual(new Set(ix.get(k)), model.get(k) ?? new Set(), `step ${step}, key ${k}`);
      }
    }
  });

  it('hands out a copy: removing while going through a group skips nothing', () => {
    const vs = [{ n: 1 }, { n: 2 }, { n: 3 }];
    const ix = new GroupIndex<string, { n: number }>();
    for (const v of vs) ix.add('k', v);
    const seen = [];
    for (const v of ix.get('k')) {
      seen.push(v);
      ix.remove('k', v);
    }
    assert.equal(seen.length, 3);
    assert.deepEqual(ix.get('k'), []);
  });
});

describe("packOwned (a session's long-lived bytes in one allocation)", () => {
  it('copies every moved string into one new allocation, the same bytes, no longer sharing the old memory', () => {
    const pool = Buffer.from('0123456789abcdefghij');
    let a: Buffer = pool.subarray(0, 4);
    let b: Buffer = Buffer.from('identity');
    let empty: Buffer = Buffer.alloc(0);
    packOwned((move) => {
      a = move(a);
      b = move(b);
      empty = move(empty);
    });
    assert.equal(a.toString(), '0123');
    assert.equal(b.toString(), 'identity');
    assert.equal(empty.length, 0);
    assert.equal(a.buffer, b.buffer, 'one allocation');
    assert.notEqual(a.buffer, pool.buffer, 'not a view of what it came from');
    assert.equal(a.buffer.byteLength, 12, 'exactly what was moved: no pool slab pinned');
    pool.fill(0);
    assert.equal(a.toString(), '0123');
  });

  it('leaves nothing allocated when there is nothing to move', () => {
    let calls = 0;
    packOwned(() => {
      calls++;
    });
    assert.equal(calls, 1);
  });

  it('an established PSK session keeps identity, session ID and keys in one allocation, and carries traffic', async () => {
    const f = await startFixture(null, { sessionResumption: true, connectionIds: true });
    const c = new TestDtlsClient({
      port: f.port,
      suite: 'TLS_PSK_WITH_AES_128_CCM_8',
      psk: { identity: PSK_IDENTITY, key: Buffer.from(f.psk) },
      connectionId: true,
    });
    try {
      await c.connect();
      const s = (await waitFor('session', () => f.sessions[0])) as DtlsSession & {
        params: { sessionId: Buffer };
      };
      const identity = (s.credential as { identity: Buffer }).identity;
      assert.equal(identity.toString(), PSK_IDENTITY);
      assert.equal(s.params.sessionId.length, 32);
      assert.equal(identity.buffer, s.params.sessionId.buffer);
      assert.equal((s.connectionId as Buffer).buffer, identity.buffer);
      // The record keys moved too: the session still seals and opens records both ways.
      for (let id = 1; id <= 3; id++) {
        c.send(coapPost(`reading ${id}`, id));
        assert.equal(parse(await c.receive()).code, '2.04');
      }
      assert.deepEqual(
        f.telemetry.map((t) => t.payload.toString()),
        ['reading 1', 'reading 2', 'reading 3'],
      );
    } finally {
      c.close();
      await f.close();
    }
  });
});
