import type { SegmentConfig } from '../config/schema.ts';
import type { Segment, Store } from '../store/index.ts';

/** The segment's interface on the gateway: explicit, or the VLAN interface `<parent>.<vlan>`. */
export function segmentInterface(s: Pick<SegmentConfig, 'interface' | 'parentInterface' | 'vlanId'>): string {
  return s.interface ?? `${s.parentInterface}.${s.vlanId}`;
}

function storedForm(s: SegmentConfig): Omit<Segment, 'createdAt'> {
  return {
    name: s.name,
    role: s.role,
    interface: segmentInterface(s),
    vlanId: s.vlanId ?? null,
    parentInterface: s.parentInterface ?? null,
    subnet: s.subnet,
    gatewayAddress: s.gatewayAddress,
    defaultPolicy: s.defaultPolicy,
  };
}

/**
 * Mirrors the configured segments into the store (devices reference them). A segment removed from the config
 * stays in the store while devices are still in it; the firewall compiler then refuses to run until they move,
 * rather than guessing where they belong. Writes nothing when the store already agrees: every CLI command opens
 * the store, and a commit would make the running gateway re-review sessions and recompile its firewall.
 */
export function syncSegments(store: Store, segments: readonly SegmentConfig[], now: string): void {
  const wanted = segments.map(storedForm);
  const stored = new Map(
    store.segments.list().map(({ createdAt: _, ...rest }) => [rest.name, JSON.stringify(rest)]),
  );
  const same = stored.size === wanted.length && wanted.every((w) => stored.get(w.name) === JSON.stringify(w));
  if (same) return;
  store.transaction(() => {
    for (const w of wanted) store.segments.upsert(w, now);
    const configured = new Set(wanted.map((w) => w.name));
    for (const name of stored.keys()) {
      if (!configured.has(name)) store.segments.deleteIfUnused(name);
    }
  });
}

export type { Segment };
