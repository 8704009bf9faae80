import type { Db } from '../database.ts';

/** A UI session row: the browser holds the token, the store only its hash. */
export interface StoredUiSession {
  tokenHash: string;
  username: string;
  mfaPassed: boolean;
  csrf: string;
  createdAt: string;
  lastSeenAt: string;
  reauthAt: string | null;
  address: string | null;
}

interface Row {
  token_hash: string;
  username: string;
  mfa_passed: number;
  csrf: string;
  created_at: string;
  last_seen_at: string;
  reauth_at: string | null;
  address: string | null;
}

/** Session mechanics (create, read, touch); listing and ending sessions are the users repository's. */
export class UiSessionRepository {
  constructor(private readonly db: Db) {}

  insert(s: Omit<StoredUiSession, 'createdAt' | 'lastSeenAt' | 'reauthAt'>, now: string): void {
    this.db
      .prepare(
        'INSERT INTO ui_sessions (token_hash, username, mfa_passed, csrf, created_at, last_seen_at, address) VALUES (?, ?, ?, ?, ?, ?, ?)',
      )
      .run(s.tokenHash, s.username, s.mfaPassed ? 1 : 0, s.csrf, now, now, s.address);
  }

  get(tokenHash: string): StoredUiSession | undefined {
    const r = this.db.prepare('SELECT * FROM ui_sessions WHERE token_hash = ?').get(tokenHash) as
      | Row
      | undefined;
    return (
      r && {
        tokenHash: r.token_hash,
        username: r.username,
        mfaPassed: r.mfa_passed === 1,
        csrf: r.csrf,
        createdAt: r.created_at,
        lastSeenAt: r.last_seen_at,
        reauthAt: r.reauth_at,
        address: r.address,
      }
    );
  }

  touch(tokenHash: string, at: string): void {
    this.db.prepare('UPDATE ui_sessions SET last_seen_at = ? WHERE token_hash = ?').run(at, tokenHash);
  }

  markReauth(tokenHash: string, at: string): void {
    this.db.prepare('UPDATE ui_sessions SET reauth_at = ? WHERE token_hash = ?').run(at, tokenHash);
  }
}
