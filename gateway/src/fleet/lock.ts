import type { Core } from '../core.ts';

/** Sets or lifts the local fleet lock, with its audit entry, in one transaction (docs/fleet.md). */
export function setFleetLock(core: Core, actor: string, on: boolean): void {
  core.store.transaction(() => {
    core.store.fleet.setLock(on ? actor : null, new Date(core.clock.now()).toISOString());
    core.audit.append({ actor, action: on ? 'fleet.lock' : 'fleet.unlock', details: {} });
  });
}

/** What a technician sees locally of the fleet plane: the key in force, the lock, the documents applied. */
export function fleetLocalView(core: Core): {
  operatorKey: { keyId: string; since: string; rotatedFrom: string } | null;
  lock: { locked: boolean; by: string | null; since: string | null };
  applied: Array<{
    scope: string;
    version: number;
    keyId: string;
    appliedAt: string;
    labels: Record<string, string>;
    changes?: Record<string, unknown>;
  }>;
  profiles: string[];
  refusals: Array<{ scope: string; version: number | null; code: string; reason: string; at: string }>;
} {
  const trust = core.store.fleet.trust();
  return {
    operatorKey: trust ? { keyId: trust.keyId, since: trust.since, rotatedFrom: trust.pinnedFrom } : null,
    lock: core.store.fleet.lock(),
    applied: core.store.fleet.allApplied().map(({ hash: _h, ...a }) => a),
    profiles: core.store.fleet.profiles().map((p) => p.name),
    refusals: core.store.fleet.refusals().map(({ claimedKeyId: _k, ...r }) => r),
  };
}
