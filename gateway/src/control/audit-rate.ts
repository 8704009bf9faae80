/**
 * What one flow token may write to the audit log: entries and bytes, each a token bucket. A flow audits its
 * decisions, not every message; the byte budget bounds what a compromised flow can add to the append-only log
 * (which nothing may delete) at ~88 MB a day per token at the very worst, instead of the disk.
 */
export const AUDIT_WRITE_LIMITS = {
  /** Entries at once, and entries a second after that. */
  entriesBurst: 20,
  entriesPerSecond: 2,
  /** Bytes of `details` (JSON) at once, and a second after that. */
  bytesBurst: 64 * 1024,
  bytesPerSecond: 1024,
} as const;

interface Bucket {
  entries: number;
  bytes: number;
  at: number;
}

export type AuditRateDecision = { ok: true } | { ok: false; retryAfterSeconds: number; why: string };

/** Per-token buckets; `now` comes from the gateway's Clock so tests need no sleeps. */
export class AuditWriteLimiter {
  private readonly buckets = new Map<string, Bucket>();

  constructor(private readonly limits = AUDIT_WRITE_LIMITS) {}

  /** Takes one entry of `bytes` from the token's buckets, or says how long until it would fit. */
  take(token: string, bytes: number, now: number): AuditRateDecision {
    const l = this.limits;
    const b = this.buckets.get(token) ?? { entries: l.entriesBurst, bytes: l.bytesBurst, at: now };
    const elapsed = Math.max(0, now - b.at) / 1000;
    b.entries = Math.min(l.entriesBurst, b.entries + elapsed * l.entriesPerSecond);
    b.bytes = Math.min(l.bytesBurst, b.bytes + elapsed * l.bytesPerSecond);
    b.at = now;
    this.buckets.set(token, b);
    const entryWait = b.entries >= 1 ? 0 : (1 - b.entries) / l.entriesPerSecond;
    const byteWait = b.bytes >= bytes ? 0 : (bytes - b.bytes) / l.bytesPerSecond;
    if (entryWait > 0 || byteWait > 0) {
      return {
        ok: false,
        retryAfterSeconds: Math.max(1, Math.ceil(Math.max(entryWait, byteWait))),
        why:
          byteWait > entryWait
            ? `more than ${l.bytesPerSecond} bytes of audit details a second`
            : `more than ${l.entriesPerSecond} audit entries a second`,
      };
    }
    b.entries -= 1;
    b.bytes -= bytes;
    return { ok: true };
  }
}
