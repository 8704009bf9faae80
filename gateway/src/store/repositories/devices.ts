import type { Db } from '../database.ts';
import { StoreError } from '../database.ts';

export type CredentialKind = 'psk' | 'x509' | 'rpk';
export type DeviceState = 'pending' | 'active' | 'quarantined' | 'decommissioned';
/** observe: the device may still reach the gateway's DTLS endpoint and nothing else; isolate: nothing at all. */
export type QuarantineMode = 'observe' | 'isolate';

export interface Quarantine {
  mode: QuarantineMode;
  reason: string;
  since: string;
  /** The state a release returns the device to. */
  previousState: DeviceState;
}

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
  /** IPv4 address the firewall knows the device by; null until set. */
  address: string | null;
  quarantine: Quarantine | null;
  /** The policy profile the device takes (config `policy.profiles`); null: `policy.defaultProfile`. */
  policyProfile: string | null;
  /** Profile fields replaced for this device (JSON object; the policy service checks their shape). */
  policyOverrides: Record<string, unknown>;
  createdAt: string;
  updatedAt: string;
}

/**
 * A device as the data path sees it (the identity cache's entries): what authorises and routes a reading. The
 * columns that only describe a device's history — first and last seen, firmware, created and updated — are left
 * out: the cache keeps one of these per credential for as long as the identity tables are unchanged, and at
 * 10,000 sensors their strings were ~0.15 KiB a device (issue 23).
 */
export type SessionDevice = Omit<
  Device,
  'firstSeen' | 'lastSeen' | 'firmwareVersion' | 'createdAt' | 'updatedAt'
>;

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
  address: string | null;
  quarantine_mode: QuarantineMode | null;
  quarantine_reason: string | null;
  quarantined_at: string | null;
  state_before_quarantine: DeviceState | null;
  policy_profile: string | null;
  policy_overrides: string;
  created_at: string;
  updated_at: string;
}

/**
 * SQLite hands out a new string for every column of every row read: the enum columns are mapped to the one
 * string each value has, and an empty override object is one frozen object, so the devices a busy gateway keeps
 * (the identity cache holds one per credential) do not each carry copies (~0.1 KiB a device; issue 23).
 */
const CREDENTIAL_KINDS: Readonly<Record<CredentialKind, CredentialKind>> = {
  psk: 'psk',
  x509: 'x509',
  rpk: 'rpk',
};
const STATES: Readonly<Record<DeviceState, DeviceState>> = {
  pending: 'pending',
  active: 'active',
  quarantined: 'quarantined',
  decommissioned: 'decommissioned',
};
const NO_OVERRIDES: Record<string, unknown> = Object.freeze({});

/** Field by field in Device's order: `device list --json` and the API show them in it. */
function toDevice(r: DeviceRow): Device {
  return {
    id: r.id,
    name: r.name,
    type: r.type,
    credentialKind: CREDENTIAL_KINDS[r.credential_kind] ?? r.credential_kind,
    segment: r.segment,
    state: STATES[r.state] ?? r.state,
    firstSeen: r.first_seen,
    lastSeen: r.last_seen,
    firmwareVersion: r.firmware_version,
    address: r.address,
    quarantine: quarantineOf(r),
    policyProfile: r.policy_profile,
    policyOverrides: parseOverrides(r.policy_overrides),
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
}

type SessionDeviceRow = Omit<DeviceRow, 'first_seen' | 'last_seen' | 'firmware_version' | 'created_at'>;
const SESSION_DEVICE_COLUMNS = [
  'id',
  'name',
  'type',
  'credential_kind',
  'segment',
  'state',
  'address',
  'quarantine_mode',
  'quarantine_reason',
  'quarantined_at',
  'state_before_quarantine',
  'policy_profile',
  'policy_overrides',
  // Only for a quarantine without its own time (quarantineOf); the field itself is not kept.
  'updated_at',
]
  .map((c) => `d.${c}`)
  .join(', ');

function toSessionDevice(r: SessionDeviceRow): SessionDevice {
  return {
    id: r.id,
    name: r.name,
    type: r.type,
    credentialKind: CREDENTIAL_KINDS[r.credential_kind] ?? r.credential_kind,
    segment: r.segment,
    state: STATES[r.state] ?? r.state,
    address: r.address,
    quarantine: quarantineOf(r),
    policyProfile: r.policy_profile,
    policyOverrides: parseOverrides(r.policy_overrides),
  };
}

function quarantineOf(r: SessionDeviceRow): Quarantine | null {
  return r.state === 'quarantined' && r.quarantine_mode
    ? {
        mode: r.quarantine_mode,
        reason: r.quarantine_reason ?? '',
        since: r.quarantined_at ?? r.updated_at,
        previousState: r.state_before_quarantine ?? 'active',
      }
    : null;
}

function parseOverrides(json: string): Record<string, unknown> {
  if (json === '{}') return NO_OVERRIDES;
  try {
    const v = JSON.parse(json) as unknown;
    if (v && typeof v === 'object' && !Array.isArray(v)) return v as Record<string, unknown>;
  } catch {
    // fall through: a damaged value is kept visible as one the policy service refuses (fail closed)
  }
  return { invalid: json };
}

export interface NewDevice {
  id: string;
  name?: string | null;
  type?: string | null;
  credentialKind: CredentialKind;
  segment?: string | null;
  address?: string | null;
  state: DeviceState;
}

function asDeviceConflict(err: unknown, id: string, address: string | null): unknown {
  const code = (err as { code?: string }).code;
  if (code === 'SQLITE_CONSTRAINT_PRIMARYKEY') {
    return new StoreError('ERR_STORE_CONFLICT', `device ${id} already exists`);
  }
  if (code === 'SQLITE_CONSTRAINT_UNIQUE') {
    return new StoreError('ERR_STORE_CONFLICT', `address ${address} belongs to another device`);
  }
  if (code === 'SQLITE_CONSTRAINT_FOREIGNKEY') {
    return new StoreError('ERR_STORE_NOT_FOUND', 'no such segment');
  }
  return err;
}

export class DeviceRepository {
  private readonly identityListeners = new Set<() => void>();
  constructor(private readonly db: Db) {}

  /**
   * Calls `listener` at once whenever this connection writes a device or a credential, committed or not: TEMP
   * triggers, this connection's own and never persisted, which call back into JavaScript (identity's device cache
   * drops what it holds; other connections' writes it reads from identity_version). False where the connection
   * cannot have them (read-only): the caller must then not rely on it.
   */
  onIdentityWrite(listener: () => void): boolean {
    if (this.identityListeners.size === 0) {
      try {
        this.db.function('portcullis_identity_written', { deterministic: false, varargs: false }, () => {
          for (const l of this.identityListeners) l();
          return null;
        });
        // The device columns of migration 25's trigger: not last_seen, first_seen, firmware_version, updated_at
        // (a sensor's GET /commands and a firmware report write those on this connection).
        const watched = {
          devices_insert: 'INSERT ON main.devices',
          devices_delete: 'DELETE ON main.devices',
          devices_update:
            'UPDATE OF id, name, type, credential_kind, segment, state, address, quarantine_mode, ' +
            'quarantine_reason, quarantined_at, state_before_quarantine, policy_profile, policy_overrides ON main.devices',
          credentials_insert: 'INSERT ON main.credentials',
          credentials_update: 'UPDATE ON main.credentials',
          credentials_delete: 'DELETE ON main.credentials',
        };
        for (const [name, on] of Object.entries(watched))
          this.db.exec(
            `CREATE TEMP TRIGGER IF NOT EXISTS portcullis_${name}_watch AFTER ${on} ` +
              'BEGIN SELECT portcullis_identity_written(); END',
          );
      } catch {
        return false;
      }
    }
    this.identityListeners.add(listener);
    return true;
  }

  insert(d: NewDevice, now: string): Device {
    try {
      this.db
        .prepare(
          `INSERT INTO devices (id, name, type, credential_kind, segment, address, state, created_at, updated_at)
           VALUES (@id, @name, @type, @credentialKind, @segment, @address, @state, @now, @now)`,
        )
        .run({ name: null, type: null, segment: null, address: null, ...d, now });
    } catch (err) {
      throw asDeviceConflict(err, d.id, d.address ?? null);
    }
    return this.get(d.id)!;
  }

  get(id: string): Device | undefined {
    const row = this.db.prepare('SELECT * FROM devices WHERE id = ?').get(id) as DeviceRow | undefined;
    return row && toDevice(row);
  }

  /**
   * The device holding an unrevoked credential of this kind and lookup: one statement instead of a credential
   * then a device lookup, because the data path asks it for every message (issue 23).
   */
  byActiveCredential(kind: CredentialKind, lookup: string): SessionDevice | undefined {
    const row = this.db
      .prepare(
        `SELECT ${SESSION_DEVICE_COLUMNS} FROM credentials c JOIN devices d ON d.id = c.device_id ` +
          'WHERE c.kind = ? AND c.lookup = ? AND c.revoked_at IS NULL',
      )
      .get(kind, lookup) as SessionDeviceRow | undefined;
    return row && toSessionDevice(row);
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

  /**
   * Every device's segment ('' for none), read row by row: what the behaviour service groups devices by. A
   * list() of every device took 41–52 ms and built 7–10 MB of objects at 10,000 devices; this, 9–10 ms and
   * ~2 MB (issue 23, in-process).
   */
  segments(): Map<string, string> {
    const out = new Map<string, string>();
    const rows = this.db.prepare('SELECT id, segment FROM devices').iterate() as Iterable<{
      id: string;
      segment: string | null;
    }>;
    // A site has a few segments and many devices: each row's segment is a string of its own from SQLite, so
    // one string per segment is kept instead (~0.03 KiB a device).
    const names = new Map<string, string>();
    for (const r of rows) {
      const segment = r.segment ?? '';
      let name = names.get(segment);
      if (name === undefined) {
        name = segment;
        names.set(segment, name);
      }
      out.set(r.id, name);
    }
    return out;
  }

  /** Which of these devices are decommissioned: by primary key, so the cost is the list's, not the fleet's history. */
  decommissionedAmong(ids: readonly string[]): string[] {
    const rows = this.db
      .prepare(
        "SELECT id FROM devices WHERE state = 'decommissioned' AND id IN (SELECT value FROM json_each(?))",
      )
      .all(JSON.stringify(ids)) as Array<{ id: string }>;
    return rows.map((r) => r.id);
  }

  /** The device's policy profile and overrides (the policy service audits the change). */
  setPolicy(id: string, profile: string | null, overrides: Record<string, unknown>, now: string): void {
    const r = this.db
      .prepare('UPDATE devices SET policy_profile = ?, policy_overrides = ?, updated_at = ? WHERE id = ?')
      .run(profile, JSON.stringify(overrides), now, id);
    if (r.changes === 0) throw new StoreError('ERR_STORE_NOT_FOUND', `device ${id} not found`);
  }

  setState(id: string, state: DeviceState, now: string): void {
    const r = this.db
      .prepare('UPDATE devices SET state = ?, updated_at = ? WHERE id = ?')
      .run(state, now, id);
    if (r.changes === 0) throw new StoreError('ERR_STORE_NOT_FOUND', `device ${id} not found`);
  }

  /** Where the device lives on the network; `undefined` leaves a field as it is. */
  setPlacement(id: string, p: { segment?: string | null; address?: string | null }, now: string): void {
    try {
      const r = this.db
        .prepare(
          `UPDATE devices SET
             segment = CASE WHEN @setSegment THEN @segment ELSE segment END,
             address = CASE WHEN @setAddress THEN @address ELSE address END,
             updated_at = @now
           WHERE id = @id`,
        )
        .run({
          id,
          now,
          setSegment: p.segment !== undefined ? 1 : 0,
          segment: p.segment ?? null,
          setAddress: p.address !== undefined ? 1 : 0,
          address: p.address ?? null,
        });
      if (r.changes === 0) throw new StoreError('ERR_STORE_NOT_FOUND', `device ${id} not found`);
    } catch (err) {
      throw asDeviceConflict(err, id, p.address ?? null);
    }
  }

  quarantine(id: string, q: Omit<Quarantine, 'since'>, now: string): void {
    this.db
      .prepare(
        `UPDATE devices SET state = 'quarantined', quarantine_mode = ?, quarantine_reason = ?, quarantined_at = ?,
           state_before_quarantine = ?, updated_at = ? WHERE id = ?`,
      )
      .run(q.mode, q.reason, now, q.previousState, now, id);
  }

  release(id: string, state: DeviceState, now: string): void {
    this.db
      .prepare(
        `UPDATE devices SET state = ?, quarantine_mode = NULL, quarantine_reason = NULL, quarantined_at = NULL,
           state_before_quarantine = NULL, updated_at = ? WHERE id = ?`,
      )
      .run(state, now, id);
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

  /** The latest time any device was seen: `touch` does not move `changeStamp`, this does (live "last seen"). */
  seenStamp(): string {
    const r = this.db.prepare('SELECT max(last_seen) AS s FROM devices').get() as { s: string | null };
    return r.s ?? '';
  }

  /** Changes whenever any device row does (a cheap poll for live views). */
  changeStamp(): string {
    const r = this.db.prepare('SELECT count(*) AS n, max(updated_at) AS u FROM devices').get() as {
      n: number;
      u: string | null;
    };
    return `${r.n}:${r.u ?? ''}`;
  }

  /**
   * Moves whenever a write that identity's reviews depend on commits, from any connection or process: devices
   * (not their last_seen), credentials, trust anchors and CRLs, rate limits, pull sources, segments, allow-lists,
   * controllers, fleet profiles (migration 25's triggers) — and not queue, audit or alert writes.
   */
  identityVersion(): number {
    return (this.db.prepare('SELECT version FROM identity_version WHERE id = 1').get() as { version: number })
      .version;
  }

  setFirmwareVersion(id: string, version: string, now: string): void {
    this.db
      .prepare('UPDATE devices SET firmware_version = ?, updated_at = ? WHERE id = ?')
      .run(version, now, id);
  }
}
