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

/** Where one remembered session's bytes sit in a slab: session ID, master secret, PSK digest, PSK identity. */
interface Slot {
  slab: Buffer;
  /** Where the session ID starts; the master secret follows it. */
  at: number;
  masterLength: number;
  digestLength: number;
  /** -1: the credential is not a PSK one (kept in `credential`). */
  identityLength: number;
  suiteId: number;
  extendedMasterSecret: boolean;
  credential: PeerCredential | null;
  chainDer: Buffer[] | null;
  expires: number;
}

/** The session IDs this cache issues (RFC 5246 allows up to 32 bytes). */
const ID_LENGTH = 32;

/**
 * Entries' bytes are carved from slabs of this size in insertion order. Eviction is oldest first, so a slab
 * is freed once eviction (or expiry) has passed all of its entries: at most one slab beyond what the live
 * entries fill. What leaves the cache for longer (a resumed session's PSK identity) is copied out.
 */
const SLAB_SIZE = 16 * 1024;

/**
 * The table key of a session ID: its first 30 bits, a small integer (V8 hashes it without allocating, where a
 * string key cost a string per put and a hash of it per lookup). IDs come from newId, which keeps the keys of
 * remembered sessions distinct; the whole ID is compared on lookup. -1 for an ID this cache cannot have issued.
 */
function keyOf(id: Buffer): number {
  return id.length === ID_LENGTH ? id.readUInt32BE(0) >>> 2 : -1;
}

/**
 * A bounded server-side session cache keyed by session ID (RFC 5246 §7.4.1.2). Chosen over session tickets
 * (RFC 5077): no ticket-encryption key exists that could leak or need wrapping, rotating and persisting, every
 * resumption is looked up (so it can be re-authorised and a session forgotten at once), and the cost is
 * bounded: about 320 bytes per entry, 3 MB at the default 10,000 (measured). See docs/dtls.md.
 *
 * A put runs on every full handshake, so it allocates one small object and no Buffer or string: the bytes
 * are copied into a shared slab (a Buffer per entry — an ArrayBuffer the GC tracks — was most of a put's
 * cost) and the table is keyed by a number taken from the ID.
 */
export class SessionCache {
  private readonly entries = new Map<number, Slot>();
  /**
   * Keys in insertion order, oldest at `head`: evicting through `entries.keys().next()` would walk V8's
   * hash-table holes left by earlier deletions — 7 µs per handshake at 10,000 entries, measured.
   */
  private order: number[] = [];
  private head = 0;
  private slab: Buffer | null = null;
  private slabUsed = 0;

  constructor(
    private readonly o: SessionCacheOptions,
    private readonly now: () => number,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  /**
   * A new session ID for a ServerHello: random, and its key not that of a remembered session (so a later put
   * replaces none). Two handshakes in flight could still draw the same key, about one in 10^8; the later
   * put then replaces the earlier session, which loses only its resumability.
   */
  newId(random: (length: number) => Buffer): Buffer {
    for (;;) {
      const id = random(ID_LENGTH);
      if (!this.entries.has(keyOf(id))) return id;
    }
  }

  /** Remembers a completed session. The secrets are copied: the handshake zeroes its own. */
  put(id: Buffer, s: Omit<CachedSession, 'expires'>): void {
    const key = keyOf(id);
    if (key < 0) return; // not an ID this cache issued: nothing could find it
    this.forgetKey(key);
    while (this.entries.size >= this.o.maxEntries && this.head < this.order.length) {
      this.forgetKey(this.order[this.head++] as number); // a key forgotten earlier is skipped
    }
    if (this.head > 1024 && this.head * 2 > this.order.length) {
      this.order = this.order.slice(this.head);
      this.head = 0;
    }
    const c = s.credential;
    const identity = c.kind === 'psk' ? c.identity : null;
    const digestLength = s.pskDigest ? s.pskDigest.length : 0;
    const need = ID_LENGTH + s.master.length + digestLength + (identity ? identity.length : 0);
    let slab = this.slab;
    if (!slab || this.slabUsed + need > slab.length) {
      slab = Buffer.allocUnsafeSlow(Math.max(SLAB_SIZE, need));
      this.slab = slab;
      this.slabUsed = 0;
    }
    const at = this.slabUsed;
    id.copy(slab, at);
    const masterAt = at + ID_LENGTH;
    s.master.copy(slab, masterAt);
    if (s.pskDigest) s.pskDigest.copy(slab, masterAt + s.master.length);
    if (identity) identity.copy(slab, masterAt + s.master.length + digestLength);
    this.slabUsed = at + need;
    this.entries.set(key, {
      slab,
      at,
      masterLength: s.master.length,
      digestLength,
      identityLength: identity ? identity.length : -1,
      suiteId: s.suiteId,
      extendedMasterSecret: s.extendedMasterSecret,
      credential: identity ? null : c,
      chainDer: s.chainDer,
      expires: this.now() + this.o.lifetimeMs,
    });
    this.order.push(key);
    // Forgotten keys (expired on lookup, fatal alerts) wait in `order` until eviction or a sweep passes them.
    if (this.order.length - this.head > 2 * this.o.maxEntries) this.sweep();
  }

  /** The entry for this exact ID, or undefined. */
  private find(id: Buffer): Slot | undefined {
    const s = this.entries.get(keyOf(id));
    // Session IDs are public (they travel in clear): a plain comparison.
    return s && s.slab.compare(id, 0, ID_LENGTH, s.at, s.at + ID_LENGTH) === 0 ? s : undefined;
  }

  /**
   * The session, if remembered and not expired. Its master secret and PSK digest are views of the cache's
   * memory, zeroed when the entry goes: copy what must outlive the handshake. A PSK identity comes as a copy
   * of its own, as the resumed session keeps it for its lifetime.
   */
  get(id: Buffer): CachedSession | undefined {
    const s = this.find(id);
    if (!s) return undefined;
    if (s.expires <= this.now()) {
      this.forgetKey(keyOf(id));
      return undefined;
    }
    const masterAt = s.at + ID_LENGTH;
    const digestAt = masterAt + s.masterLength;
    const identityAt = digestAt + s.digestLength;
    return {
      master: s.slab.subarray(masterAt, digestAt),
      suiteId: s.suiteId,
      extendedMasterSecret: s.extendedMasterSecret,
      credential:
        s.identityLength >= 0
          ? { kind: 'psk', identity: Buffer.from(s.slab.subarray(identityAt, identityAt + s.identityLength)) }
          : (s.credential as PeerCredential),
      pskDigest: s.digestLength > 0 ? s.slab.subarray(digestAt, identityAt) : null,
      chainDer: s.chainDer,
      expires: s.expires,
    };
  }

  /** A session that ended in a fatal alert, or whose credential no longer authorises it, is not resumable. */
  forget(id: Buffer): void {
    if (this.find(id)) this.forgetKey(keyOf(id));
  }

  private forgetKey(key: number): void {
    const s = this.entries.get(key);
    if (!s) return;
    // The master secret and the digest of the PSK: zeroed in place, as the slab may live on.
    const masterAt = s.at + ID_LENGTH;
    s.slab.fill(0, masterAt, masterAt + s.masterLength + s.digestLength);
    this.entries.delete(key);
  }

  /** Forgets expired sessions, and the keys of forgotten ones that `order` still lists (bounding it). */
  sweep(): void {
    const now = this.now();
    for (const [key, s] of this.entries) if (s.expires <= now) this.forgetKey(key);
    // The map keeps insertion order, and a re-put deletes first: its keys are `order` without the stale ones.
    this.order = [...this.entries.keys()];
    this.head = 0;
  }

  clear(): void {
    for (const key of [...this.entries.keys()]) this.forgetKey(key);
    this.order = [];
    this.head = 0;
    this.slab = null;
    this.slabUsed = 0;
  }
}
