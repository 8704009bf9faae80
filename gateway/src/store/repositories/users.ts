import type { Db } from '../database.ts';
import { StoreError } from '../database.ts';

export type Role = 'admin' | 'technician' | 'auditor';

export interface User {
  username: string;
  role: Role;
  passwordHash: string;
  totpSecretWrapped: Buffer | null;
  createdAt: string;
  disabledAt: string | null;
}

interface UserRow {
  username: string;
  role: Role;
  password_hash: string;
  totp_secret_wrapped: Buffer | null;
  created_at: string;
  disabled_at: string | null;
}

function toUser(r: UserRow): User {
  return {
    username: r.username,
    role: r.role,
    passwordHash: r.password_hash,
    totpSecretWrapped: r.totp_secret_wrapped,
    createdAt: r.created_at,
    disabledAt: r.disabled_at,
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
}
