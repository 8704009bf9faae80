/**
 * What a session keeps for its life, made smaller (issue 23): the per-source and per-credential indexes hold a
 * lone session without a Set of its own, and must still behave as a set of sessions per key.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { GroupIndex } from '../gateway/src/dtls/group-index.ts';
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
