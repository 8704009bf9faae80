import type { Db } from '../database.ts';
import { StoreError } from '../database.ts';

export type Severity = 'low' | 'medium' | 'high';

export interface Alert {
  id: number;
  deviceId: string | null;
  severity: Severity;
  kind: string;
  explanation: string;
  evidence: unknown;
  dedupeKey: string;
  count: number;
  createdAt: string;
  lastSeenAt: string;
  acknowledgedBy: string | null;
  acknowledgedAt: string | null;
}

interface AlertRow {
  id: number;
  device_id: string | null;
  severity: Severity;
  kind: string;
  explanation: string;
  evidence: string;
  dedupe_key: string;
  count: number;
  created_at: string;
  last_seen_at: string;
  acknowledged_by: string | null;
  acknowledged_at: string | null;
}

function toAlert(r: AlertRow): Alert {
  return {
    id: r.id,
    deviceId: r.device_id,
    severity: r.severity,
    kind: r.kind,
    explanation: r.explanation,
    evidence: JSON.parse(r.evidence) as unknown,
    dedupeKey: r.dedupe_key,
    count: r.count,
    createdAt: r.created_at,
    lastSeenAt: r.last_seen_at,
    acknowledgedBy: r.acknowledged_by,
    acknowledgedAt: r.acknowledged_at,
  };
}

export interface NewAlert {
  deviceId: string | null;
  severity: Severity;
  kind: string;
  explanation: string;
  evidence: unknown;
  /** Alerts with the same key fold into one open alert (its count grows) until someone acknowledges it. */
  dedupeKey: string;
}

export class AlertRepository {
  constructor(private readonly db: Db) {}

  raise(a: NewAlert, now: string): { alert: Alert; isNew: boolean } {
    return this.db
      .transaction(() => {
        const open = this.db
          .prepare('SELECT id FROM alerts WHERE dedupe_key = ? AND acknowledged_at IS NULL')
          .get(a.dedupeKey) as { id: number } | undefined;
        if (open) {
          this.db
            .prepare(
              `UPDATE alerts SET count = count + 1, last_seen_at = ?,
                 severity = CASE WHEN ? = 'high' OR severity = 'high' THEN 'high'
                                 WHEN ? = 'medium' OR severity = 'medium' THEN 'medium' ELSE 'low' END
               WHERE id = ?`,
            )
            .run(now, a.severity, a.severity, open.id);
          return { alert: this.get(open.id)!, isNew: false };
        }
        const r = this.db
          .prepare(
            `INSERT INTO alerts (device_id, severity, kind, explanation, evidence, dedupe_key, created_at, last_seen_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
          )
          .run(
            a.deviceId,
            a.severity,
            a.kind,
            a.explanation,
            JSON.stringify(a.evidence),
            a.dedupeKey,
            now,
            now,
          );
        return { alert: this.get(Number(r.lastInsertRowid))!, isNew: true };
      })
      .immediate();
  }

  get(id: number): Alert | undefined {
    const row = this.db.prepare('SELECT * FROM alerts WHERE id = ?').get(id) as AlertRow | undefined;
    return row && toAlert(row);
  }

  list(filter: { open?: boolean; deviceId?: string } = {}): Alert[] {
    const rows = this.db
      .prepare(
        `SELECT * FROM alerts
         WHERE (@open IS NULL OR (acknowledged_at IS NULL) = @open) AND (@device IS NULL OR device_id = @device)
         ORDER BY id DESC`,
      )
      .all({
        open: filter.open === undefined ? null : filter.open ? 1 : 0,
        device: filter.deviceId ?? null,
      }) as AlertRow[];
    return rows.map(toAlert);
  }

  acknowledge(id: number, by: string, now: string): Alert {
    const r = this.db
      .prepare(
        'UPDATE alerts SET acknowledged_by = ?, acknowledged_at = ? WHERE id = ? AND acknowledged_at IS NULL',
      )
      .run(by, now, id);
    if (r.changes === 0)
      throw new StoreError('ERR_STORE_NOT_FOUND', `alert ${id} not found or already acknowledged`);
    return this.get(id)!;
  }

  /** Open alerts by severity and a stamp that changes when any alert is raised, repeated or acknowledged. */
  openSummary(): { open: number; high: number; stamp: string } {
    const r = this.db
      .prepare(
        `SELECT count(*) FILTER (WHERE acknowledged_at IS NULL) AS open,
                count(*) FILTER (WHERE acknowledged_at IS NULL AND severity = 'high') AS high,
                max(last_seen_at) AS seen, max(acknowledged_at) AS acked, max(id) AS last, sum(count) AS total
         FROM alerts`,
      )
      .get() as {
      open: number;
      high: number;
      seen: string | null;
      acked: string | null;
      last: number | null;
      total: number | null;
    };
    return { open: r.open, high: r.high, stamp: `${r.last}:${r.total}:${r.seen}:${r.acked}:${r.open}` };
  }
}
