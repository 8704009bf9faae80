/**
 * Credential guessing against the sensor side, by source and by identity: a fixed rule beside the detector's
 * learned one. The detector scores failures per device against that device's baseline, which needs a device
 * (an unknown identity or an untrusted certificate has none) and a finished learning period (a day by
 * default); this rule needs neither, and nothing an attacker does can teach it a higher threshold.
 */

export interface AuthWatchOptions {
  windowMs: number;
  /** Failures per window from one source, or on one identity, that are a brute force. */
  threshold: number;
  /** Keys counted at most per window; the rest are counted together under `*`. */
  maxKeys: number;
}

export const DEFAULT_AUTH_WATCH: AuthWatchOptions = { windowMs: 60_000, threshold: 20, maxKeys: 4096 };

export interface AuthFailureEvent {
  ts: number;
  /** The source address (or prefix) the failure came from. */
  source: string;
  /** The identity it claimed (PSK identity, certificate or key fingerprint), if it got that far. */
  identity?: string;
  /** The device that identity belongs to, if any. */
  deviceId?: string;
}

export interface BruteForce {
  by: 'source' | 'identity';
  key: string;
  failures: number;
  windowStart: number;
  /** Other side of the count: identities tried from the source, or sources that tried the identity (≤ 5). */
  examples: string[];
  distinct: number;
  deviceId: string | null;
}

interface Counter {
  start: number;
  n: number;
  seen: Set<string>;
  deviceId: string | null;
}

const MAX_EXAMPLES = 5;
const MAX_SEEN = 64;

/** Counts failures per source and per identity in windows that open at a key's first failure. */
export class AuthWatch {
  private readonly counters = new Map<string, Counter>();

  constructor(private readonly options: AuthWatchOptions = DEFAULT_AUTH_WATCH) {}

  /** Returns the brute forces this failure completed (each key reports once per window, at the threshold). */
  observe(e: AuthFailureEvent): BruteForce[] {
    const out: BruteForce[] = [];
    const src = this.count('source', e.source, e.identity, e);
    if (src) out.push(src);
    if (e.identity !== undefined) {
      const id = this.count('identity', e.identity, e.source, e);
      if (id) out.push(id);
    }
    return out;
  }

  get size(): number {
    return this.counters.size;
  }

  private count(
    by: BruteForce['by'],
    key: string,
    other: string | undefined,
    e: AuthFailureEvent,
  ): BruteForce | undefined {
    let id = `${by}:${key}`;
    let c = this.live(id, e.ts);
    if (!c && this.counters.size >= this.options.maxKeys) {
      this.expire(e.ts);
      if (this.counters.size >= this.options.maxKeys) {
        // Full: the rest of this window counts together (one key per side beyond the cap, at most).
        key = '*';
        id = `${by}:*`;
        c = this.live(id, e.ts);
      }
    }
    if (!c) {
      c = { start: e.ts, n: 0, seen: new Set(), deviceId: null };
      this.counters.set(id, c);
    }
    c.n++;
    if (other !== undefined && c.seen.size < MAX_SEEN) c.seen.add(other);
    if (e.deviceId) c.deviceId ??= e.deviceId;
    if (c.n !== this.options.threshold) return undefined;
    return {
      by,
      key,
      failures: c.n,
      windowStart: c.start,
      examples: [...c.seen].slice(0, MAX_EXAMPLES),
      distinct: c.seen.size,
      deviceId: by === 'identity' ? c.deviceId : c.seen.size === 1 ? c.deviceId : null,
    };
  }

  private live(id: string, now: number): Counter | undefined {
    const c = this.counters.get(id);
    if (c && now - c.start >= this.options.windowMs) {
      this.counters.delete(id);
      return undefined;
    }
    return c;
  }

  private expire(now: number): void {
    for (const [id, c] of this.counters) if (now - c.start >= this.options.windowMs) this.counters.delete(id);
  }
}
