/**
 * Device activity for the UI charts: the detector's closed windows summed into 15-minute buckets, written in
 * one transaction per flush, pruned after the retention, and erased with the device at decommission.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ActivityRecorder, BUCKET_MS, RETENTION_MS } from '../gateway/src/anomaly/activity.ts';
import { Detector } from '../gateway/src/anomaly/detector.ts';
import { site } from './helpers/ui.ts';

const T0 = Date.UTC(2026, 10, 25, 9);

describe('device activity series', () => {
  it('sums closed windows into 15-minute buckets, keeping the highest score', (t) => {
    const { core } = site(t);
    const detector = new Detector({ windowMs: 60_000, learningMs: 0 });
    const recorder = new ActivityRecorder(core.store);
    detector.onWindow = (w) => recorder.add(w);
    for (let m = 0; m < 20; m++) {
      for (let k = 0; k < 3; k++)
        detector.observe({
          ts: T0 + m * 60_000 + k * 1000,
          device: 'd1',
          kind: 'message',
          bytes: 100,
          resource: '/telemetry',
        });
    }
    detector.flush(T0 + 21 * 60_000);
    recorder.flush(T0 + 21 * 60_000);
    const buckets = core.store.activity.since('d1', new Date(T0 - 1).toISOString());
    assert.deepEqual(
      buckets.map((b) => [b.bucketStart, b.messages, b.bytes]),
      [
        [new Date(T0).toISOString(), 45, 4500],
        [new Date(T0 + BUCKET_MS).toISOString(), 15, 1500],
      ],
    );
    // A later flush adds to a bucket already written rather than replacing it.
    recorder.add({
      device: 'd1',
      windowStart: T0 + BUCKET_MS + 60_000,
      messages: 5,
      bytes: 10,
      authFailures: 1,
      score: 7,
    });
    recorder.flush(T0 + 22 * 60_000);
    const last = core.store.activity.since('d1', new Date(T0 + BUCKET_MS).toISOString())[0];
    assert.deepEqual(
      [last?.messages, last?.authFailures, last?.maxScore],
      [20, 1, Math.max(buckets[1]?.maxScore ?? 0, 7)],
    );
  });

  it("drops buckets past the retention, and erases a device's series and baseline at decommission", (t) => {
    const { core } = site(t);
    const recorder = new ActivityRecorder(core.store);
    recorder.add({ device: 'old', windowStart: T0, messages: 1, bytes: 1, authFailures: 0, score: 0 });
    recorder.flush(T0);
    recorder.add({
      device: 'old',
      windowStart: T0 + RETENTION_MS + BUCKET_MS,
      messages: 1,
      bytes: 1,
      authFailures: 0,
      score: 0,
    });
    recorder.flush(T0 + RETENTION_MS + 2 * 3_600_000);
    assert.equal(core.store.activity.since('old', new Date(0).toISOString()).length, 1);

    core.identity.addPskDevice({ id: 'gone', pskIdentity: 'gone', generate: true }, 'test');
    core.store.activity.addAll([
      [
        'gone',
        { bucketStart: new Date(T0).toISOString(), messages: 1, bytes: 1, authFailures: 0, maxScore: 0 },
      ],
    ]);
    core.store.baselines.saveAll([['gone', Buffer.alloc(8)]], new Date(T0).toISOString());
    core.identity.decommission('gone', 'test');
    assert.equal(core.store.activity.since('gone', new Date(0).toISOString()).length, 0);
    assert.equal([...core.store.baselines.all()].length, 0);
  });
});
