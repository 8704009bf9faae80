/**
 * The uplink's MQTT connection in a worker thread of the gateway (issue 23). mqtt.js — packet encoding, TLS
 * encryption, socket writes, PUBACK parsing — was a sixth of the gateway's one thread under load; here it runs on
 * another core while the main thread does DTLS, CoAP, policy and the durable queue. The thread holds the connection
 * and nothing else: it never sees the queue or the database. Messages both ways are batched per turn of the event
 * loop (worker-protocol.ts). TPM keys keep their child process (broker-worker.ts), whose OpenSSL prefers the TPM.
 */
import { parentPort } from 'node:worker_threads';
import { type BrokerConnection, connectInProcess } from './connection.ts';
import {
  batchPosts,
  type FromThread,
  PUBLISH_FIELDS,
  type PublishBatch,
  type ToThread,
} from './worker-protocol.ts';

const port = parentPort;
if (!port) throw new Error('broker-thread runs as a worker thread of the gateway');

const asBuffer = (u: Uint8Array) => Buffer.from(u.buffer, u.byteOffset, u.byteLength);
/** Bytes of its own: mqtt.js hands out views of the socket's chunk, which a clone would copy whole. */
const ownBytes = (b: Buffer): Uint8Array =>
  b.byteOffset === 0 && b.byteLength === b.buffer.byteLength ? b : new Uint8Array(b);
let out: FromThread[] = [];
/** The acknowledgements of this turn, appended to `out` once as one entry. */
let acks: { type: 'acks'; ids: number[]; errs: Array<string | null> } | null = null;
const flush = () => {
  const batch = out;
  out = [];
  acks = null;
  if (batch.length > 0) port.postMessage(batch);
};
const schedule = batchPosts(flush);
const send = (m: FromThread) => {
  out.push(m);
  schedule();
};
const ack = (id: number, err: string | null) => {
  if (!acks) {
    acks = { type: 'acks', ids: [], errs: [] };
    send(acks);
  }
  acks.ids.push(id);
  acks.errs.push(err);
};
let conn: BrokerConnection | null = null;
const RETAINED = { retain: true } as const;

function publish(b: PublishBatch): void {
  const data = asBuffer(b.data);
  let at = 0;
  const x = b.index;
  // Read field by field: a subarray and its destructuring were two objects a publish on this thread.
  for (let i = 0; i < x.length; i += PUBLISH_FIELDS) {
    const id = x[i] as number;
    const topicEnd = x[i + 1] as number;
    const propsEnd = x[i + 2] as number;
    const payloadEnd = x[i + 3] as number;
    const topic = data.toString('utf8', at, topicEnd);
    const props = JSON.parse(data.toString('utf8', topicEnd, propsEnd)) as Record<string, string>;
    const payload = data.subarray(propsEnd, payloadEnd);
    at = payloadEnd;
    if (!conn) ack(id, 'uplink not connected');
    else conn.publish(topic, payload, props, (err) => ack(id, err), x[i + 4] === 1 ? RETAINED : undefined);
  }
}

function handle(m: ToThread): void {
  switch (m.type) {
    case 'connect':
      conn = connectInProcess(
        {
          url: m.params.url,
          clientId: m.params.clientId,
          ca: asBuffer(m.params.ca),
          cert: asBuffer(m.params.cert),
          will: m.params.will && { ...m.params.will, payload: asBuffer(m.params.will.payload) },
        },
        {
          onConnect: () => send({ type: 'connect' }),
          onClose: () => send({ type: 'close' }),
          onError: (message) => send({ type: 'error', message }),
          onMessage: (topic, payload, userProperties) =>
            send({ type: 'message', topic, payload: ownBytes(payload), userProperties }),
        },
        m.keyPem,
      );
      return;
    case 'publish':
      publish(m);
      return;
    case 'subscribe':
      conn?.subscribe(m.topic);
      return;
    case 'end':
      void (conn?.end(m.graceMs) ?? Promise.resolve()).then(() => {
        send({ type: 'ended' });
        flush();
      });
      return;
  }
}

port.on('message', (batch: ToThread[]) => {
  for (const m of batch) handle(m);
});
