import type { Core } from '../core.ts';

/** Sets or lifts the local fleet lock, with its audit entry, in one transaction (docs/fleet.md). */
export function setFleetLock(core: Core, actor: string, on: boolean): void {
  core.store.transaction(() => {
    core.store.fleet.setLock(on ? actor : null, new Date(core.clock.now()).toISOString());
    core.audit.append({ actor, action: on ? 'fleet.lock' : 'fleet.unlock', details: {} });
  });
}
