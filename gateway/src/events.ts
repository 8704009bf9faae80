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

export class GatewayEvents {
  private readonly listeners = new Set<Listener>();

  get listenerCount(): number {
    return this.listeners.size;
  }

  on(l: Listener): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  emit(e: GatewayEvent): void {
    for (const l of this.listeners) {
      try {
        l(e);
      } catch {
        // a listener's failure is its own; the data path goes on
      }
    }
  }
}
