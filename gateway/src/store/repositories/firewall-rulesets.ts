import type { Db } from '../database.ts';

export type RulesetStatus = 'applied' | 'failed' | 'rolled-back';

export interface StoredRuleset {
  id: number;
  hash: string;
  iptables: string;
  ipsets: string;
  status: RulesetStatus;
  error: string | null;
  actor: string;
  createdAt: string;
}

interface Row {
  id: number;
  hash: string;
  iptables: string;
  ipsets: string;
  status: RulesetStatus;
  error: string | null;
  actor: string;
  created_at: string;
}

const toRuleset = (r: Row): StoredRuleset => ({
  id: r.id,
  hash: r.hash,
  iptables: r.iptables,
  ipsets: r.ipsets,
  status: r.status,
  error: r.error,
  actor: r.actor,
  createdAt: r.created_at,
});

/** Rulesets kept for history and rollback; older ones are pruned (each can be ~1 MB at 10,000 devices). */
const KEEP = 10;

export class FirewallRulesetRepository {
  constructor(private readonly db: Db) {}

  record(r: Omit<StoredRuleset, 'id' | 'createdAt'>, now: string): StoredRuleset {
    const id = Number(
      this.db
        .prepare(
          `INSERT INTO firewall_rulesets (hash, iptables, ipsets, status, error, actor, created_at)
           VALUES (@hash, @iptables, @ipsets, @status, @error, @actor, @now)`,
        )
        .run({ ...r, now }).lastInsertRowid,
    );
    // Never prune the last good one, however old: it is what a failed apply rolls back to.
    this.db
      .prepare(
        `DELETE FROM firewall_rulesets WHERE id <= ? - ?
           AND id <> COALESCE((SELECT max(id) FROM firewall_rulesets WHERE status = 'applied'), -1)`,
      )
      .run(id, KEEP);
    return toRuleset(this.db.prepare('SELECT * FROM firewall_rulesets WHERE id = ?').get(id) as Row);
  }

  lastApplied(): StoredRuleset | undefined {
    const r = this.db
      .prepare(`SELECT * FROM firewall_rulesets WHERE status = 'applied' ORDER BY id DESC LIMIT 1`)
      .get() as Row | undefined;
    return r && toRuleset(r);
  }

  latest(): StoredRuleset | undefined {
    const r = this.db.prepare('SELECT * FROM firewall_rulesets ORDER BY id DESC LIMIT 1').get() as
      | Row
      | undefined;
    return r && toRuleset(r);
  }
}
