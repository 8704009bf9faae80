import type { SessionDevice } from '../store/index.ts';

/** Beyond this many credentials the cache starts over (a bound, not an eviction policy: it holds every device). */
const MAX_ENTRIES = 200_000;
/** How long another connection's or process's identity write may go unseen (identity_version is read again). */
const RECHECK_MS = 1;

/**
 * The device behind each authenticated credential, kept while the identity tables are unchanged (issue 23). Every
 * reading used to read its device with a join and build a fresh Device, which outlived the reading's queue commit
 * and so was promoted into V8's old space: at 10,000 sensors the largest share of what a reading left behind.
 *
 * A write of this connection's drops the cache at once (`invalidate`, from the store's TEMP triggers): a device
 * this process quarantines is refused from its next reading on. Another process's (the CLI's) shows in
 * `identityVersion` (migration 25's triggers), read again when RECHECK_MS has passed — not per reading, which cost
 * 5 % of the main thread's samples at ~12,000 messages/s — and handed in by whoever reads it meanwhile (`observe`:
 * the session review must not judge a session on a device from before the version it saw). Without the hook
 * (`onWrite` false) it is read every time.
 *
 * What those triggers leave out — `firstSeen`, `lastSeen`, `firmwareVersion`, `updatedAt` — the cached devices do
 * not hold at all (SessionDevice): callers on the data path read identity, state and policy. The objects are frozen, since every
 * caller shares one. Inside a transaction, which may yet roll back, nothing is kept or answered from the cache. A
 * credential without a device is not kept (it stays a lookup each time, and unbounded keys cannot grow the map).
 */
export class DeviceCache {
  private readonly byCredential = new Map<string, SessionDevice>();
  private version = -1;
  private checkedAt = Number.NEGATIVE_INFINITY;
  private readonly watched: boolean;

  constructor(
    private readonly currentVersion: () => number,
    private readonly inTransaction: () => boolean,
    /** Registers the call-back for this connection's writes; false where it cannot (the version is then read each
     * time). */
    onWrite: (invalidate: () => void) => boolean,
    /** Tests make it long, to see that this connection's writes need no re-read. */
    private readonly recheckMs = RECHECK_MS,
  ) {
    this.watched = onWrite(() => this.invalidate());
  }

  invalidate(): void {
    this.byCredential.clear();
    this.checkedAt = Number.NEGATIVE_INFINITY;
  }

  /** A version the caller just read (identity's change stamp): what is kept from before it goes now. */
  observe(version: number): void {
    if (this.inTransaction()) return;
    this.checkedAt = performance.now();
    if (version === this.version) return;
    this.byCredential.clear();
    this.version = version;
  }

  get(key: string, load: () => SessionDevice | undefined): SessionDevice | undefined {
    if (this.inTransaction()) return load();
    if (!this.watched || performance.now() - this.checkedAt >= this.recheckMs)
      this.observe(this.currentVersion());
    const hit = this.byCredential.get(key);
    if (hit) return hit;
    const device = load();
    if (!device) return device;
    if (this.byCredential.size >= MAX_ENTRIES) this.byCredential.clear();
    this.byCredential.set(key, deepFreeze(device));
    return device;
  }
}

/** Frozen through and through: every caller shares the object, so none may change it for the others. */
function deepFreeze<T>(v: T): T {
  if (v !== null && typeof v === 'object' && !Object.isFrozen(v)) {
    for (const inner of Object.values(v)) deepFreeze(inner);
    Object.freeze(v);
  }
  return v;
}
