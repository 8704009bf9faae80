import type { Device } from '../store/index.ts';

/** Beyond this many credentials the cache starts over (a bound, not an eviction policy: it holds every device). */
const MAX_ENTRIES = 200_000;

/**
 * The device behind each authenticated credential, kept while the identity tables are unchanged (issue 23). Every
 * reading used to read its device with a join and build a fresh Device, which outlived the reading's queue commit
 * and so was promoted into V8's old space: at 10,000 sensors the largest share of what a reading left behind.
 *
 * Valid while `identityVersion` (migration 25's triggers, moved by any connection or process) is what it was
 * when the entry was filled. What those triggers leave out — `firstSeen`, `lastSeen`, `firmwareVersion`,
 * `updatedAt` — is as of the fill: callers on the data path read identity, state and policy, never those. The
 * objects are frozen, since every caller shares one; nothing is filled inside a transaction, which may yet roll
 * back; a credential without a device is not kept (it stays a lookup each time, and unbounded keys cannot grow
 * the map).
 */
export class DeviceCache {
  private readonly byCredential = new Map<string, Device>();
  private version = -1;

  constructor(
    private readonly currentVersion: () => number,
    private readonly inTransaction: () => boolean,
  ) {}

  get(key: string, load: () => Device | undefined): Device | undefined {
    const version = this.currentVersion();
    if (version !== this.version) {
      this.byCredential.clear();
      this.version = version;
    }
    const hit = this.byCredential.get(key);
    if (hit) return hit;
    const device = load();
    if (!device || this.inTransaction()) return device;
    if (this.byCredential.size >= MAX_ENTRIES) this.byCredential.clear();
    this.byCredential.set(key, deepFreeze(device));
    return device;
  }
}

function deepFreeze(d: Device): Device {
  if (d.quarantine) Object.freeze(d.quarantine);
  Object.freeze(d.policyOverrides);
  return Object.freeze(d);
}
