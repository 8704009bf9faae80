import type { Db } from '../database.ts';
import { StoreError } from '../database.ts';
import type { CredentialKind } from './devices.ts';

export interface Credential {
  id: number;
  deviceId: string;
  kind: CredentialKind;
  lookup: string;
  /** Encrypted under the keystore's data key; null once crypto-erased. */
  secretWrapped: Buffer | null;
  createdAt: string;
  revokedAt: string | null;
  /** A PSK shorter than 128 bits, admitted on explicit request (a legacy sensor's factory key). */
  weak: boolean;
}

interface CredentialRow {
  id: number;
  device_id: string;
  kind: CredentialKind;
  lookup: string;
  secret_wrapped: Buffer | null;
  created_at: string;
  revoked_at: string | null;
  weak: number;
}

function toCredential(r: CredentialRow): Credential {
  return {
    id: r.id,
    deviceId: r.device_id,
    kind: r.kind,
    lookup: r.lookup,
    secretWrapped: r.secret_wrapped,
    createdAt: r.created_at,
    revokedAt: r.revoked_at,
    weak: r.weak === 1,
  };
}

export class CredentialRepository {
  constructor(private readonly db: Db) {}

  insert(
    c: {
      deviceId: string;
      kind: CredentialKind;
      lookup: string;
      secretWrapped?: Buffer | null;
      weak?: boolean;
    },
    now: string,
  ): Credential {
    try {
      const r = this.db
        .prepare(
          `INSERT INTO credentials (device_id, kind, lookup, secret_wrapped, created_at, weak)
           VALUES (?, ?, ?, ?, ?, ?)`,
        )
        .run(c.deviceId, c.kind, c.lookup, c.secretWrapped ?? null, now, c.weak ? 1 : 0);
      return this.byId(Number(r.lastInsertRowid))!;
    } catch (err) {
      if ((err as { code?: string }).code === 'SQLITE_CONSTRAINT_UNIQUE') {
        // The lookup (a PSK identity or fingerprint) is not secret, but keep the message generic anyway.
        throw new StoreError(
          'ERR_STORE_CONFLICT',
          `a ${c.kind} credential with that identity already exists`,
        );
      }
      throw err;
    }
  }

  private byId(id: number): Credential | undefined {
    const row = this.db.prepare('SELECT * FROM credentials WHERE id = ?').get(id) as
      | CredentialRow
      | undefined;
    return row && toCredential(row);
  }

  /** Only unrevoked credentials authenticate. */
  findActive(kind: CredentialKind, lookup: string): Credential | undefined {
    const row = this.db
      .prepare('SELECT * FROM credentials WHERE kind = ? AND lookup = ? AND revoked_at IS NULL')
      .get(kind, lookup) as CredentialRow | undefined;
    return row && toCredential(row);
  }

  /** The newest credential with this lookup, revoked or not: whose it was (attributing failed handshakes). */
  findLatest(kind: CredentialKind, lookup: string): Credential | undefined {
    const row = this.db
      .prepare('SELECT * FROM credentials WHERE kind = ? AND lookup = ? ORDER BY id DESC LIMIT 1')
      .get(kind, lookup) as CredentialRow | undefined;
    return row && toCredential(row);
  }

  listForDevice(deviceId: string): Credential[] {
    return (
      this.db
        .prepare('SELECT * FROM credentials WHERE device_id = ? ORDER BY id')
        .all(deviceId) as CredentialRow[]
    ).map(toCredential);
  }

  /** Unrevoked weak PSKs and their devices (the compliance report names them). */
  listActiveWeak(): { deviceId: string; lookup: string }[] {
    return (
      this.db
        .prepare(
          'SELECT device_id, lookup FROM credentials WHERE weak = 1 AND revoked_at IS NULL ORDER BY device_id',
        )
        .all() as { device_id: string; lookup: string }[]
    ).map((r) => ({ deviceId: r.device_id, lookup: r.lookup }));
  }

  /** Revoke and crypto-erase: the wrapped secret is overwritten with NULL, not just flagged. */
  revokeAndEraseForDevice(deviceId: string, now: string): number {
    return this.db
      .prepare(
        'UPDATE credentials SET revoked_at = COALESCE(revoked_at, ?), secret_wrapped = NULL WHERE device_id = ?',
      )
      .run(now, deviceId).changes;
  }
}
