import type { ActivityBucket, Store } from '../store/index.ts';
import type { WindowSummary } from './detector.ts';

export const BUCKET_MS = 15 * 60_000;
export const RETENTION_MS = 7 * 86_400_000;

/**
 * Sums the detector's closed windows into 15-minute buckets per device and writes them in one transaction per
 * flush, so the data path never waits on a write per window.
 */
export class ActivityRecorder {
  private held = new Map<string, ActivityBucket>();
  private lastPrune = 0;

  constructor(private readonly store: Store) {}

  add(w: WindowSummary): void {
    const start = new Date(Math.floor(w.windowStart / BUCKET_MS) * BUCKET_MS).toISOString();
    const key = `${w.device}\u0000${start}`;
    const b = this.held.get(key);
    if (b) {
      b.messages += w.messages;
      b.bytes += w.bytes;
      b.authFailures += w.authFailures;
      b.maxScore = Math.max(b.maxScore, w.score);
    } else {
      this.held.set(key, {
        bucketStart: start,
        messages: w.messages,
        bytes: w.bytes,
        authFailures: w.authFailures,
        maxScore: w.score,
      });
    }
  }

  /** Writes what is held (buckets accumulate in the store) and, hourly, drops buckets past retention. */
  flush(now: number): void {
    if (this.held.size > 0) {
      const rows = [...this.held].map(
        ([k, b]) => [k.slice(0, k.indexOf('\u0000')), b] as [string, ActivityBucket],
      );
      this.held = new Map();
      this.store.activity.addAll(rows);
    }
    if (now - this.lastPrune >= 3_600_000) {
      this.lastPrune = now;
      this.store.activity.pruneBefore(new Date(now - RETENTION_MS).toISOString());
    }
  }
}
