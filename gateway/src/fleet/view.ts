/**
 * The fleet plane as the gateway's own UI shows it (read-only): the operator keys pinned, the documents applied
 * and what they changed, the recent refusals and why, the profiles documents defined, and — from the running
 * agent — whether presence and state are getting out.
 */
import { readFileSync } from 'node:fs';
import type { Core } from '../core.ts';
import type { FleetApplied, FleetProfile, FleetRefusal } from '../store/index.ts';
import { ed25519PublicKey, keyIdOf } from './document.ts';

/** What the running agent knows of its publications (absent when the gateway has no uplink). */
export interface FleetRuntimeStatus {
  prefix: string;
  connected: boolean;
  subscriptions: string[];
  /** Presence: the last birth (or stop) sent and when the broker took it. */
  presence: { online: boolean; at: string } | null;
  /** The last reported state the broker took. */
  state: { at: string; bytes: number } | null;
  /** The last publication that did not get out (retained ones go again at the next connect). */
  lastError: { topic: string; message: string; at: string } | null;
}

export interface FleetPageView {
  /** The key pinned in `fleet.operatorKeyFile` (null: none; every document is refused). */
  pinned: { file: string; keyId: string | null; problem?: string } | null;
  /** The key documents must be signed with now: a rotated one, if a rotation from the pinned key applied. */
  inForce: { keyId: string; since: string; rotatedFrom: string } | null;
  groups: string[];
  lock: { locked: boolean; by: string | null; since: string | null };
  applied: Array<Omit<FleetApplied, 'hash'> & { hash: string }>;
  refusals: FleetRefusal[];
  profiles: Array<Omit<FleetProfile, 'fields'> & { fields: string[] }>;
}

export function fleetPageView(core: Core): FleetPageView {
  const f = core.config.fleet;
  let pinned: FleetPageView['pinned'] = null;
  if (f.operatorKeyFile) {
    try {
      pinned = {
        file: f.operatorKeyFile,
        keyId: keyIdOf(ed25519PublicKey(readFileSync(f.operatorKeyFile, 'utf8'))),
      };
    } catch (err) {
      pinned = { file: f.operatorKeyFile, keyId: null, problem: (err as Error).message };
    }
  }
  const trust = core.store.fleet.trust();
  // A rotation made from a key the config no longer pins is not in force (apply.ts operatorKey()).
  const inForce =
    trust && pinned?.keyId === trust.pinnedFrom
      ? { keyId: trust.keyId, since: trust.since, rotatedFrom: trust.pinnedFrom }
      : null;
  return {
    pinned,
    inForce,
    groups: f.groups,
    lock: core.store.fleet.lock(),
    applied: core.store.fleet
      .allApplied()
      .sort((a, b) => b.appliedAt.localeCompare(a.appliedAt))
      .map((a) => ({ ...a, hash: a.hash.slice(0, 16) })),
    refusals: core.store.fleet.refusals(),
    profiles: core.store.fleet.profiles().map((p) => ({ ...p, fields: Object.keys(p.fields) })),
  };
}
