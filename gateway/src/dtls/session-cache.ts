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
 * Where one remembered session sits in a slab. From `at`: a header (HEADER), then the session ID, master secret,
 * PSK digest and PSK identity. The lengths and the expiry are in the slab rather than fields here: an object of
 * ten fields and its boxed expiry were ~0.06 KiB an entry more (issue 23).
 */
interface Slot {
  slab: Buffer;
  at: number;
  /** The suite's ID, plus EMS_FLAG when the session used the Extended Master Secret. */
  suite: number;
  /** What is not bytes: a certificate or raw-public-key session's credential, a certificate chain. */
  other: { credential: PeerCredential | null; chainDer: Buffer[] | null } | null;
}

/**
 * A slot's header, by offset from `at`: the master secret's length (u8), the PSK digest's (u8), the PSK
 * identity's (u16; NOT_PSK when the credential is another kind), the expiry in `now()`'s milliseconds (float64).
 */
const MASTER_LENGTH = 0;
const DIGEST_LENGTH = 1;
const IDENTITY_LENGTH = 2;
const EXPIRES = 4;
const HEADER = 12;
const NOT_PSK = 0xffff;
const EMS_FLAG = 0x10000;

function expiry(s: Slot): number {
  return s.slab.readDoubleBE(s.at + EXPIRES);
}

/** The session IDs this cache issues (RFC 5246 allows up to 32 bytes). */
const ID_LENGTH = 32;

/** Where the secrets of the slot at `at` start: the master secret, then the PSK digest. */
function secretsAt(at: number): number {
  return at + HEADER + ID_LENGTH;
}

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
 * bounded: about 250 bytes per entry, 2.5 MB at the default 10,000 (measured). See docs/dtls.md.
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
    // The header's widths (a 48-byte master secret, a SHA-256 digest, a PSK identity of at most 256 bytes fit
    // them); anything else is not remembered rather than read back wrong.
    if (s.master.length > 0xff || digestLength > 0xff || (identity && identity.length >= NOT_PSK)) return;
    const need = HEADER + ID_LENGTH + s.master.length + digestLength + (identity ? identity.length : 0);
    let slab = this.slab;
    if (!slab || this.slabUsed + need > slab.length) {
      slab = Buffer.allocUnsafeSlow(Math.max(SLAB_SIZE, need));
      this.slab = slab;
      this.slabUsed = 0;
    }
    const at = this.slabUsed;
    slab[at + MASTER_LENGTH] = s.master.length;
    slab[at + DIGEST_LENGTH] = digestLength;
    slab.writeUInt16BE(identity ? identity.length : NOT_PSK, at + IDENTITY_LENGTH);
    slab.writeDoubleBE(this.now() + this.o.lifetimeMs, at + EXPIRES);
    id.copy(slab, at + HEADER);
    const masterAt = secretsAt(at);
    s.master.copy(slab, masterAt);
    if (s.pskDigest) s.pskDigest.copy(slab, masterAt + s.master.length);
    if (identity) identity.copy(slab, masterAt + s.master.length + digestLength);
    this.slabUsed = at + need;
    this.entries.set(key, {
      slab,
      at,
      suite: s.suiteId + (s.extendedMasterSecret ? EMS_FLAG : 0),
      other: identity && !s.chainDer ? null : { credential: identity ? null : c, chainDer: s.chainDer },
    });
    this.order.push(key);
    // Forgotten keys (expired on lookup, fatal alerts) wait in `order` until eviction or a sweep passes them.
    if (this.order.length - this.head > 2 * this.o.maxEntries) this.sweep();
  }

  /** The entry for this exact ID, or undefined. */
  private find(id: Buffer): Slot | undefined {
    const s = this.entries.get(keyOf(id));
    if (!s) return undefined;
    // Session IDs are public (they travel in clear): a plain comparison.
    const idAt = s.at + HEADER;
    return s.slab.compare(id, 0, ID_LENGTH, idAt, idAt + ID_LENGTH) === 0 ? s : undefined;
  }

  /**
   * The session, if remembered and not expired. Its master secret and PSK digest are views of the cache's
   * memory, zeroed when the entry goes: copy what must outlive the handshake. A PSK identity comes as a copy
   * of its own, as the resumed session keeps it for its lifetime.
   */
  get(id: Buffer): CachedSession | undefined {
    const s = this.find(id);
    if (!s) return undefined;
    const expires = expiry(s);
    if (expires <= this.now()) {
      this.forgetKey(keyOf(id));
      return undefined;
    }
    const { slab, at } = s;
    const identityLength = slab.readUInt16BE(at + IDENTITY_LENGTH);
    const masterAt = secretsAt(at);
    const digestAt = masterAt + (slab[at + MASTER_LENGTH] as number);
    const identityAt = digestAt + (slab[at + DIGEST_LENGTH] as number);
    return {
      master: slab.subarray(masterAt, digestAt),
      suiteId: s.suite & 0xffff,
      extendedMasterSecret: s.suite >= EMS_FLAG,
      credential:
        identityLength !== NOT_PSK
          ? { kind: 'psk', identity: Buffer.from(slab.subarray(identityAt, identityAt + identityLength)) }
          : (s.other?.credential as PeerCredential),
      pskDigest: identityAt > digestAt ? slab.subarray(digestAt, identityAt) : null,
      chainDer: s.other?.chainDer ?? null,
      expires,
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
    const from = secretsAt(s.at);
    const secretsLength = (s.slab[s.at + MASTER_LENGTH] as number) + (s.slab[s.at + DIGEST_LENGTH] as number);
    s.slab.fill(0, from, from + secretsLength);
    this.entries.delete(key);
  }

  /** Forgets expired sessions, and the keys of forgotten ones that `order` still lists (bounding it). */
  sweep(): void {
    const now = this.now();
    for (const [key, s] of this.entries) if (expiry(s) <= now) this.forgetKey(key);
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
