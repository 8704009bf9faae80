import { fork } from 'node:child_process';
import { once } from 'node:events';
import mqtt from 'mqtt';
import { followStderr, siblingModule } from '../child.ts';
import type { UplinkKey } from '../keystore/types.ts';
import type { FromWorker, ToWorker } from './worker-protocol.ts';

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

/**
 * The same connection, held by broker-worker.ts in a child process whose OpenSSL prefers the tpm2 provider,
 * so the TLS handshake signs inside the TPM. Publishes and acknowledgements cross the IPC channel.
 */
export function connectViaWorker(
  p: ConnectParams,
  ev: ConnectionEvents,
  key: Extract<UplinkKey, { kind: 'tpm2' }>,
): BrokerConnection {
  const worker = siblingModule(import.meta.url, 'broker-worker');
  const child = fork(worker.path, [], {
    execArgv: [`--openssl-config=${key.opensslConfig}`, ...worker.execArgv],
    env: { ...process.env, ...key.env },
    stdio: ['ignore', 'inherit', 'pipe', 'ipc'],
  });
  // What the worker says on stderr (a crash at start, OpenSSL's provider errors) becomes the uplink's error: logged
  // and shown as the uplink's last error in /healthz.
  if (child.stderr) followStderr(child.stderr, (line) => ev.onError(`uplink worker: ${line}`));
  const pending = new Map<number, (err: string | null) => void>();
  let nextId = 1;
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    for (const done of pending.values()) done('uplink worker gone');
    pending.clear();
    ev.onClose();
  };
  child.on('message', (m: FromWorker) => {
    switch (m.type) {
      case 'connect':
        ev.onConnect();
        return;
      case 'error':
        ev.onError(m.message);
        return;
      case 'message':
        ev.onMessage(m.topic, Buffer.from(m.payload, 'base64'), m.userProperties);
        return;
      case 'ack': {
        const done = pending.get(m.id);
        pending.delete(m.id);
        done?.(m.err);
        return;
      }
      case 'close':
        child.kill('SIGTERM');
        close();
        return;
    }
  });
  child.on('error', (err) => ev.onError(`uplink worker: ${err.message}`));
  child.on('exit', close);
  const toWorker = (m: ToWorker) => {
    if (child.connected) child.send(m);
  };
  toWorker({
    type: 'connect',
    params: {
      url: p.url,
      clientId: p.clientId,
      ca: p.ca.toString(),
      cert: p.cert.toString(),
      will: p.will && { ...p.will, payload: p.will.payload.toString('base64') },
    },
    keyPem: key.keyPem,
  });
  return {
    publish(topic, payload, userProperties, done, options) {
      if (closed) return done('uplink worker gone');
      const id = nextId++;
      pending.set(id, done);
      toWorker({
        type: 'publish',
        id,
        topic,
        payload: payload.toString('base64'),
        userProperties,
        retain: options?.retain ?? false,
      });
    },
    subscribe(topic) {
      toWorker({ type: 'subscribe', topic });
    },
    async end(graceMs) {
      if (child.exitCode !== null) return;
      const exited = once(child, 'exit');
      toWorker({ type: 'end', graceMs });
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs + 2000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Connects the way the key requires. */
export function connectBroker(p: ConnectParams, ev: ConnectionEvents): BrokerConnection {
  return p.key.kind === 'pem' ? connectInProcess(p, ev, p.key.pem) : connectViaWorker(p, ev, p.key);
}
