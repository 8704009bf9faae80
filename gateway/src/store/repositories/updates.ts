import type { Db } from '../database.ts';

export type UpdateStatus = 'installed' | 'rolled-back' | 'refused';

export interface UpdateRecord {
  id: number;
  version: string;
  previous: string | null;
  status: UpdateStatus;
  actor: string;
  error: string | null;
  createdAt: string;
}

interface Row {
  id: number;
  version: string;
  previous: string | null;
  status: UpdateStatus;
  actor: string;
  error: string | null;
  created_at: string;
}

export class UpdateRepository {
  constructor(private readonly db: Db) {}

  record(r: Omit<UpdateRecord, 'id' | 'createdAt'>, now: string): void {
    this.db
      .prepare(
        'INSERT INTO update_history (version, previous, status, actor, error, created_at) VALUES (?, ?, ?, ?, ?, ?)',
      )
      .run(r.version, r.previous, r.status, r.actor, r.error, now);
  }

  history(limit = 50): UpdateRecord[] {
    return (this.db.prepare('SELECT * FROM update_history ORDER BY id DESC LIMIT ?').all(limit) as Row[]).map(
      (r) => ({
        id: r.id,
        version: r.version,
        previous: r.previous,
        status: r.status,
        actor: r.actor,
        error: r.error,
        createdAt: r.created_at,
      }),
    );
  }

  /** The anti-rollback floor: only ever raised. */
  highest(): string | undefined {
    return (
      this.db.prepare('SELECT highest_version FROM update_state WHERE id = 1').get() as
        | { highest_version: string }
        | undefined
    )?.highest_version;
  }

  setHighest(version: string, now: string): void {
    this.db
      .prepare(
        `INSERT INTO update_state (id, highest_version, updated_at) VALUES (1, ?, ?)
         ON CONFLICT(id) DO UPDATE SET highest_version = excluded.highest_version, updated_at = excluded.updated_at`,
      )
      .run(version, now);
  }

  /** The rollback counter's value at the last kept update (decimal text: a TPM counter is 64-bit). */
  counter(): bigint | undefined {
    const r = this.db.prepare('SELECT counter FROM update_state WHERE id = 1').get() as
      | { counter: string | null }
      | undefined;
    return r?.counter ? BigInt(r.counter) : undefined;
  }

  setCounter(value: bigint): void {
    this.db.prepare('UPDATE update_state SET counter = ? WHERE id = 1').run(value.toString());
  }
}
