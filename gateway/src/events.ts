/**
 * In-process events of the running gateway, for the control API's event stream (Node-RED's "device events in"
 * node). Listeners are called synchronously and must not throw into the emitter (the data path).
 */
export type GatewayEvent =
  | {
      type: 'device.message';
      ts: string;
      deviceId: string;
      resource: string;
      contentFormat: number | null;
      /** The payload, base64: sensors send binary as often as text. */
      payload: string;
      size: number;
      /** Whether the gateway's own policy let it through to the uplink. */
      allowed: boolean;
      /** The policy rule that refused it (docs/policy.md), when it was refused. */
      rule?: string;
    }
  | { type: 'device.new'; ts: string; deviceId: string; credentialKind: string; state: string }
  | { type: 'device.state'; ts: string; deviceId: string; from: string; to: string; actor: string }
  | { type: 'handshake.failure'; ts: string; address: string; code: string; deviceId: string | null }
  | {
      type: 'alert';
      ts: string;
      alertId: number;
      deviceId: string | null;
      severity: string;
      kind: string;
      explanation: string;
      score: number | null;
    };

export type GatewayEventType = GatewayEvent['type'];
export const EVENT_TYPES: readonly GatewayEventType[] = [
  'device.message',
  'device.new',
  'device.state',
  'handshake.failure',
  'alert',
];

type Listener = (e: GatewayEvent) => void;

/**
 * The gateway's event stream. A listener may name the types it wants: the data path builds a `device.message`
 * (the payload in base64, a timestamp) for every reading only while someone wants one — the fleet agent, which
 * listens for alerts and device changes, made every reading pay for it (issue 23).
 */
export class GatewayEvents {
  private readonly listeners = new Map<Listener, ReadonlySet<GatewayEventType> | null>();
  private readonly wantedBy = new Map<GatewayEventType, number>();
  private wantAll = 0;

  get listenerCount(): number {
    return this.listeners.size;
  }

  /** Whether any listener would be given an event of this type (build it only then). */
  wants(type: GatewayEventType): boolean {
    return this.wantAll > 0 || (this.wantedBy.get(type) ?? 0) > 0;
  }

  /** `types`: only these (omitted or empty: every event). */
  on(l: Listener, types?: readonly GatewayEventType[]): () => void {
    if (this.listeners.has(l)) return () => this.off(l);
    const only = types && types.length > 0 ? new Set(types) : null;
    this.listeners.set(l, only);
    if (only) for (const t of only) this.wantedBy.set(t, (this.wantedBy.get(t) ?? 0) + 1);
    else this.wantAll++;
    return () => this.off(l);
  }

  private off(l: Listener): void {
    if (!this.listeners.has(l)) return;
    const only = this.listeners.get(l);
    this.listeners.delete(l);
    if (only) for (const t of only) this.wantedBy.set(t, (this.wantedBy.get(t) ?? 1) - 1);
    else this.wantAll--;
  }

  emit(e: GatewayEvent): void {
    for (const [l, only] of this.listeners) {
      if (only && !only.has(e.type)) continue;
      try {
        l(e);
      } catch {
        // a listener's failure is its own; the data path goes on
      }
    }
  }
}
