import type { Db } from '../database.ts';

export interface DownlinkCommand {
  id: number;
  deviceId: string;
  payload: Buffer;
  contentFormat: number | null;
  receivedAt: string;
}

interface Row {
  id: number;
  device_id: string;
  payload: Buffer;
  content_format: number | null;
  received_at: string;
}

/** Commands for devices, oldest first per device. */
export class DownlinkRepository {
  constructor(private readonly db: Db) {}

  enqueue(c: Omit<DownlinkCommand, 'id'>): number {
    return Number(
      this.db
        .prepare(
          'INSERT INTO downlink_queue (device_id, payload, content_format, received_at) VALUES (?, ?, ?, ?)',
        )
        .run(c.deviceId, c.payload, c.contentFormat, c.receivedAt).lastInsertRowid,
    );
  }

  next(deviceId: string): DownlinkCommand | undefined {
    const r = this.db
      .prepare('SELECT * FROM downlink_queue WHERE device_id = ? ORDER BY id LIMIT 1')
      .get(deviceId) as Row | undefined;
    return (
      r && {
        id: r.id,
        deviceId: r.device_id,
        payload: r.payload,
        contentFormat: r.content_format,
        receivedAt: r.received_at,
      }
    );
  }

  delete(id: number): void {
    this.db.prepare('DELETE FROM downlink_queue WHERE id = ?').run(id);
  }

  /** A decommissioned device's commands go with it. */
  deleteForDevice(deviceId: string): number {
    return this.db.prepare('DELETE FROM downlink_queue WHERE device_id = ?').run(deviceId).changes;
  }
}
