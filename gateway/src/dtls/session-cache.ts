import type { PeerCredential } from './types.ts';

/**
 * What an abbreviated handshake (RFC 5246 §7.3, RFC 6347) needs of an earlier session: its master secret, suite,
 * Extended Master Secret flag, and who authenticated, so that the resumed session is that same identity and
 * can be re-authorised (the device may have been decommissioned, isolated or revoked since).
 */
export interface CachedSession {
  master: Buffer;
  suiteId: number;
  extendedMasterSecret: boolean;
  credential: PeerCredential;
  /** SHA-256 of the PSK the session was made with: a rotated key must not resume the old session. */
  pskDigest: Buffer | null;
  /** The client's chain as sent (DER), re-verified (expiry, revocation) at every resumption. */
  chainDer: Buffer[] | null;
  expires: number;
}

export interface SessionCacheOptions {
  /** Sessions remembered; the oldest is forgotten first. */
  maxEntries: number;
  /** How long after its full handshake a session may be resumed. */
  lifetimeMs: number;
}

export const DEFAULT_SESSION_CACHE: SessionCacheOptions = { maxEntries: 10_000, lifetimeMs: 24 * 3600_000 };

/**
 * A bounded server-side session cache keyed by session ID (RFC 5246 §7.4.1.2). Chosen over session tickets
 * (RFC 5077): no ticket-encryption key exists that could leak or need wrapping, rotating and persisting, every
 * resumption is looked up (so it can be re-authorised and a session forgotten at once), and the cost is
 * bounded: about 200 bytes per entry, 2 MB at the default 10,000. See docs/dtls.md.
 */
export class SessionCache {
  private readonly entries = new Map<string, CachedSession>();

  constructor(
    private readonly o: SessionCacheOptions,
    private readonly now: () => number,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  /** Remembers a completed session. The master secret is copied: the handshake zeroes its own. */
  put(id: Buffer, s: Omit<CachedSession, 'expires'>): void {
    const key = id.toString('hex');
    this.entries.delete(key);
    while (this.entries.size >= this.o.maxEntries) {
      const oldest = this.entries.keys().next().value as string;
      this.forgetKey(oldest);
    }
    this.entries.set(key, { ...s, master: Buffer.from(s.master), expires: this.now() + this.o.lifetimeMs });
  }

  get(id: Buffer): CachedSession | undefined {
    if (id.length === 0) return undefined;
    const key = id.toString('hex');
    const s = this.entries.get(key);
    if (!s) return undefined;
    if (s.expires <= this.now()) {
      this.forgetKey(key);
      return undefined;
    }
    return s;
  }

  /** A session that ended in a fatal alert, or whose credential no longer authorises it, is not resumable. */
  forget(id: Buffer): void {
    this.forgetKey(id.toString('hex'));
  }

  private forgetKey(key: string): void {
    const s = this.entries.get(key);
    if (s) s.master.fill(0);
    this.entries.delete(key);
  }

  sweep(): void {
    const now = this.now();
    for (const [key, s] of this.entries) if (s.expires <= now) this.forgetKey(key);
  }

  clear(): void {
    for (const key of [...this.entries.keys()]) this.forgetKey(key);
  }
}
