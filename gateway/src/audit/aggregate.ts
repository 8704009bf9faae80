import type { Clock } from '../clock.ts';
import type { NewAuditEntry } from './audit-log.ts';

/** What one aggregated entry is about: the same action, actor, target and fixed details fold together. */
export interface AggregateKey {
  action: string;
  actor: string;
  target: string | null;
  /** Written as they are; part of the key (a source address, an identity). */
  fixed: Record<string, string | number | null>;
}

export interface AggregatorOptions {
  /** A key's window opens at its first event and its entry is written when the window ends. */
  windowMs: number;
  /** Open keys at most; beyond, events fold into the caller's overflow key (see `record`). */
  maxKeys: number;
  /** Distinct values kept per tally (e.g. per error code); the rest are counted under `other`. */
  maxTallyValues: number;
  /** Failures to write (a closed store) go here; the aggregator never throws into the caller. */
  onError?: (err: unknown) => void;
}

interface Bucket {
  key: AggregateKey;
  first: number;
  count: number;
  last: number;
  tallies: Map<string, Map<string, number>>;
}

/**
 * Audit entries for events an attacker can repeat at will (failed logins, failed sensor handshakes): one entry
 * per key per window with a count, so the audit log grows with the number of distinct sources and identities
 * tried per minute, bounded by `maxKeys`, never with the number of attempts. The entry is written when the
 * window ends (a timer that runs only while something is pending), or at `close`.
 */
export class AuditAggregator {
  private readonly buckets = new Map<string, Bucket>();
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    private readonly append: (e: NewAuditEntry) => unknown,
    private readonly clock: Clock,
    private readonly options: AggregatorOptions,
  ) {}

  /**
   * Counts one event under `key`, and `tally` values (field → value) in its entry. When `maxKeys` keys are
   * already open, the event goes to `overflow` instead (always admitted: one more key at most per overflow).
   */
  record(key: AggregateKey, tally: Record<string, string | undefined> = {}, overflow?: AggregateKey): void {
    if (this.closed) return;
    const now = this.clock.now();
    this.flushDue(now);
    let id = keyId(key);
    let b = this.buckets.get(id);
    if (!b && this.buckets.size >= this.options.maxKeys && overflow) {
      id = keyId(overflow);
      b = this.buckets.get(id);
      key = overflow;
    }
    if (!b) {
      b = { key, first: now, last: now, count: 0, tallies: new Map() };
      this.buckets.set(id, b);
    }
    b.count++;
    b.last = now;
    for (const [field, value] of Object.entries(tally)) {
      if (value === undefined) continue;
      let t = b.tallies.get(field);
      if (!t) {
        t = new Map();
        b.tallies.set(field, t);
      }
      const v = t.has(value) || t.size < this.options.maxTallyValues ? value : 'other';
      t.set(v, (t.get(v) ?? 0) + 1);
    }
    this.arm();
  }

  /** How many keys are open (tests, and the caller's own caps). */
  get openKeys(): number {
    return this.buckets.size;
  }

  /** Writes every entry whose window has ended by `now`. */
  flushDue(now = this.clock.now()): void {
    for (const [id, b] of this.buckets) {
      if (now - b.first >= this.options.windowMs) this.write(id, b);
    }
    if (this.buckets.size === 0) this.disarm();
  }

  /** Writes everything pending, whatever its window (at stop). Later events are ignored. */
  close(): void {
    for (const [id, b] of this.buckets) this.write(id, b);
    this.closed = true;
    this.disarm();
  }

  private write(id: string, b: Bucket): void {
    this.buckets.delete(id);
    // Lists, not objects keyed by value: a value (a user name such as "token") must never become a field name
    // that the audit log's secret-field check refuses.
    const tallies: Record<string, { value: string; count: number }[]> = {};
    for (const [field, t] of b.tallies) tallies[field] = [...t].map(([value, count]) => ({ value, count }));
    try {
      this.append({
        actor: b.key.actor,
        action: b.key.action,
        target: b.key.target,
        details: {
          ...b.key.fixed,
          count: b.count,
          first: new Date(b.first).toISOString(),
          last: new Date(b.last).toISOString(),
          windowSeconds: Math.round(this.options.windowMs / 1000),
          ...tallies,
        },
      });
    } catch (err) {
      this.options.onError?.(err);
    }
  }

  private arm(): void {
    if (this.timer) return;
    // Real time drives the check, the injected clock decides what is due (tests move it by hand).
    this.timer = setInterval(() => this.flushDue(), Math.min(this.options.windowMs, 5000));
    this.timer.unref();
  }

  private disarm(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}

function keyId(k: AggregateKey): string {
  return JSON.stringify([k.action, k.actor, k.target, k.fixed]);
}
