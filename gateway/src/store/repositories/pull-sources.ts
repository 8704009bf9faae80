import type { Db } from '../database.ts';

export interface PullSource {
  deviceId: string;
  url: string;
  intervalSeconds: number;
  /** The identity the gateway presents to the sensor. */
  pskIdentity: string;
}

interface Row {
  device_id: string;
  url: string;
  interval_seconds: number;
  psk_identity: string;
}

export class PullSourceRepository {
  constructor(private readonly db: Db) {}

  insert(p: PullSource, now: string): void {
    this.db
      .prepare(
        'INSERT INTO pull_sources (device_id, url, interval_seconds, psk_identity, created_at) VALUES (?, ?, ?, ?, ?)',
      )
      .run(p.deviceId, p.url, p.intervalSeconds, p.pskIdentity, now);
  }

  list(): PullSource[] {
    return (this.db.prepare('SELECT * FROM pull_sources ORDER BY device_id').all() as Row[]).map((r) => ({
      deviceId: r.device_id,
      url: r.url,
      intervalSeconds: r.interval_seconds,
      pskIdentity: r.psk_identity,
    }));
  }

  get(deviceId: string): PullSource | undefined {
    const r = this.db.prepare('SELECT * FROM pull_sources WHERE device_id = ?').get(deviceId) as
      | Row
      | undefined;
    return (
      r && {
        deviceId: r.device_id,
        url: r.url,
        intervalSeconds: r.interval_seconds,
        pskIdentity: r.psk_identity,
      }
    );
  }
}
