/**
 * Where the uplink's MQTT connection runs, chosen by its key (issue 23): a software key's connection in a worker
 * thread of the gateway (broker-thread.ts), so mqtt.js and TLS run on another core than DTLS and the queue; a TPM
 * key's in a child process whose OpenSSL prefers the TPM (broker-worker.ts). Neither loads mqtt.js into the gateway's
 * main thread. `connectInProcess` (connection.ts) stays for those two and for tests that want it in-process.
 */
import { fork } from 'node:child_process';
import { once } from 'node:events';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { followStderr, siblingModule } from '../child.ts';
import type { BrokerConnection, ConnectionEvents, ConnectParams, UplinkKey } from './connection.ts';
import {
  batchPosts,
  type FromThread,
  type FromWorker,
  type PublishBatch,
  type ToThread,
  type ToWorker,
} from './worker-protocol.ts';

/**
 * The same connection, held by broker-worker.ts in a child process whose OpenSSL prefers the tpm2 provider,
 * so the TLS handshake signs inside the TPM. Publishes and acknowledgements cross the IPC channel.
 */
function connectViaWorker(
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

/**
 * The thread's module: compiled JavaScript in the appliance; from TypeScript (tests, benchmarks) through tsx, which a
 * worker thread does not inherit from the thread that made it, so it registers it first.
 */
function startThread(name: string): Worker {
  const mod = siblingModule(import.meta.url, name);
  if (!mod.path.endsWith('.ts')) return new Worker(mod.path);
  const tsx = JSON.stringify(import.meta.resolve('tsx/esm/api'));
  const entry = JSON.stringify(pathToFileURL(mod.path).href);
  return new Worker(`import(${tsx}).then((t) => { t.register(); return import(${entry}); });`, {
    eval: true,
  });
}

/** A Buffer as bytes of its own: cloning a view of Node's shared 8 KiB pool would copy the whole pool. */
const ownBytes = (b: Buffer): Uint8Array =>
  b.byteOffset === 0 && b.byteLength === b.buffer.byteLength ? b : new Uint8Array(b);

/**
 * The connection in a worker thread (broker-thread.ts); one thread per connection, ended with it, so a connection
 * that hangs is ended by terminating its thread. Publishes and acknowledgements cross in batches, one message per
 * turn of each side's event loop.
 */
export function connectViaThread(p: ConnectParams, ev: ConnectionEvents, keyPem: string): BrokerConnection {
  const worker = startThread('broker-thread');
  const pending = new Map<number, (err: string | null) => void>();
  let nextId = 1;
  let closed = false;
  let exited = false;
  let out: ToThread[] = [];
  /** The publishes since the last post, packed into one entry of `out` as it is posted (worker-protocol.ts). */
  let pubs: { batch: PublishBatch; index: number[]; data: Buffer; size: number } | null = null;
  const flush = () => {
    if (pubs) {
      // Copies of their own, moved to the thread without another copy.
      pubs.batch.index = Float64Array.from(pubs.index);
      pubs.batch.data = new Uint8Array(pubs.data.subarray(0, pubs.size));
      pubs = null;
    }
    const batch = out;
    out = [];
    if (batch.length === 0 || exited) return;
    const transfer = batch.flatMap((m) =>
      m.type === 'publish' ? [m.data.buffer as ArrayBuffer, m.index.buffer as ArrayBuffer] : [],
    );
    worker.postMessage(batch, transfer);
  };
  const schedule = batchPosts(flush);
  const post = (m: ToThread) => {
    out.push(m);
    schedule();
  };
  const queuePublish = (id: number, topic: string, payload: Buffer, props: string, retain: boolean) => {
    if (!pubs) {
      const batch: PublishBatch = { type: 'publish', index: new Float64Array(0), data: new Uint8Array(0) };
      pubs = { batch, index: [], data: Buffer.allocUnsafe(16_384), size: 0 };
      post(batch);
    }
    const p = pubs;
    const room = (topic.length + props.length) * 3 + payload.length;
    if (p.size + room > p.data.length) {
      const bigger = Buffer.allocUnsafe(Math.max(p.data.length * 2, p.size + room));
      p.data.copy(bigger, 0, 0, p.size);
      p.data = bigger;
    }
    p.size += p.data.write(topic, p.size);
    const topicEnd = p.size;
    p.size += p.data.write(props, p.size);
    const propsEnd = p.size;
    p.size += payload.copy(p.data, p.size);
    p.index.push(id, topicEnd, propsEnd, p.size, retain ? 1 : 0);
  };
  const close = () => {
    if (closed) return;
    closed = true;
    for (const done of pending.values()) done('uplink thread gone');
    pending.clear();
    ev.onClose();
  };
  worker.on('message', (batch: FromThread[]) => {
    for (const m of batch) {
      switch (m.type) {
        case 'connect':
          ev.onConnect();
          break;
        case 'error':
          ev.onError(m.message);
          break;
        case 'message':
          ev.onMessage(
            m.topic,
            Buffer.from(m.payload.buffer, m.payload.byteOffset, m.payload.byteLength),
            m.userProperties,
          );
          break;
        case 'acks':
          for (let i = 0; i < m.ids.length; i++) {
            const id = m.ids[i] as number;
            const done = pending.get(id);
            pending.delete(id);
            done?.(m.errs[i] ?? null);
          }
          break;
        case 'close':
          void worker.terminate();
          close();
          break;
        case 'ended':
          void worker.terminate();
          break;
      }
    }
  });
  // An exception in the thread (mqtt.js throwing from a socket handler) ends it: the uplink reconnects.
  worker.on('error', (err) => ev.onError(`uplink thread: ${err.message}`));
  worker.on('exit', () => {
    exited = true;
    close();
  });
  post({
    type: 'connect',
    params: {
      url: p.url,
      clientId: p.clientId,
      ca: ownBytes(p.ca),
      cert: ownBytes(p.cert),
      will: p.will && { ...p.will, payload: ownBytes(p.will.payload) },
    },
    keyPem,
  });
  return {
    publish(topic, payload, userProperties, done, options) {
      if (closed) return done('uplink thread gone');
      const id = nextId++;
      pending.set(id, done);
      queuePublish(id, topic, payload, JSON.stringify(userProperties), options?.retain ?? false);
    },
    subscribe(topic) {
      post({ type: 'subscribe', topic });
    },
    async end(graceMs) {
      if (exited) return;
      const gone = once(worker, 'exit');
      post({ type: 'end', graceMs });
      flush();
      const timer = setTimeout(() => void worker.terminate(), graceMs + 2000);
      await gone;
      clearTimeout(timer);
    },
  };
}

/** Connects the way the key requires (see the top of this file). */
export function connectBroker(p: ConnectParams, ev: ConnectionEvents): BrokerConnection {
  return p.key.kind === 'pem' ? connectViaThread(p, ev, p.key.pem) : connectViaWorker(p, ev, p.key);
}
