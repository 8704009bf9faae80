import type { Db } from '../database.ts';
import { StoreError } from '../database.ts';

export type Role = 'admin' | 'technician' | 'auditor';

export interface User {
  username: string;
  role: Role;
  passwordHash: string;
  totpSecretWrapped: Buffer | null;
  totpEnrolledAt: string | null;
  totpLastStep: number | null;
  recoveryCodeHashes: string[];
  failedLogins: number;
  lockedUntil: string | null;
  createdAt: string;
  disabledAt: string | null;
  /** An admin set this password: it must be changed before the account may do anything else. */
  passwordChangeRequired: boolean;
}

/** A live or expired UI session as the accounts page lists it (never the token, only its hash's hash). */
export interface SessionRow {
  tokenHash: string;
  username: string;
  mfaPassed: boolean;
  createdAt: string;
  lastSeenAt: string;
  address: string | null;
}

interface UserRow {
  username: string;
  role: Role;
  password_hash: string;
  totp_secret_wrapped: Buffer | null;
  totp_enrolled_at: string | null;
  totp_last_step: number | null;
  recovery_codes: string | null;
  failed_logins: number;
  locked_until: string | null;
  created_at: string;
  disabled_at: string | null;
  password_change_required: number;
}

function toUser(r: UserRow): User {
  return {
    username: r.username,
    role: r.role,
    passwordHash: r.password_hash,
    totpSecretWrapped: r.totp_secret_wrapped,
    totpEnrolledAt: r.totp_enrolled_at,
    totpLastStep: r.totp_last_step,
    recoveryCodeHashes: r.recovery_codes ? (JSON.parse(r.recovery_codes) as string[]) : [],
    failedLogins: r.failed_logins,
    lockedUntil: r.locked_until,
    createdAt: r.created_at,
    disabledAt: r.disabled_at,
    passwordChangeRequired: r.password_change_required === 1,
  };
}

export class UserRepository {
  constructor(private readonly db: Db) {}

  insert(u: { username: string; role: Role; passwordHash: string }, now: string): User {
    try {
      this.db
        .prepare('INSERT INTO users (username, role, password_hash, created_at) VALUES (?, ?, ?, ?)')
        .run(u.username, u.role, u.passwordHash, now);
    } catch (err) {
      if ((err as { code?: string }).code === 'SQLITE_CONSTRAINT_PRIMARYKEY') {
        throw new StoreError('ERR_STORE_CONFLICT', `user ${u.username} already exists`);
      }
      throw err;
    }
    return this.get(u.username)!;
  }

  get(username: string): User | undefined {
    const row = this.db.prepare('SELECT * FROM users WHERE username = ?').get(username) as
      | UserRow
      | undefined;
    return row && toUser(row);
  }

  list(): User[] {
    return (this.db.prepare('SELECT * FROM users ORDER BY username').all() as UserRow[]).map(toUser);
  }

  count(): number {
    return (this.db.prepare('SELECT count(*) AS n FROM users').get() as { n: number }).n;
  }

  /** A failed login: counts up, and locks the account until `lockUntil` once `lockAfter` is reached. */
  recordFailure(username: string, lockAfter: number, lockUntil: string): number {
    this.db
      .prepare(
        `UPDATE users SET failed_logins = failed_logins + 1,
           locked_until = CASE WHEN failed_logins + 1 >= ? THEN ? ELSE locked_until END
         WHERE username = ?`,
      )
      .run(lockAfter, lockUntil, username);
    return this.get(username)?.failedLogins ?? 0;
  }

  clearFailures(username: string): void {
    this.db
      .prepare('UPDATE users SET failed_logins = 0, locked_until = NULL WHERE username = ?')
      .run(username);
  }

  setTotp(username: string, wrapped: Buffer | null, enrolledAt: string | null): void {
    this.db
      .prepare(
        'UPDATE users SET totp_secret_wrapped = ?, totp_enrolled_at = ?, totp_last_step = NULL WHERE username = ?',
      )
      .run(wrapped, enrolledAt, username);
  }

  /** Accepts a TOTP step only if it is later than the last one accepted (a code works once). */
  acceptTotpStep(username: string, step: number): boolean {
    return (
      this.db
        .prepare(
          'UPDATE users SET totp_last_step = ? WHERE username = ? AND (totp_last_step IS NULL OR totp_last_step < ?)',
        )
        .run(step, username, step).changes > 0
    );
  }

  setRecoveryCodes(username: string, hashes: string[]): void {
    this.db
      .prepare('UPDATE users SET recovery_codes = ? WHERE username = ?')
      .run(JSON.stringify(hashes), username);
  }

  /** A new password hash; `mustChange` marks one set by somebody else (changed at the next login). */
  setPassword(username: string, hash: string, mustChange: boolean): void {
    this.db
      .prepare(
        'UPDATE users SET password_hash = ?, password_change_required = ?, failed_logins = 0, locked_until = NULL WHERE username = ?',
      )
      .run(hash, mustChange ? 1 : 0, username);
  }

  /** Forgets the second factor (secret, recovery codes): the account enrols again at its next login. */
  clearMfa(username: string): void {
    this.db
      .prepare(
        'UPDATE users SET totp_secret_wrapped = NULL, totp_enrolled_at = NULL, totp_last_step = NULL, recovery_codes = NULL WHERE username = ?',
      )
      .run(username);
  }

  setDisabled(username: string, at: string | null): void {
    this.db.prepare('UPDATE users SET disabled_at = ? WHERE username = ?').run(at, username);
  }

  /** Deletes the account and its sessions (audit entries keep its name as they were). */
  delete(username: string): void {
    this.db.prepare('DELETE FROM ui_sessions WHERE username = ?').run(username);
    this.db.prepare('DELETE FROM users WHERE username = ?').run(username);
  }

  /** Enabled admins: the last one may not be disabled, demoted or deleted. */
  countActiveAdmins(): number {
    return (
      this.db
        .prepare("SELECT count(*) AS n FROM users WHERE role = 'admin' AND disabled_at IS NULL")
        .get() as { n: number }
    ).n;
  }

  sessions(username?: string): SessionRow[] {
    const rows = (
      username
        ? this.db
            .prepare('SELECT * FROM ui_sessions WHERE username = ? ORDER BY last_seen_at DESC')
            .all(username)
        : this.db.prepare('SELECT * FROM ui_sessions ORDER BY username, last_seen_at DESC').all()
    ) as {
      token_hash: string;
      username: string;
      mfa_passed: number;
      created_at: string;
      last_seen_at: string;
      address: string | null;
    }[];
    return rows.map((r) => ({
      tokenHash: r.token_hash,
      username: r.username,
      mfaPassed: r.mfa_passed === 1,
      createdAt: r.created_at,
      lastSeenAt: r.last_seen_at,
      address: r.address,
    }));
  }

  /** Ends sessions of `username`, all of them or all but `keepTokenHash` (the one changing its password). */
  deleteSessions(username: string, keepTokenHash?: string): number {
    return this.db
      .prepare('DELETE FROM ui_sessions WHERE username = ? AND token_hash IS NOT ?')
      .run(username, keepTokenHash ?? null).changes;
  }

  deleteSession(tokenHash: string): number {
    return this.db.prepare('DELETE FROM ui_sessions WHERE token_hash = ?').run(tokenHash).changes;
  }

  /** Replaces the first-boot setup code (only its hash is kept; the previous code stops working). */
  setSetupCode(codeHash: string, at: string): void {
    this.db
      .prepare(
        'INSERT INTO setup_code (id, code_hash, created_at) VALUES (1, ?, ?) ON CONFLICT(id) DO UPDATE SET code_hash = excluded.code_hash, created_at = excluded.created_at',
      )
      .run(codeHash, at);
  }

  setupCodeHash(): string | undefined {
    const r = this.db.prepare('SELECT code_hash FROM setup_code WHERE id = 1').get() as
      | { code_hash: string }
      | undefined;
    return r?.code_hash;
  }

  clearSetupCode(): void {
    this.db.prepare('DELETE FROM setup_code').run();
  }
}
