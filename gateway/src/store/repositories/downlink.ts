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

/** How long a command another process queued may wait for the set below to learn of it. */
const REFRESH_MS = 50;

/** Commands for devices, oldest first per device. */
export class DownlinkRepository {
  /**
   * The devices that may have commands: every reading asks `next`, almost always for nothing, and that query was
   * 3–4 % of the gateway's main-thread samples at ~12,000 messages/s (issue 23). Filled from the table, added to by
   * this connection's `enqueue` at once, read again after REFRESH_MS for another process's (the CLI's firmware
   * commands); a device whose query finds nothing leaves it. Never missing one of this connection's commands.
   */
  private pending: Set<string> | null = null;
  private loadedAt = Number.NEGATIVE_INFINITY;

  constructor(private readonly db: Db) {}

  private mayHave(deviceId: string): boolean {
    const now = performance.now();
    if (!this.pending || now - this.loadedAt >= REFRESH_MS) {
      const rows = this.db.prepare('SELECT DISTINCT device_id FROM downlink_queue').all() as Array<{
        device_id: string;
      }>;
      this.pending = new Set(rows.map((r) => r.device_id));
      this.loadedAt = now;
    }
    return this.pending.has(deviceId);
  }

  enqueue(c: Omit<DownlinkCommand, 'id'>): number {
    const id = this.db
      .prepare(
        'INSERT INTO downlink_queue (device_id, payload, content_format, received_at) VALUES (?, ?, ?, ?)',
      )
      .run(c.deviceId, c.payload, c.contentFormat, c.receivedAt).lastInsertRowid;
    this.pending?.add(c.deviceId);
    return Number(id);
  }

  next(deviceId: string): DownlinkCommand | undefined {
    if (!this.mayHave(deviceId)) return undefined;
    const r = this.db
      .prepare('SELECT * FROM downlink_queue WHERE device_id = ? ORDER BY id LIMIT 1')
      .get(deviceId) as Row | undefined;
    if (!r) {
      this.pending?.delete(deviceId);
      return undefined;
    }
    return {
      id: r.id,
      deviceId: r.device_id,
      payload: r.payload,
      contentFormat: r.content_format,
      receivedAt: r.received_at,
    };
  }

  delete(id: number): void {
    this.db.prepare('DELETE FROM downlink_queue WHERE id = ?').run(id);
  }

  /** A decommissioned device's commands go with it. */
  deleteForDevice(deviceId: string): number {
    return this.db.prepare('DELETE FROM downlink_queue WHERE device_id = ?').run(deviceId).changes;
  }
}
