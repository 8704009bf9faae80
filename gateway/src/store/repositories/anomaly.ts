import type { Db } from '../database.ts';

/** Persisted detector baselines, one opaque blob per device. */
export class BaselineRepository {
  constructor(private readonly db: Db) {}

  saveAll(states: Iterable<[string, Buffer]>, now: string): number {
    const put = this.db.prepare(
      `INSERT INTO anomaly_baselines (device_id, state, updated_at) VALUES (?, ?, ?)
       ON CONFLICT(device_id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at`,
    );
    let n = 0;
    this.db.transaction(() => {
      for (const [id, state] of states) {
        put.run(id, state, now);
        n++;
      }
    })();
    return n;
  }

  /**
   * Every saved baseline, one row at a time: at 10,000 devices the rows at once were ~33 MB of Buffers beside the
   * models built from them, and a start's heap grew to hold both. While the caller loops, the connection refuses
   * writes (better-sqlite3: "connection is busy"): collect what to write and write it after.
   */
  *all(): IterableIterator<[string, Buffer]> {
    const rows = this.db
      .prepare('SELECT device_id, state FROM anomaly_baselines')
      .iterate() as IterableIterator<{
      device_id: string;
      state: Buffer;
    }>;
    for (const r of rows) yield [r.device_id, r.state];
  }

  delete(deviceId: string): void {
    this.db.prepare('DELETE FROM anomaly_baselines WHERE device_id = ?').run(deviceId);
  }
}

export interface RateLimit {
  deviceId: string;
  perSecond: number;
  until: string;
  reason: string;
}

export class RateLimitRepository {
  constructor(private readonly db: Db) {}

  put(l: RateLimit, now: string): void {
    this.db
      .prepare(
        `INSERT INTO device_rate_limits (device_id, per_second, until, reason, created_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT(device_id) DO UPDATE SET per_second = excluded.per_second, until = excluded.until,
           reason = excluded.reason, created_at = excluded.created_at`,
      )
      .run(l.deviceId, l.perSecond, l.until, l.reason, now);
  }

  /** Limits still in force at `now`. */
  active(now: string): RateLimit[] {
    return (
      this.db
        .prepare(
          'SELECT device_id, per_second, until, reason FROM device_rate_limits WHERE until > ? ORDER BY device_id',
        )
        .all(now) as { device_id: string; per_second: number; until: string; reason: string }[]
    ).map((r) => ({ deviceId: r.device_id, perSecond: r.per_second, until: r.until, reason: r.reason }));
  }

  delete(deviceId: string): boolean {
    return this.db.prepare('DELETE FROM device_rate_limits WHERE device_id = ?').run(deviceId).changes > 0;
  }
}
