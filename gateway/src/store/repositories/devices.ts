import type { Db } from '../database.ts';
import { StoreError } from '../database.ts';

export type CredentialKind = 'psk' | 'x509' | 'rpk';
export type DeviceState = 'pending' | 'active' | 'quarantined' | 'decommissioned';

export interface Device {
  id: string;
  name: string | null;
  type: string | null;
  credentialKind: CredentialKind;
  segment: string | null;
  state: DeviceState;
  firstSeen: string | null;
  lastSeen: string | null;
  firmwareVersion: string | null;
  createdAt: string;
  updatedAt: string;
}

interface DeviceRow {
  id: string;
  name: string | null;
  type: string | null;
  credential_kind: CredentialKind;
  segment: string | null;
  state: DeviceState;
  first_seen: string | null;
  last_seen: string | null;
  firmware_version: string | null;
  created_at: string;
  updated_at: string;
}

function toDevice(r: DeviceRow): Device {
  return {
    id: r.id,
    name: r.name,
    type: r.type,
    credentialKind: r.credential_kind,
    segment: r.segment,
    state: r.state,
    firstSeen: r.first_seen,
    lastSeen: r.last_seen,
    firmwareVersion: r.firmware_version,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
}

export interface NewDevice {
  id: string;
  name?: string | null;
  type?: string | null;
  credentialKind: CredentialKind;
  segment?: string | null;
  state: DeviceState;
}

export class DeviceRepository {
  constructor(private readonly db: Db) {}

  insert(d: NewDevice, now: string): Device {
    try {
      this.db
        .prepare(
          `INSERT INTO devices (id, name, type, credential_kind, segment, state, created_at, updated_at)
           VALUES (@id, @name, @type, @credentialKind, @segment, @state, @now, @now)`,
        )
        .run({ name: null, type: null, segment: null, ...d, now });
    } catch (err) {
      if ((err as { code?: string }).code === 'SQLITE_CONSTRAINT_PRIMARYKEY') {
        throw new StoreError('ERR_STORE_CONFLICT', `device ${d.id} already exists`);
      }
      throw err;
    }
    return this.get(d.id)!;
  }

  get(id: string): Device | undefined {
    const row = this.db.prepare('SELECT * FROM devices WHERE id = ?').get(id) as DeviceRow | undefined;
    return row && toDevice(row);
  }

  list(filter: { state?: DeviceState; segment?: string } = {}): Device[] {
    const rows = this.db
      .prepare(
        `SELECT * FROM devices
         WHERE (@state IS NULL OR state = @state) AND (@segment IS NULL OR segment = @segment)
         ORDER BY id`,
      )
      .all({ state: filter.state ?? null, segment: filter.segment ?? null }) as DeviceRow[];
    return rows.map(toDevice);
  }

  setState(id: string, state: DeviceState, now: string): void {
    const r = this.db
      .prepare('UPDATE devices SET state = ?, updated_at = ? WHERE id = ?')
      .run(state, now, id);
    if (r.changes === 0) throw new StoreError('ERR_STORE_NOT_FOUND', `device ${id} not found`);
  }

  touch(id: string, now: string): void {
    this.db
      .prepare('UPDATE devices SET last_seen = ?, first_seen = COALESCE(first_seen, ?) WHERE id = ?')
      .run(now, now, id);
  }

  countByState(): Record<DeviceState, number> {
    const counts: Record<DeviceState, number> = { pending: 0, active: 0, quarantined: 0, decommissioned: 0 };
    const rows = this.db.prepare('SELECT state, count(*) AS n FROM devices GROUP BY state').all() as {
      state: DeviceState;
      n: number;
    }[];
    for (const r of rows) counts[r.state] = r.n;
    return counts;
  }
}
