/**
 * How the uplink spaces its posts between the main thread and the MQTT thread (worker-protocol.ts batchPosts):
 * at once when the last post is at least the gap old, otherwise when the gap since it has passed — never sooner
 * (each post wakes the other thread, the cost the gap bounds), and not a whole gap later either (issue 23).
 * Mocked timers and clock: no timed assertion.
 */
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it, mock } from 'node:test';
import { batchPosts } from '../gateway/src/uplink/worker-protocol.ts';

describe('batchPosts', () => {
  let clock = 0;
  const flushes: number[] = [];
  beforeEach(() => {
    clock = 1_000;
    flushes.length = 0;
    mock.timers.enable({ apis: ['setTimeout', 'setImmediate'] });
  });
  afterEach(() => mock.timers.reset());
  /** A 4 ms gap (the publishes'), on the test's clock. */
  const start = () =>
    batchPosts(
      () => flushes.push(clock),
      4,
      () => clock,
    );
  const advance = (ms: number) => {
    clock += ms;
    mock.timers.tick(ms);
  };

  it('posts at the end of the turn when the last post is a gap old, once for many messages', () => {
    const schedule = start();
    schedule();
    schedule();
    schedule();
    assert.deepEqual(flushes, []);
    advance(0);
    assert.deepEqual(flushes, [1_000]);
  });

  it('waits only the rest of the gap after a recent post, never less', () => {
    const schedule = start();
    schedule();
    advance(0); // first post at 1,000
    advance(3); // 1,003: a message 3 ms after it
    schedule();
    advance(0.5);
    assert.deepEqual(flushes, [1_000], 'not before the gap has passed');
    advance(0.5);
    assert.deepEqual(flushes, [1_000, 1_004], 'at the gap, not a whole gap after the message');
  });

  it('keeps posts a gap apart under steady load', () => {
    const schedule = start();
    for (let t = 0; t < 40; t++) {
      schedule(); // a message every millisecond
      advance(1);
    }
    const gaps = flushes.slice(1).map((at, i) => at - (flushes[i] as number));
    assert.ok(flushes.length >= 9, `posts: ${flushes.length}`);
    for (const g of gaps) assert.ok(g >= 4, `posts ${g} ms apart`);
    assert.ok(Math.max(...gaps) <= 4.5, `the longest gap: ${Math.max(...gaps)} ms`);
  });
});
