import type { Db } from '../database.ts';

/** The last desired-state document applied per scope (`gateway`, `group:<name>`): versions only go up. */
export interface FleetApplied {
  scope: string;
  version: number;
  hash: string;
  keyId: string;
  appliedAt: string;
  /** The document's labels (a config fragment the gateway records and reports). */
  labels: Record<string, string>;
  /** What the document changed (device ids per change, profiles, update...), for the fleet page. */
  changes?: Record<string, unknown>;
}

/** A policy profile defined by a signed document (fields as `policy.profiles` takes them). */
export interface FleetProfile {
  name: string;
  fields: Record<string, unknown>;
  keyId: string;
  definedAt: string;
}

/** A refused document, kept for the fleet page (the newest 50; each is audited too). */
export interface FleetRefusal {
  scope: string;
  version: number | null;
  claimedKeyId: string | null;
  code: string;
  reason: string;
  at: string;
}

/** Refusals kept: the page shows recent ones; the audit log has all those it was allowed to record. */
const REFUSALS_KEPT = 50;

/** The operator key that signs desired state after a rotation (until then the config's key is the one). */
export interface FleetTrust {
  keySpki: string;
  keyId: string;
  /** The key id pinned in the config when the rotation was applied: a new pin in the config wins over it. */
  pinnedFrom: string;
  since: string;
}

export interface FleetLock {
  locked: boolean;
  by: string | null;
  since: string | null;
}

interface AppliedRow {
  scope: string;
  version: number;
  hash: string;
  key_id: string;
  applied_at: string;
  labels: string;
  changes: string;
}

const toApplied = (r: AppliedRow): FleetApplied => ({
  scope: r.scope,
  version: r.version,
  hash: r.hash,
  keyId: r.key_id,
  appliedAt: r.applied_at,
  labels: JSON.parse(r.labels) as Record<string, string>,
  changes: JSON.parse(r.changes) as Record<string, unknown>,
});

export class FleetRepository {
  constructor(private readonly db: Db) {}

  applied(scope: string): FleetApplied | undefined {
    const r = this.db.prepare('SELECT * FROM fleet_applied WHERE scope = ?').get(scope) as
      | AppliedRow
      | undefined;
    return r && toApplied(r);
  }

  allApplied(): FleetApplied[] {
    return (this.db.prepare('SELECT * FROM fleet_applied ORDER BY scope').all() as AppliedRow[]).map(
      toApplied,
    );
  }

  setApplied(a: FleetApplied): void {
    this.db
      .prepare(
        `INSERT INTO fleet_applied (scope, version, hash, key_id, applied_at, labels, changes)
         VALUES (?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT(scope) DO UPDATE SET version = excluded.version, hash = excluded.hash,
           key_id = excluded.key_id, applied_at = excluded.applied_at, labels = excluded.labels,
           changes = excluded.changes`,
      )
      .run(
        a.scope,
        a.version,
        a.hash,
        a.keyId,
        a.appliedAt,
        JSON.stringify(a.labels),
        JSON.stringify(a.changes ?? {}),
      );
  }

  profiles(): FleetProfile[] {
    const rows = this.db.prepare('SELECT * FROM fleet_profiles ORDER BY name').all() as Array<{
      name: string;
      fields: string;
      key_id: string;
      defined_at: string;
    }>;
    return rows.map((r) => ({
      name: r.name,
      fields: JSON.parse(r.fields) as Record<string, unknown>,
      keyId: r.key_id,
      definedAt: r.defined_at,
    }));
  }

  putProfile(p: FleetProfile): void {
    this.db
      .prepare(
        `INSERT INTO fleet_profiles (name, fields, key_id, defined_at) VALUES (?, ?, ?, ?)
         ON CONFLICT(name) DO UPDATE SET fields = excluded.fields, key_id = excluded.key_id,
           defined_at = excluded.defined_at`,
      )
      .run(p.name, JSON.stringify(p.fields), p.keyId, p.definedAt);
  }

  /** Records a refusal and forgets all but the newest `REFUSALS_KEPT`. */
  addRefusal(r: FleetRefusal): void {
    this.db
      .prepare(
        'INSERT INTO fleet_refusals (scope, version, claimed_key_id, code, reason, at) VALUES (?, ?, ?, ?, ?, ?)',
      )
      .run(r.scope, r.version, r.claimedKeyId, r.code, r.reason, r.at);
    this.db
      .prepare(
        'DELETE FROM fleet_refusals WHERE id NOT IN (SELECT id FROM fleet_refusals ORDER BY id DESC LIMIT ?)',
      )
      .run(REFUSALS_KEPT);
  }

  /** Newest first. */
  refusals(): FleetRefusal[] {
    const rows = this.db.prepare('SELECT * FROM fleet_refusals ORDER BY id DESC').all() as Array<{
      scope: string;
      version: number | null;
      claimed_key_id: string | null;
      code: string;
      reason: string;
      at: string;
    }>;
    return rows.map((r) => ({
      scope: r.scope,
      version: r.version,
      claimedKeyId: r.claimed_key_id,
      code: r.code,
      reason: r.reason,
      at: r.at,
    }));
  }

  trust(): FleetTrust | undefined {
    const r = this.db.prepare('SELECT * FROM fleet_trust WHERE id = 1').get() as
      | { key_spki: string; key_id: string; pinned_from: string; since: string }
      | undefined;
    return r && { keySpki: r.key_spki, keyId: r.key_id, pinnedFrom: r.pinned_from, since: r.since };
  }

  setTrust(t: FleetTrust): void {
    this.db
      .prepare(
        `INSERT INTO fleet_trust (id, key_spki, key_id, pinned_from, since) VALUES (1, ?, ?, ?, ?)
         ON CONFLICT(id) DO UPDATE SET key_spki = excluded.key_spki, key_id = excluded.key_id,
           pinned_from = excluded.pinned_from, since = excluded.since`,
      )
      .run(t.keySpki, t.keyId, t.pinnedFrom, t.since);
  }

  lock(): FleetLock {
    const r = this.db.prepare('SELECT locked_by, locked_at FROM fleet_lock WHERE id = 1').get() as
      | { locked_by: string; locked_at: string }
      | undefined;
    return r
      ? { locked: true, by: r.locked_by, since: r.locked_at }
      : { locked: false, by: null, since: null };
  }

  setLock(by: string | null, at: string): void {
    if (by === null) this.db.prepare('DELETE FROM fleet_lock WHERE id = 1').run();
    else
      this.db
        .prepare('INSERT OR REPLACE INTO fleet_lock (id, locked_by, locked_at) VALUES (1, ?, ?)')
        .run(by, at);
  }

  /** The last sequence number a stream's consumer acknowledged (0: none yet). */
  streamAcked(name: string): number {
    const r = this.db.prepare('SELECT acked_seq FROM fleet_streams WHERE name = ?').get(name) as
      | { acked_seq: number }
      | undefined;
    return r?.acked_seq ?? 0;
  }

  /** Only ever raised: an old acknowledgement arriving late changes nothing. */
  raiseStreamAcked(name: string, seq: number): void {
    this.db
      .prepare(
        `INSERT INTO fleet_streams (name, acked_seq) VALUES (?, ?)
         ON CONFLICT(name) DO UPDATE SET acked_seq = max(acked_seq, excluded.acked_seq)`,
      )
      .run(name, seq);
  }
}
