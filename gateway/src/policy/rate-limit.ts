import type { RateLimit } from '../store/index.ts';

/**
 * Token buckets for devices under an automatic rate limit (anomaly response). The limits come from the store
 * (`refresh`), so a limit set or lifted by another process applies here too; expired limits drop out.
 */
export class RateLimiter {
  private limits = new Map<string, { perSecond: number; until: number }>();
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(private readonly now: () => number) {}

  refresh(active: readonly RateLimit[]): void {
    this.limits = new Map(
      active.map((l) => [l.deviceId, { perSecond: l.perSecond, until: Date.parse(l.until) }]),
    );
    for (const id of this.buckets.keys()) if (!this.limits.has(id)) this.buckets.delete(id);
  }

  /** Whether one more message from the device fits its limit now (always, for devices without one). */
  admit(deviceId: string): boolean {
    const limit = this.limits.get(deviceId);
    const now = this.now();
    if (!limit || now >= limit.until) return true;
    const b = this.buckets.get(deviceId) ?? { tokens: limit.perSecond, at: now };
    b.tokens = Math.min(limit.perSecond, b.tokens + ((now - b.at) / 1000) * limit.perSecond);
    b.at = now;
    this.buckets.set(deviceId, b);
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }
}
