import type { Db } from '../database.ts';

/** A secret wrapped under this gateway's data key, as a backup carries it (see gateway/src/backup). */
export interface WrappedSecretRow {
  kind: 'psk' | 'totp';
  /** credentials.id for a PSK, the username for a TOTP secret. */
  key: string;
  /** The credential's lookup (PSK identity), which its wrapping context names. */
  lookup: string;
  credentialKind: string;
  wrapped: Buffer;
}

/**
 * What backup and restore need from the database: a consistent copy of a live WAL database (SQLite's online
 * backup, never a file copy), the wrapped secrets to re-wrap under another gateway's key, and forgetting what
 * must not travel (UI sessions).
 */
export class BackupRepository {
  constructor(private readonly db: Db) {}

  /** A consistent snapshot of the whole database into `file` (SQLite's online backup API), while it is in use. */
  async copyTo(file: string): Promise<void> {
    await this.db.backup(file);
  }

  schemaVersion(): number {
    return this.db.pragma('user_version', { simple: true }) as number;
  }

  /** Every wrapped secret: device credentials' and accounts' TOTP keys. */
  wrappedSecrets(): WrappedSecretRow[] {
    const creds = this.db
      .prepare(
        'SELECT id, kind, lookup, secret_wrapped FROM credentials WHERE secret_wrapped IS NOT NULL ORDER BY id',
      )
      .all() as { id: number; kind: string; lookup: string; secret_wrapped: Buffer }[];
    const totp = this.db
      .prepare(
        'SELECT username, totp_secret_wrapped FROM users WHERE totp_secret_wrapped IS NOT NULL ORDER BY username',
      )
      .all() as { username: string; totp_secret_wrapped: Buffer }[];
    return [
      ...creds.map((c) => ({
        kind: 'psk' as const,
        key: String(c.id),
        lookup: c.lookup,
        credentialKind: c.kind,
        wrapped: c.secret_wrapped,
      })),
      ...totp.map((u) => ({
        kind: 'totp' as const,
        key: u.username,
        lookup: u.username,
        credentialKind: 'totp',
        wrapped: u.totp_secret_wrapped,
      })),
    ];
  }

  /** Replaces one credential's wrapped secret (a restore re-wraps it under this gateway's key). */
  setCredentialSecret(id: number, lookup: string, wrapped: Buffer): boolean {
    return (
      this.db
        .prepare(
          'UPDATE credentials SET secret_wrapped = ? WHERE id = ? AND lookup = ? AND secret_wrapped IS NOT NULL',
        )
        .run(wrapped, id, lookup).changes === 1
    );
  }

  setTotpSecret(username: string, wrapped: Buffer): boolean {
    return (
      this.db
        .prepare(
          'UPDATE users SET totp_secret_wrapped = ? WHERE username = ? AND totp_secret_wrapped IS NOT NULL',
        )
        .run(wrapped, username).changes === 1
    );
  }

  /** Sessions are the old gateway's: nobody is logged in on the new one until they log in there. */
  clearSessions(): number {
    return this.db.prepare('DELETE FROM ui_sessions').run().changes;
  }
}
