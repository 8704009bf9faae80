import type { Db } from '../database.ts';

/** A device's allow-list as stored; `entries` is JSON the segmentation module validates when it reads it. */
export interface StoredAllowList {
  deviceId: string;
  source: 'mud' | 'manual';
  mudUrl: string | null;
  manufacturer: string | null;
  entries: string;
  createdAt: string;
}

interface Row {
  device_id: string;
  source: 'mud' | 'manual';
  mud_url: string | null;
  manufacturer: string | null;
  entries: string;
  created_at: string;
}

const toAllowList = (r: Row): StoredAllowList => ({
  deviceId: r.device_id,
  source: r.source,
  mudUrl: r.mud_url,
  manufacturer: r.manufacturer,
  entries: r.entries,
  createdAt: r.created_at,
});

export class AllowListRepository {
  constructor(private readonly db: Db) {}

  /** Replaces the device's whole list: a list is never patched entry by entry. */
  put(a: Omit<StoredAllowList, 'createdAt'>, now: string): void {
    this.db
      .prepare(
        `INSERT INTO allowlists (device_id, source, mud_url, manufacturer, entries, created_at)
         VALUES (@deviceId, @source, @mudUrl, @manufacturer, @entries, @now)
         ON CONFLICT(device_id) DO UPDATE SET source = excluded.source, mud_url = excluded.mud_url,
           manufacturer = excluded.manufacturer, entries = excluded.entries, created_at = excluded.created_at`,
      )
      .run({ ...a, now });
  }

  get(deviceId: string): StoredAllowList | undefined {
    const r = this.db.prepare('SELECT * FROM allowlists WHERE device_id = ?').get(deviceId) as
      | Row
      | undefined;
    return r && toAllowList(r);
  }

  list(): StoredAllowList[] {
    return (this.db.prepare('SELECT * FROM allowlists ORDER BY device_id').all() as Row[]).map(toAllowList);
  }

  delete(deviceId: string): boolean {
    return this.db.prepare('DELETE FROM allowlists WHERE device_id = ?').run(deviceId).changes > 0;
  }
}
