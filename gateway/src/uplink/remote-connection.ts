/**
 * Where the uplink's MQTT connection runs, chosen by its key (issue 23): a software key's connection in a worker
 * thread of the gateway (broker-thread.ts), so mqtt.js and TLS run on another core than DTLS and the queue; a TPM
 * key's in a child process whose OpenSSL prefers the TPM (broker-worker.ts). Neither loads mqtt.js into the gateway's
 * main thread. `connectInProcess` (connection.ts) stays for those two and for tests that want it in-process.
 */
import { fork } from 'node:child_process';
import { once } from 'node:events';
import type { Worker } from 'node:worker_threads';
import { followStderr, siblingModule, startWorkerThread } from '../child.ts';
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

/** The thread's module beside this one (child.ts says how it loads in the appliance and from TypeScript). */
function startThread(name: string): Worker {
  // The thread keeps little alive (a connection, a window of publishes): a small young generation keeps the
  // gateway's resident memory down (issue 20) at the price of more scavenges, which run on the thread's own core.
  // Under the unit's --max-semi-space-size=2 a worker's heap limit came out the same whether it asked for 4 or 16
  // MB of young generation (docs/performance.md): that V8 flag, process-wide, takes precedence over this limit.
  return startWorkerThread(import.meta.url, name, {
    resourceLimits: { maxYoungGenerationSizeMb: THREAD_YOUNG_GENERATION_MB },
  });
}

const THREAD_YOUNG_GENERATION_MB = 4;
/**
 * Publishes go to the thread at most every 4 ms, not every 1 ms like its answers: posting (and waking the thread) was
 * the gateway's largest main-thread cost under load (11 % of its samples at ~12,000 messages/s, ~85 µs a post on
 * this 2-core machine), and a sensor's acknowledgement does not wait for the publish, only for the queue commit —
 * the wait adds at most 4 ms (and a timer's lag) to a message's way to the broker, within the 256-publish window
 * (issue 23).
 */
const PUBLISH_POST_GAP_MS = 4;

/** A Buffer as bytes of its own: cloning a view of Node's shared 8 KiB pool would copy the whole pool. */
const ownBytes = (b: Buffer): Uint8Array =>
  b.byteOffset === 0 && b.byteLength === b.buffer.byteLength ? b : new Uint8Array(b);

/**
 * The publishes between two posts, packed into one PublishBatch (worker-protocol.ts): topic, properties JSON and
 * payload back to back in one buffer, and a number index.
 */
class PublishPacker {
  private batch: PublishBatch | null = null;
  private index: number[] = [];
  private data = Buffer.alloc(0);
  private size = 0;

  /** Adds one; returns the batch when it is the first since the last seal (the caller queues it for posting). */
  add(id: number, topic: string, payload: Buffer, props: string, retain: boolean): PublishBatch | null {
    let opened: PublishBatch | null = null;
    if (!this.batch) {
      opened = this.batch = { type: 'publish', index: new Float64Array(0), data: new Uint8Array(0) };
      if (this.data.length === 0) this.data = Buffer.allocUnsafe(16_384);
    }
    const room = (topic.length + props.length) * 3 + payload.length;
    if (this.size + room > this.data.length) {
      const bigger = Buffer.allocUnsafe(Math.max(this.data.length * 2, this.size + room));
      this.data.copy(bigger, 0, 0, this.size);
      this.data = bigger;
    }
    this.size += this.data.write(topic, this.size);
    const topicEnd = this.size;
    this.size += this.data.write(props, this.size);
    const propsEnd = this.size;
    this.size += payload.copy(this.data, this.size);
    this.index.push(id, topicEnd, propsEnd, this.size, retain ? 1 : 0);
    return opened;
  }

  /** Fills the open batch with copies of its own (moved to the thread without another copy). */
  seal(): void {
    if (!this.batch) return;
    this.batch.index = Float64Array.from(this.index);
    this.batch.data = new Uint8Array(this.data.subarray(0, this.size));
    this.batch = null;
    this.index = [];
    this.size = 0;
  }
}

/** What the thread said, for the connection's events and its pending publishes. */
function fromThread(
  batch: FromThread[],
  ev: ConnectionEvents,
  pending: Map<number, (err: string | null) => void>,
  gone: () => void,
): void {
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
      case 'ended':
        gone();
        break;
    }
  }
}

/**
 * The connection in a worker thread (broker-thread.ts); one thread per connection, ended with it, so a connection
 * that hangs is ended by terminating its thread. Publishes and acknowledgements cross in batches: publishes about
 * every PUBLISH_POST_GAP_MS, acknowledgements about once a millisecond (batchPosts).
 */
export function connectViaThread(p: ConnectParams, ev: ConnectionEvents, keyPem: string): BrokerConnection {
  const worker = startThread('broker-thread');
  const pending = new Map<number, (err: string | null) => void>();
  const packer = new PublishPacker();
  let nextId = 1;
  let closed = false;
  let exited = false;
  let out: ToThread[] = [];
  const flush = () => {
    packer.seal();
    const batch = out;
    out = [];
    if (batch.length === 0 || exited) return;
    const transfer = batch.flatMap((m) =>
      m.type === 'publish' ? [m.data.buffer as ArrayBuffer, m.index.buffer as ArrayBuffer] : [],
    );
    worker.postMessage(batch, transfer);
  };
  const schedule = batchPosts(flush, PUBLISH_POST_GAP_MS);
  const post = (m: ToThread) => {
    out.push(m);
    schedule();
  };
  const close = () => {
    if (closed) return;
    closed = true;
    for (const done of pending.values()) done('uplink thread gone');
    pending.clear();
    ev.onClose();
  };
  // 'close': the connection is gone (the uplink reconnects with a new thread); 'ended': end() finished.
  worker.on('message', (batch: FromThread[]) =>
    fromThread(batch, ev, pending, () => {
      void worker.terminate();
      close();
    }),
  );
  // An exception in the thread (mqtt.js throwing from a socket handler) ends it: the uplink reconnects.
  worker.on('error', (err) => ev.onError(`uplink thread: ${err.message}`));
  worker.on('exit', () => {
    exited = true;
    close();
  });
  const { url, clientId, ca, cert, will } = p;
  post({
    type: 'connect',
    params: {
      url,
      clientId,
      ca: ownBytes(ca),
      cert: ownBytes(cert),
      will: will && { ...will, payload: ownBytes(will.payload) },
    },
    keyPem,
  });
  return {
    publish(topic, payload, userProperties, done, options) {
      if (closed) return done('uplink thread gone');
      const id = nextId++;
      pending.set(id, done);
      const opened = packer.add(id, topic, payload, JSON.stringify(userProperties), options?.retain ?? false);
      if (opened) post(opened);
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
