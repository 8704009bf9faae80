import ipaddr from 'ipaddr.js';

/**
 * The unit failed logins are counted by. One IPv4 address is one source: on a management LAN the technician's
 * laptop may share a /24 with a hostile host, and counting the /24 would let that host throttle the laptop.
 * IPv6 counts per /64, the block one host can give itself addresses from (SLAAC, privacy addresses); an
 * IPv4-mapped IPv6 address is its IPv4 address. Anything else (in-process requests) is taken as it is.
 */
export function sourceOf(address: string): string {
  if (!ipaddr.isValid(address)) return address;
  let a = ipaddr.parse(address);
  if (a.kind() === 'ipv6' && (a as ipaddr.IPv6).isIPv4MappedAddress()) a = (a as ipaddr.IPv6).toIPv4Address();
  if (a.kind() === 'ipv4') return a.toString();
  const parts = (a as ipaddr.IPv6).parts.slice(0, 4);
  return `${new ipaddr.IPv6([...parts, 0, 0, 0, 0]).toString()}/64`;
}

export interface SourcePolicy {
  /** Failures are remembered this long after a source's last one. */
  memoryMs: number;
  /** Failures a source may have before each further attempt waits (progressively longer). */
  freeFailures: number;
  /** Longest wait between attempts of a throttled source. */
  maxDelayMs: number;
  /** Sources remembered at most (oldest forgotten first). */
  maxSources: number;
}

export const DEFAULT_SOURCE_POLICY: SourcePolicy = {
  memoryMs: 15 * 60_000,
  freeFailures: 5,
  maxDelayMs: 15 * 60_000,
  maxSources: 10_000,
};

/**
 * Failed logins per source, in memory: a source that keeps failing waits 1 s, 2 s, 4 s … (at most
 * `maxDelayMs`) between attempts. Only the failing source waits; an account is never locked against everyone.
 * Forgotten at restart — the account's own failure count (in the store) is what outlives it.
 */
export class SourceFailures {
  private readonly sources = new Map<string, { failures: number; last: number }>();

  constructor(
    private readonly now: () => number,
    private readonly policy: SourcePolicy = DEFAULT_SOURCE_POLICY,
  ) {}

  /** Recent failures of `source` (0 once forgotten). */
  recent(source: string): number {
    const s = this.sources.get(source);
    if (!s) return 0;
    if (this.now() - s.last >= this.policy.memoryMs) {
      this.sources.delete(source);
      return 0;
    }
    return s.failures;
  }

  /** Milliseconds `source` must still wait before its next attempt; 0 when it may try now. */
  waitMs(source: string): number {
    const n = this.recent(source);
    if (n < this.policy.freeFailures) return 0;
    const s = this.sources.get(source) as { last: number };
    const delay = Math.min(1000 * 2 ** (n - this.policy.freeFailures), this.policy.maxDelayMs);
    return Math.max(0, s.last + delay - this.now());
  }

  fail(source: string): number {
    const n = this.recent(source) + 1;
    this.sources.delete(source); // re-inserted last: the map's order is least recently failed first
    if (this.sources.size >= this.policy.maxSources) {
      const oldest = this.sources.keys().next().value;
      if (oldest !== undefined) this.sources.delete(oldest);
    }
    this.sources.set(source, { failures: n, last: this.now() });
    return n;
  }

  get size(): number {
    return this.sources.size;
  }
}
