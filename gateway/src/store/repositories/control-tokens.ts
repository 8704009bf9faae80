import type { Db } from '../database.ts';

/** A control token as stored: the secret only as its SHA-256, scopes as the admin granted them. */
export interface StoredControlToken {
  name: string;
  scopes: string[];
  createdBy: string;
  createdAt: string;
  revokedAt: string | null;
}

interface Row {
  name: string;
  token_hash: string;
  scopes: string;
  created_by: string;
  created_at: string;
  revoked_at: string | null;
}

const toToken = (r: Row): StoredControlToken => ({
  name: r.name,
  scopes: JSON.parse(r.scopes) as string[],
  createdBy: r.created_by,
  createdAt: r.created_at,
  revokedAt: r.revoked_at,
});

export class ControlTokenRepository {
  constructor(private readonly db: Db) {}

  /** Throws SQLite's constraint error when the name is taken (the caller turns it into its own conflict). */
  insert(t: { name: string; tokenHash: string; scopes: string[]; createdBy: string }, now: string): void {
    this.db
      .prepare(
        'INSERT INTO control_tokens (name, token_hash, scopes, created_by, created_at) VALUES (?, ?, ?, ?, ?)',
      )
      .run(t.name, t.tokenHash, JSON.stringify(t.scopes), t.createdBy, now);
  }

  get(name: string): StoredControlToken | undefined {
    const r = this.db.prepare('SELECT * FROM control_tokens WHERE name = ?').get(name) as Row | undefined;
    return r && toToken(r);
  }

  list(): StoredControlToken[] {
    return (this.db.prepare('SELECT * FROM control_tokens ORDER BY name').all() as Row[]).map(toToken);
  }

  /** Whether a live token of that name was revoked now. */
  revoke(name: string, at: string): boolean {
    return (
      this.db
        .prepare('UPDATE control_tokens SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL')
        .run(at, name).changes > 0
    );
  }

  /** The unrevoked token whose secret hashes to `tokenHash`. */
  findLive(tokenHash: string): StoredControlToken | undefined {
    const r = this.db
      .prepare('SELECT * FROM control_tokens WHERE token_hash = ? AND revoked_at IS NULL')
      .get(tokenHash) as Row | undefined;
    return r && toToken(r);
  }
}
