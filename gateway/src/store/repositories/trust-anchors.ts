import type { Db } from '../database.ts';
import { StoreError } from '../database.ts';

export interface TrustAnchor {
  name: string;
  certificatePem: string;
  fingerprint: string;
  createdAt: string;
}

interface Row {
  name: string;
  certificate_pem: string;
  fingerprint: string;
  created_at: string;
}

export class TrustAnchorRepository {
  constructor(private readonly db: Db) {}

  insert(a: TrustAnchor): void {
    try {
      this.db
        .prepare(
          'INSERT INTO trust_anchors (name, certificate_pem, fingerprint, created_at) VALUES (?, ?, ?, ?)',
        )
        .run(a.name, a.certificatePem, a.fingerprint, a.createdAt);
    } catch (err) {
      if (String((err as { code?: string }).code).startsWith('SQLITE_CONSTRAINT')) {
        throw new StoreError(
          'ERR_STORE_CONFLICT',
          `trust anchor ${a.name} (or that certificate) already exists`,
        );
      }
      throw err;
    }
  }

  list(): TrustAnchor[] {
    return (this.db.prepare('SELECT * FROM trust_anchors ORDER BY name').all() as Row[]).map((r) => ({
      name: r.name,
      certificatePem: r.certificate_pem,
      fingerprint: r.fingerprint,
      createdAt: r.created_at,
    }));
  }
}
