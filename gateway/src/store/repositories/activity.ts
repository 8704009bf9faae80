import type { Db } from '../database.ts';

/** One bucket of a device's activity: what the UI's device page charts. */
export interface ActivityBucket {
  bucketStart: string;
  messages: number;
  bytes: number;
  authFailures: number;
  /** The highest anomaly score of a window in the bucket (0: nothing unusual, or still learning). */
  maxScore: number;
}

interface Row {
  bucket_start: string;
  messages: number;
  bytes: number;
  auth_failures: number;
  max_score: number;
}

export class ActivityRepository {
  constructor(private readonly db: Db) {}

  /** Adds to buckets (a bucket written twice accumulates), all in one transaction. */
  addAll(rows: Iterable<[string, ActivityBucket]>): void {
    const put = this.db.prepare(
      `INSERT INTO device_activity (device_id, bucket_start, messages, bytes, auth_failures, max_score)
       VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT(device_id, bucket_start) DO UPDATE SET messages = messages + excluded.messages,
         bytes = bytes + excluded.bytes, auth_failures = auth_failures + excluded.auth_failures,
         max_score = max(max_score, excluded.max_score)`,
    );
    this.db.transaction(() => {
      for (const [device, b] of rows)
        put.run(device, b.bucketStart, b.messages, b.bytes, b.authFailures, b.maxScore);
    })();
  }

  /** A device's buckets from `since` on, oldest first. */
  since(deviceId: string, since: string): ActivityBucket[] {
    return (
      this.db
        .prepare(
          'SELECT * FROM device_activity WHERE device_id = ? AND bucket_start >= ? ORDER BY bucket_start',
        )
        .all(deviceId, since) as Row[]
    ).map((r) => ({
      bucketStart: r.bucket_start,
      messages: r.messages,
      bytes: r.bytes,
      authFailures: r.auth_failures,
      maxScore: r.max_score,
    }));
  }

  pruneBefore(before: string): number {
    return this.db.prepare('DELETE FROM device_activity WHERE bucket_start < ?').run(before).changes;
  }

  deleteForDevice(deviceId: string): void {
    this.db.prepare('DELETE FROM device_activity WHERE device_id = ?').run(deviceId);
  }
}
