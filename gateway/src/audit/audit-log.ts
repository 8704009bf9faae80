import type { Clock } from '../clock.ts';
import { isoTime } from '../clock.ts';
import { PortcullisError } from '../errors.ts';
import type { AuditRow, Store } from '../store/index.ts';
import { type AuditContent, entryHash, GENESIS_HASH } from './chain.ts';

export class AuditError extends PortcullisError {
  constructor(
    code: 'ERR_AUDIT_SECRET_FIELD' | 'ERR_AUDIT_INVALID_ENTRY' | 'ERR_AUDIT_DATA',
    message: string,
  ) {
    super(code, message);
  }
}

export interface AuditEntry extends AuditContent {
  prevHash: string;
  hash: string;
}

export interface NewAuditEntry {
  /** Who did it: `user:alice`, `cli:root`, `system`, `flow-token:<id>`, `anomaly-engine`. */
  actor: string;
  /** Dotted verb, e.g. `device.quarantine`. */
  action: string;
  target?: string | null;
  details?: Record<string, unknown>;
}

export type VerifyResult =
  | { ok: true; entries: number; headSeq: number }
  | { ok: false; entries: number; firstBadSeq: number; reason: string };

/** Field names that would carry secrets. Audit entries are exported to SIEMs: a secret there is a leak. */
const SECRET_KEY =
  /^(psk|secret|password|passphrase|private_?key|token|totp|otp|setup_?code|key_?material)$/i;

function findSecretField(value: unknown, path: string): string | undefined {
  if (value === null || typeof value !== 'object') return undefined;
  for (const [k, v] of Object.entries(value)) {
    if (SECRET_KEY.test(k)) return path ? `${path}.${k}` : k;
    const nested = findSecretField(v, path ? `${path}.${k}` : k);
    if (nested) return nested;
  }
  return undefined;
}

export function rowToEntry(row: AuditRow): AuditEntry {
  return {
    seq: row.seq,
    ts: row.ts,
    actor: row.actor,
    action: row.action,
    target: row.target,
    details: JSON.parse(row.details) as Record<string, unknown>,
    prevHash: row.prev_hash,
    hash: row.hash,
  };
}

/** Append-only, hash-chained audit log. */
export class AuditLog {
  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
  ) {}

  append(entry: NewAuditEntry): AuditEntry {
    if (!entry.actor || !entry.action) {
      throw new AuditError('ERR_AUDIT_INVALID_ENTRY', 'audit entry needs an actor and an action');
    }
    const details = entry.details ?? {};
    const secret = findSecretField(details, '');
    if (secret) {
      throw new AuditError(
        'ERR_AUDIT_SECRET_FIELD',
        `audit entry ${entry.action}: field "${secret}" looks like a secret and is refused`,
      );
    }
    const repo = this.store.audit;
    return this.store.transaction(() => {
      const head = repo.head();
      const content: AuditContent = {
        seq: (head?.seq ?? 0) + 1,
        ts: isoTime(this.clock),
        actor: entry.actor,
        action: entry.action,
        target: entry.target ?? null,
        details,
      };
      const prevHash = head?.hash ?? GENESIS_HASH;
      const hash = entryHash(content, prevHash);
      repo.insert({ ...content, details: JSON.stringify(details), prev_hash: prevHash, hash });
      return { ...content, prevHash, hash };
    });
  }

  *entries(fromSeq = 1): Generator<AuditEntry> {
    for (const row of this.store.audit.iterate(fromSeq)) yield rowToEntry(row);
  }

  /**
   * Walk the whole chain. Reports the first sequence number at which the log stops being what was written:
   * an edited entry (its hash no longer matches), a deleted one (a gap, or a head past the last entry), or a
   * reordered one (the sequence number is hashed, so a moved entry fails where it now stands).
   */
  verify(): VerifyResult {
    let expectedSeq = 1;
    let prevHash = GENESIS_HASH;
    let count = 0;
    const fail = (firstBadSeq: number, reason: string): VerifyResult => ({
      ok: false,
      entries: count,
      firstBadSeq,
      reason,
    });
    for (const row of this.store.audit.iterate()) {
      count++;
      if (row.seq !== expectedSeq)
        return fail(expectedSeq, `entry ${expectedSeq} is missing (next present is ${row.seq})`);
      if (row.prev_hash !== prevHash) return fail(row.seq, 'link to the previous entry is broken');
      let details: Record<string, unknown>;
      try {
        details = JSON.parse(row.details) as Record<string, unknown>;
      } catch {
        return fail(row.seq, 'details are not valid JSON');
      }
      const content: AuditContent = {
        seq: row.seq,
        ts: row.ts,
        actor: row.actor,
        action: row.action,
        target: row.target,
        details,
      };
      if (entryHash(content, row.prev_hash) !== row.hash)
        return fail(row.seq, 'content does not match its hash');
      prevHash = row.hash;
      expectedSeq++;
    }
    const head = this.store.audit.head();
    const lastSeq = expectedSeq - 1;
    if ((head?.seq ?? 0) !== lastSeq || (head && head.hash !== prevHash)) {
      return fail(lastSeq + 1, `log ends at entry ${lastSeq} but its head records entry ${head?.seq ?? 0}`);
    }
    return { ok: true, entries: count, headSeq: lastSeq };
  }
}
