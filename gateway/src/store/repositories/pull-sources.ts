import type { Db } from '../database.ts';

export interface PullSource {
  deviceId: string;
  url: string;
  intervalSeconds: number;
}

export class PullSourceRepository {
  constructor(private readonly db: Db) {}

  insert(p: PullSource, now: string): void {
    this.db
      .prepare('INSERT INTO pull_sources (device_id, url, interval_seconds, created_at) VALUES (?, ?, ?, ?)')
      .run(p.deviceId, p.url, p.intervalSeconds, now);
  }

  list(): PullSource[] {
    return (
      this.db
        .prepare('SELECT device_id, url, interval_seconds FROM pull_sources ORDER BY device_id')
        .all() as {
        device_id: string;
        url: string;
        interval_seconds: number;
      }[]
    ).map((r) => ({ deviceId: r.device_id, url: r.url, intervalSeconds: r.interval_seconds }));
  }
}
