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

/** Row-level access to the audit tables; chaining and verification live in the audit module. */
export class AuditRepository {
  constructor(readonly db: Db) {}

  head(): { seq: number; hash: string } | undefined {
    return this.db.prepare('SELECT seq, hash FROM audit_head WHERE id = 1').get() as
      | { seq: number; hash: string }
      | undefined;
  }

  /** Must run inside the caller's transaction together with `head()`. */
  insert(row: AuditRow): void {
    this.db
      .prepare(
        `INSERT INTO audit_log (seq, ts, actor, action, target, details, prev_hash, hash)
         VALUES (@seq, @ts, @actor, @action, @target, @details, @prev_hash, @hash)`,
      )
      .run(row);
    this.db
      .prepare(
        'INSERT INTO audit_head (id, seq, hash) VALUES (1, ?, ?) ON CONFLICT(id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash',
      )
      .run(row.seq, row.hash);
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
