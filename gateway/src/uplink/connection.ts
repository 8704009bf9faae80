// First: mqtt's packages must find the quiet `debug` when they load (quiet-debug.ts).
import './quiet-debug.ts';
import type { Writable } from 'node:stream';
import mqtt from 'mqtt';
import type { UplinkKey } from '../keystore/types.ts';
import { coalesceWrites } from './coalesced-writes.ts';

export type { UplinkKey } from '../keystore/types.ts';

/**
 * The MQTT 5 Will the broker publishes when the connection drops without DISCONNECT: the fleet's presence, or
 * Sparkplug's NDEATH.
 */
export interface WillMessage {
  topic: string;
  payload: Buffer;
  retain: boolean;
}

/** How one publish goes out: QoS 1 always; retained for the fleet's presence and state documents. */
export interface PublishOptions {
  retain?: boolean;
}

export interface ConnectParams {
  url: string;
  clientId: string;
  ca: Buffer;
  cert: Buffer;
  key: UplinkKey;
  will?: WillMessage;
}

export interface ConnectionEvents {
  onConnect(): void;
  /** The connection is gone for good; the uplink reconnects with a new one. */
  onClose(): void;
  onError(message: string): void;
  /** A message on a subscribed topic (the downlink). */
  onMessage(topic: string, payload: Buffer, userProperties: Record<string, string>): void;
}

export interface BrokerConnection {
  /** QoS 1; `done(null)` on PUBACK. */
  publish(
    topic: string,
    payload: Buffer,
    userProperties: Record<string, string>,
    done: (err: string | null) => void,
    options?: PublishOptions,
  ): void;
  /** QoS 1 subscription. */
  subscribe(topic: string): void;
  /** Waits up to `graceMs` for in-flight acknowledgements, then closes hard. */
  end(graceMs: number): Promise<void>;
}

/** mqtt.js in this process: MQTT 5, mutual TLS ≥ 1.2, server verified against the configured CA. */
export function connectInProcess(
  p: Omit<ConnectParams, 'key'>,
  ev: ConnectionEvents,
  key: string,
): BrokerConnection {
  const client = mqtt.connect(p.url, {
    protocolVersion: 5,
    clientId: p.clientId,
    clean: true,
    // Reconnection is the uplink's (jittered back-off, queue replay); mqtt.js must not keep a second store.
    reconnectPeriod: 0,
    connectTimeout: 10_000,
    ca: p.ca,
    cert: p.cert,
    key,
    rejectUnauthorized: true,
    minVersion: 'TLSv1.2',
    ...(p.will
      ? { will: { topic: p.will.topic, payload: p.will.payload, qos: 1, retain: p.will.retain } }
      : {}),
  } as mqtt.IClientOptions);
  // One socket write a turn instead of one per PUBLISH field (coalesced-writes.ts). The client's only stream:
  // reconnecting is the uplink's, with a new client.
  coalesceWrites(client.stream as unknown as Writable);
  let closed = false;
  // mqtt.js reports one failed connect twice (the socket's error, then again as the connection fails): the
  // uplink would log every outage twice. One connection's repeat of the same message is dropped.
  let lastError: string | null = null;
  client.on('connect', () => {
    lastError = null;
    ev.onConnect();
  });
  client.on('error', (err) => {
    if (err.message === lastError) return;
    lastError = err.message;
    ev.onError(err.message);
  });
  client.on('message', (topic, payload, packet) => {
    const props = packet.properties?.userProperties ?? {};
    const flat: Record<string, string> = {};
    for (const [k, v] of Object.entries(props)) flat[k] = Array.isArray(v) ? String(v[0]) : String(v);
    ev.onMessage(topic, payload, flat);
  });
  client.on('close', () => {
    if (closed) return;
    closed = true;
    client.removeAllListeners();
    client.on('error', () => {});
    client.end(true);
    ev.onClose();
  });
  return {
    publish(topic, payload, userProperties, done, options) {
      // An empty user-property list is encoded as a malformed packet and mosquitto drops the connection.
      const properties = Object.keys(userProperties).length > 0 ? { userProperties } : {};
      client.publish(topic, payload, { qos: 1, retain: options?.retain ?? false, properties }, (err) =>
        done(err ? err.message : null),
      );
    },
    subscribe(topic) {
      client.subscribe(topic, { qos: 1 }, (err) => {
        if (err) ev.onError(`subscribe ${topic}: ${err.message}`);
      });
    },
    async end(graceMs) {
      closed = true;
      await Promise.race([
        new Promise<void>((resolve) => client.end(false, {}, () => resolve())),
        new Promise<void>((resolve) => setTimeout(resolve, graceMs).unref()),
      ]);
      client.end(true);
    },
  };
}
