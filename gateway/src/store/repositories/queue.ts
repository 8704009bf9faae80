import type { Db } from '../database.ts';

export interface QueuedMessage {
  id: number;
  deviceId: string;
  topic: string;
  payload: Buffer;
  properties: Record<string, string>;
  enqueuedAt: string;
}

interface QueueRow {
  id: number;
  device_id: string;
  topic: string;
  payload: Buffer;
  properties: string;
  enqueued_at: string;
}

function toMessage(r: QueueRow): QueuedMessage {
  return {
    id: r.id,
    deviceId: r.device_id,
    topic: r.topic,
    payload: r.payload,
    properties: JSON.parse(r.properties) as Record<string, string>,
    enqueuedAt: r.enqueued_at,
  };
}

/** The durable uplink queue: ids grow monotonically, so reading in id order keeps per-device order. */
export class QueueRepository {
  constructor(private readonly db: Db) {}

  enqueue(m: Omit<QueuedMessage, 'id'>): number {
    return this.enqueueRow(m.deviceId, m.topic, m.payload, JSON.stringify(m.properties), m.enqueuedAt);
  }

  /** `enqueue` with the properties already as JSON (the queue writer's thread gets them so). */
  enqueueRow(
    deviceId: string,
    topic: string,
    payload: Buffer,
    properties: string,
    enqueuedAt: string,
  ): number {
    const r = this.db
      .prepare(
        'INSERT INTO uplink_queue (device_id, topic, payload, properties, enqueued_at) VALUES (?, ?, ?, ?, ?)',
      )
      .run(deviceId, topic, payload, properties, enqueuedAt);
    return Number(r.lastInsertRowid);
  }

  /**
   * Where a second connection to this queue would open (null: an in-memory database, which no other connection
   * can reach) and with which durability (PRAGMA synchronous: 2 is FULL).
   */
  connection(): { file: string | null; synchronous: 'full' | 'normal' } {
    const file = this.db.memory || this.db.name === '' ? null : this.db.name;
    const sync = this.db.pragma('synchronous', { simple: true }) as number;
    return { file, synchronous: sync >= 2 ? 'full' : 'normal' };
  }

  peek(limit: number, afterId = 0): QueuedMessage[] {
    return (
      this.db
        .prepare('SELECT * FROM uplink_queue WHERE id > ? ORDER BY id LIMIT ?')
        .all(afterId, limit) as QueueRow[]
    ).map(toMessage);
  }

  /** Called only on PUBACK. */
  delete(id: number): boolean {
    return this.db.prepare('DELETE FROM uplink_queue WHERE id = ?').run(id).changes === 1;
  }

  /** Drop policy: the oldest go first. Returns how many were dropped. */
  deleteOldest(n: number): number {
    return this.db
      .prepare('DELETE FROM uplink_queue WHERE id IN (SELECT id FROM uplink_queue ORDER BY id LIMIT ?)')
      .run(n).changes;
  }

  /** Expiry: messages enqueued before `iso` are dropped. Returns how many. */
  deleteEnqueuedBefore(iso: string): number {
    return this.db.prepare('DELETE FROM uplink_queue WHERE enqueued_at < ?').run(iso).changes;
  }

  depth(): number {
    return (this.db.prepare('SELECT count(*) AS n FROM uplink_queue').get() as { n: number }).n;
  }
}
