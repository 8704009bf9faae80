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

/** The revocation list held for one trust anchor, and where the next one comes from. */
export interface TrustAnchorCrl {
  anchorName: string;
  /** DER; null while only a distribution URL is known. */
  crlDer: Buffer | null;
  thisUpdate: string | null;
  nextUpdate: string | null;
  /** cRLNumber as decimal, if the CRL has one. */
  crlNumber: string | null;
  revokedCount: number;
  url: string | null;
  refreshSeconds: number | null;
  updatedAt: string;
}

interface CrlRow {
  anchor_name: string;
  crl_der: Buffer | null;
  this_update: string | null;
  next_update: string | null;
  crl_number: string | null;
  revoked_count: number;
  url: string | null;
  refresh_seconds: number | null;
  updated_at: string;
}

function crlFromRow(r: CrlRow): TrustAnchorCrl {
  return {
    anchorName: r.anchor_name,
    crlDer: r.crl_der,
    thisUpdate: r.this_update,
    nextUpdate: r.next_update,
    crlNumber: r.crl_number,
    revokedCount: r.revoked_count,
    url: r.url,
    refreshSeconds: r.refresh_seconds,
    updatedAt: r.updated_at,
  };
}

/** Revocation lists per trust anchor (identity verifies them; this only keeps them). */
export class TrustAnchorCrlRepository {
  constructor(private readonly db: Db) {}

  get(anchorName: string): TrustAnchorCrl | undefined {
    const r = this.db.prepare('SELECT * FROM trust_anchor_crls WHERE anchor_name = ?').get(anchorName) as
      | CrlRow
      | undefined;
    return r ? crlFromRow(r) : undefined;
  }

  /** Every row without the CRL bytes (crlDer null; `hasCrl` says whether there is one): cheap to poll. */
  list(): (TrustAnchorCrl & { hasCrl: boolean })[] {
    return (
      this.db
        .prepare(
          `SELECT anchor_name, NULL AS crl_der, this_update, next_update, crl_number, revoked_count, url,
             refresh_seconds, updated_at, crl_der IS NOT NULL AS has_crl
           FROM trust_anchor_crls ORDER BY anchor_name`,
        )
        .all() as (CrlRow & { has_crl: number })[]
    ).map((r) => ({ ...crlFromRow(r), hasCrl: r.has_crl === 1 }));
  }

  /** Stores a (verified) CRL for the anchor, keeping its distribution URL. */
  putCrl(
    c: Pick<TrustAnchorCrl, 'anchorName' | 'thisUpdate' | 'nextUpdate' | 'crlNumber' | 'revokedCount'> & {
      crlDer: Buffer;
    },
    now: string,
  ): void {
    this.db
      .prepare(
        `INSERT INTO trust_anchor_crls
           (anchor_name, crl_der, this_update, next_update, crl_number, revoked_count, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (anchor_name) DO UPDATE SET crl_der = excluded.crl_der,
           this_update = excluded.this_update, next_update = excluded.next_update,
           crl_number = excluded.crl_number, revoked_count = excluded.revoked_count,
           updated_at = excluded.updated_at`,
      )
      .run(c.anchorName, c.crlDer, c.thisUpdate, c.nextUpdate, c.crlNumber, c.revokedCount, now);
  }

  /** Sets (or, with null, clears) where the gateway fetches the anchor's next CRL. */
  setDistribution(anchorName: string, url: string | null, refreshSeconds: number | null, now: string): void {
    this.db
      .prepare(
        `INSERT INTO trust_anchor_crls (anchor_name, url, refresh_seconds, updated_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (anchor_name) DO UPDATE SET url = excluded.url,
           refresh_seconds = excluded.refresh_seconds, updated_at = excluded.updated_at`,
      )
      .run(anchorName, url, refreshSeconds, now);
  }
}
