import type { ActivityBucket, Store } from '../store/index.ts';
import type { WindowSummary } from './detector.ts';

export const BUCKET_MS = 15 * 60_000;
export const RETENTION_MS = 7 * 86_400_000;

/** A device's current bucket until the flush: counters, and the bucket as a number (its start ÷ BUCKET_MS). */
interface Held {
  bucket: number;
  messages: number;
  bytes: number;
  authFailures: number;
  maxScore: number;
}

function toBucket(h: Held): ActivityBucket {
  return {
    bucketStart: new Date(h.bucket * BUCKET_MS).toISOString(),
    messages: h.messages,
    bytes: h.bytes,
    authFailures: h.authFailures,
    maxScore: h.maxScore,
  };
}

/**
 * Sums the detector's closed windows into 15-minute buckets per device and writes them in one transaction per
 * flush, so the data path never waits on a write per window.
 *
 * Between flushes every active device has a bucket here, so it is kept small: one entry per device, keyed by
 * the device's id, its bucket a number — a key and a start string made per window were ~0.1 KiB a device at
 * 10,000 (issue 23). A device whose windows move on to the next bucket before the flush leaves the one it
 * closed in `left`; the store adds up a bucket written more than once.
 */
export class ActivityRecorder {
  private held = new Map<string, Held>();
  private left: Array<[string, ActivityBucket]> = [];
  private lastPrune = 0;

  constructor(private readonly store: Store) {}

  add(w: WindowSummary): void {
    const bucket = Math.floor(w.windowStart / BUCKET_MS);
    const h = this.held.get(w.device);
    if (h && h.bucket === bucket) {
      h.messages += w.messages;
      h.bytes += w.bytes;
      h.authFailures += w.authFailures;
      h.maxScore = Math.max(h.maxScore, w.score);
      return;
    }
    if (h) this.left.push([w.device, toBucket(h)]);
    this.held.set(w.device, {
      bucket,
      messages: w.messages,
      bytes: w.bytes,
      authFailures: w.authFailures,
      maxScore: w.score,
    });
  }

  /** Writes what is held (buckets accumulate in the store) and, hourly, drops buckets past retention. */
  flush(now: number): void {
    if (this.held.size > 0 || this.left.length > 0) {
      const rows = this.left;
      for (const [device, h] of this.held) rows.push([device, toBucket(h)]);
      this.held = new Map();
      this.left = [];
      this.store.activity.addAll(rows);
    }
    if (now - this.lastPrune >= 3_600_000) {
      this.lastPrune = now;
      this.store.activity.pruneBefore(new Date(now - RETENTION_MS).toISOString());
    }
  }
}
