import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock } from '../gateway/src/clock.ts';
import { LogThrottle } from '../gateway/src/log-throttle.ts';

describe('log throttle (a noisy peer cannot flood the journal)', () => {
  it('logs a key once per interval and reports how many repeats it held back', () => {
    const clock = new ManualClock();
    const t = new LogThrottle(60_000, () => clock.now());
    assert.equal(t.admit('peer-a'), 0);
    for (let i = 0; i < 1000; i++) assert.equal(t.admit('peer-a'), null);
    assert.equal(t.admit('peer-b'), 0, 'other peers are not silenced');
    clock.advance(60_000);
    assert.equal(t.admit('peer-a'), 1000);
  });

  it('stays bounded however many distinct keys a flood invents', () => {
    const clock = new ManualClock();
    const t = new LogThrottle(60_000, () => clock.now(), 100);
    for (let i = 0; i < 10_000; i++) t.admit(`k${i}`);
    assert.ok((t as unknown as { last: Map<string, unknown> }).last.size <= 100);
  });
});
