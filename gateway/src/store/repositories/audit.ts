import type { Db } from '../database.ts';

export interface AuditRow {
  seq: number;
  ts: string;
  actor: string;
  action: string;
  target: string | null;
  details: string;
  prev_hash: string;
  hash: string;
}

export interface AuditHeadRow {
  seq: number;
  hash: string;
  /** HMAC under the keystore's audit key; null on a log that was never keyed. */
  mac: string | null;
  counter: number | null;
}

export interface AuditCheckpointRow {
  seq: number;
  hash: string;
  counter: number;
  ts: string;
  /** Base64 DER ECDSA signature by the gateway identity key. */
  signature: string;
}

/** Row-level access to the audit tables; chaining and verification live in the audit module. */
export class AuditRepository {
  constructor(readonly db: Db) {}

  head(): AuditHeadRow | undefined {
    return this.db.prepare('SELECT seq, hash, mac, counter FROM audit_head WHERE id = 1').get() as
      | AuditHeadRow
      | undefined;
  }

  /** Must run inside the caller's transaction together with `head()`; `head` is the new head's key binding. */
  insert(row: AuditRow, head: { mac: string | null; counter: number | null }): void {
    this.db
      .prepare(
        `INSERT INTO audit_log (seq, ts, actor, action, target, details, prev_hash, hash)
         VALUES (@seq, @ts, @actor, @action, @target, @details, @prev_hash, @hash)`,
      )
      .run(row);
    this.setHead({ seq: row.seq, hash: row.hash, mac: head.mac, counter: head.counter });
  }

  setHead(h: AuditHeadRow): void {
    this.db
      .prepare(
        `INSERT INTO audit_head (id, seq, hash, mac, counter) VALUES (1, @seq, @hash, @mac, @counter)
         ON CONFLICT(id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, mac = excluded.mac,
           counter = excluded.counter`,
      )
      .run(h);
  }

  /** The last entry's (seq, hash), whatever the head says. */
  lastEntry(): { seq: number; hash: string } | undefined {
    return this.db.prepare('SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1').get() as
      | { seq: number; hash: string }
      | undefined;
  }

  hashAt(seq: number): string | undefined {
    return (
      this.db.prepare('SELECT hash FROM audit_log WHERE seq = ?').get(seq) as { hash: string } | undefined
    )?.hash;
  }

  addCheckpoint(c: AuditCheckpointRow): void {
    this.db
      .prepare(
        'INSERT INTO audit_checkpoints (seq, hash, counter, ts, signature) VALUES (@seq, @hash, @counter, @ts, @signature)',
      )
      .run(c);
  }

  lastCheckpoint(): AuditCheckpointRow | undefined {
    return this.db
      .prepare('SELECT seq, hash, counter, ts, signature FROM audit_checkpoints ORDER BY id DESC LIMIT 1')
      .get() as AuditCheckpointRow | undefined;
  }

  /** Checkpoints at or after `fromSeq`, in the order they were made. */
  checkpoints(fromSeq = 0): AuditCheckpointRow[] {
    return this.db
      .prepare('SELECT seq, hash, counter, ts, signature FROM audit_checkpoints WHERE seq >= ? ORDER BY id')
      .all(fromSeq) as AuditCheckpointRow[];
  }

  iterate(fromSeq = 1): IterableIterator<AuditRow> {
    return this.db
      .prepare('SELECT * FROM audit_log WHERE seq >= ? ORDER BY seq')
      .iterate(fromSeq) as IterableIterator<AuditRow>;
  }

  /**
   * Newest first, filtered: each filter is a case-insensitive substring of its column. `beforeSeq` pages
   * backwards.
   */
  search(f: {
    actor?: string;
    action?: string;
    target?: string;
    beforeSeq?: number;
    limit: number;
  }): AuditRow[] {
    const like = (v: string | undefined) => (v ? `%${v.replace(/[\\%_]/g, (c) => `\\${c}`)}%` : null);
    return this.db
      .prepare(
        `SELECT * FROM audit_log
         WHERE (@actor IS NULL OR actor LIKE @actor ESCAPE '\\')
           AND (@action IS NULL OR action LIKE @action ESCAPE '\\')
           AND (@target IS NULL OR target LIKE @target ESCAPE '\\')
           AND (@before IS NULL OR seq < @before)
         ORDER BY seq DESC LIMIT @limit`,
      )
      .all({
        actor: like(f.actor),
        action: like(f.action),
        target: like(f.target),
        before: f.beforeSeq ?? null,
        limit: f.limit,
      }) as AuditRow[];
  }
}
