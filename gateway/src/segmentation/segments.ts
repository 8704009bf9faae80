import type { SegmentConfig } from '../config/schema.ts';
import type { Segment, Store } from '../store/index.ts';

/** The segment's interface on the gateway: explicit, or the VLAN interface `<parent>.<vlan>`. */
export function segmentInterface(s: Pick<SegmentConfig, 'interface' | 'parentInterface' | 'vlanId'>): string {
  return s.interface ?? `${s.parentInterface}.${s.vlanId}`;
}

/**
 * Mirrors the configured segments into the store (devices reference them). A segment removed from the config
 * stays in the store while devices are still in it; the firewall compiler then refuses to run until they move,
 * rather than guessing where they belong.
 */
export function syncSegments(store: Store, segments: readonly SegmentConfig[], now: string): void {
  store.transaction(() => {
    for (const s of segments) {
      store.segments.upsert(
        {
          name: s.name,
          role: s.role,
          interface: segmentInterface(s),
          vlanId: s.vlanId ?? null,
          parentInterface: s.parentInterface ?? null,
          subnet: s.subnet,
          gatewayAddress: s.gatewayAddress,
          defaultPolicy: s.defaultPolicy,
        },
        now,
      );
    }
    const configured = new Set(segments.map((s) => s.name));
    for (const stored of store.segments.list()) {
      if (!configured.has(stored.name)) store.segments.deleteIfUnused(stored.name);
    }
  });
}

export type { Segment };
