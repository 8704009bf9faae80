import type { GatewayStatus } from './core.ts';
import type { WorkerHealth } from './pull/pull-manager.ts';
import type { UplinkStatus } from './uplink/index.ts';

/** How long a configured uplink may be down before the gateway calls itself degraded. */
export const UPLINK_DOWN_GRACE_MS = 60_000;

/** What the gateway process knows about its moving parts beyond the store (the UI's /healthz asks for it). */
export interface RuntimeProbe {
  uplink(): UplinkStatus | undefined;
  pullPoller(): WorkerHealth | undefined;
  dtlsCrypto(): { implementation: string; fallbackReason?: string } | undefined;
  /** The policy flows' service state from systemd (`active`, `failed`, …); absent off the appliance. */
  flows?(): string | undefined;
}

export interface Health {
  status: 'ok' | 'degraded';
  /** Why it is degraded, one sentence each (empty when ok). */
  reasons: string[];
  components: {
    store: GatewayStatus['store'];
    keystore: GatewayStatus['keystore']['backend'];
    uplink: UplinkStatus['state'];
    firewall: 'enforcing' | 'off';
    dtlsCrypto: string;
    pullPoller: WorkerHealth['state'];
    /** Only on the appliance (systemd runs Node-RED beside the gateway); the data path works without it. */
    flows?: string;
  };
  /** The uplink's real state, when one is configured: since when, and what last went wrong. */
  uplink?: {
    state: UplinkStatus['state'];
    since: string;
    lastError: string | null;
    queueDepth: number;
    /** Messages refused since start because the queue was at its bound (5.03 to sensors). */
    refused: number;
  };
}

/**
 * Health from the core's status and the running parts: degraded when the store fails, when a configured uplink
 * has not been connected for UPLINK_DOWN_GRACE_MS, or when a worker is crash-looping.
 */
export function assessHealth(s: GatewayStatus, probe: RuntimeProbe | undefined, now: number): Health {
  const reasons: string[] = [];
  if (s.store !== 'ok') reasons.push('the database cannot be read');
  const uplink = probe?.uplink();
  let uplinkState: UplinkStatus['state'] = s.uplink.configured ? 'connecting' : 'unset';
  if (uplink) {
    uplinkState = uplink.state;
    const downFor = now - Date.parse(uplink.since);
    if (uplink.state !== 'connected' && uplink.state !== 'unset' && downFor > UPLINK_DOWN_GRACE_MS) {
      reasons.push(
        `uplink ${uplink.state} for ${Math.round(downFor / 1000)} s${uplink.lastError ? `: ${uplink.lastError}` : ''}`,
      );
    }
  }
  const pull = probe?.pullPoller();
  if (pull?.state === 'crash-looping') {
    reasons.push(
      `the pull-mode poller is crash-looping (${pull.crashes} exits): ${pull.lastError ?? 'no reason given'}`,
    );
  }
  const crypto = probe?.dtlsCrypto();
  const flows = probe?.flows?.();
  return {
    status: reasons.length === 0 ? 'ok' : 'degraded',
    reasons,
    components: {
      store: s.store,
      keystore: s.keystore.backend,
      uplink: uplinkState,
      firewall: s.firewall.enforce ? 'enforcing' : 'off',
      dtlsCrypto: crypto?.implementation ?? 'not loaded',
      pullPoller: pull?.state ?? 'idle',
      ...(flows ? { flows } : {}),
    },
    ...(uplink && uplink.state !== 'unset'
      ? {
          uplink: {
            state: uplink.state,
            since: uplink.since,
            lastError: uplink.lastError,
            queueDepth: uplink.queueDepth,
            refused: uplink.refused,
          },
        }
      : {}),
  };
}
