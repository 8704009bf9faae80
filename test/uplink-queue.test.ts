/**
 * The uplink queue's bounds and its drop policy, on the real SQLite store: explicit, counted, oldest first.
 * (Delivery itself is proven end to end against mosquitto in e2e*.test.ts.)
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ManualClock } from '../gateway/src/clock.ts';
import { createLogger } from '../gateway/src/log.ts';
import { Store } from '../gateway/src/store/index.ts';
import { Uplink, type UplinkOptions } from '../gateway/src/uplink/index.ts';
import { tempDir } from './helpers/tmp.ts';

const quiet = createLogger('fatal');

// No client certificate: the uplink never connects, so what is queued stays queued.
const opts = (o: Partial<UplinkOptions>): UplinkOptions => ({
  url: 'mqtts://127.0.0.1:1',
  clientId: 'q',
  topicPrefix: 'site',
  tls: { ca: Buffer.alloc(0), cert: null, key: { kind: 'pem', pem: '' } },
  ...o,
});
const msg = (i: number) => ({
  deviceId: `d${i % 2}`,
  payload: Buffer.from(`m${i}`),
  contentFormat: null,
  credentialKind: 'psk',
});

describe('uplink queue', () => {
  it('keeps messages durable across a restart of the process (a new Uplink on the same file)', async (t) => {
    const file = join(tempDir(t), 'q.db');
    const s1 = Store.open(file);
    const u1 = new Uplink(s1, opts({}), new ManualClock(), quiet);
    for (let i = 0; i < 3; i++) await u1.enqueue(msg(i));
    s1.close();
    const s2 = Store.open(file);
    const u2 = new Uplink(s2, opts({}), new ManualClock(), quiet);
    assert.equal(u2.status().queueDepth, 3);
    assert.deepEqual(
      s2.queue.peek(10).map((m) => [m.topic, m.payload.toString()]),
      [
        ['site/devices/d0/telemetry', 'm0'],
        ['site/devices/d1/telemetry', 'm1'],
        ['site/devices/d0/telemetry', 'm2'],
      ],
    );
    s2.close();
  });

  it('drops the oldest beyond maxMessages, counts every drop, and keeps the newest in order', async (t) => {
    const store = Store.open(join(tempDir(t), 'q.db'));
    const u = new Uplink(store, opts({ maxMessages: 3 }), new ManualClock(), quiet);
    for (let i = 0; i < 5; i++) await u.enqueue(msg(i));
    const s = u.status();
    assert.equal(s.state, 'awaiting-certificate');
    assert.equal(s.queueDepth, 3);
    assert.equal(s.dropped, 2);
    assert.deepEqual(
      store.queue.peek(10).map((m) => m.payload.toString()),
      ['m2', 'm3', 'm4'],
    );
    store.close();
  });

  it('drops messages older than maxAge, counted, and keeps younger ones', async (t) => {
    const store = Store.open(join(tempDir(t), 'q.db'));
    const clock = new ManualClock();
    const u = new Uplink(store, opts({ maxAgeMs: 200 }), clock, quiet);
    await u.enqueue(msg(0));
    clock.advance(300);
    await u.enqueue(msg(1));
    u.start();
    try {
      await new Promise((r) => setTimeout(r, 450));
      assert.equal(u.status().dropped, 1);
      assert.deepEqual(
        store.queue.peek(10).map((m) => m.payload.toString()),
        ['m1'],
      );
    } finally {
      await u.stop();
      store.close();
    }
  });
});
