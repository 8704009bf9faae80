/**
 * The uplink's TLS endpoint in its own process, for keys that live in the TPM. OpenSSL's tpm2 provider has to
 * be preferred process-wide for the TLS signature to happen inside the TPM; in the gateway process that would
 * also route the DTLS server's ECDHE through the TPM. So this process holds the MQTT connection and nothing
 * else, and talks to the gateway over the IPC channel: it never sees the queue, the database or device keys.
 */
import { type BrokerConnection, connectInProcess } from './connection.ts';
import type { FromWorker, ToWorker } from './worker-protocol.ts';

export type { FromWorker, ToWorker } from './worker-protocol.ts';

const send = (m: FromWorker) => process.send?.(m);
let conn: BrokerConnection | null = null;

process.on('message', (m: ToWorker) => {
  switch (m.type) {
    case 'connect':
      conn = connectInProcess(
        {
          ...m.params,
          ca: Buffer.from(m.params.ca),
          cert: Buffer.from(m.params.cert),
          will: m.params.will && { ...m.params.will, payload: Buffer.from(m.params.will.payload, 'base64') },
        },
        {
          onConnect: () => send({ type: 'connect' }),
          onClose: () => send({ type: 'close' }),
          onError: (message) => send({ type: 'error', message }),
          onMessage: (topic, payload, userProperties) =>
            send({ type: 'message', topic, payload: payload.toString('base64'), userProperties }),
        },
        m.keyPem,
      );
      return;
    case 'publish':
      conn?.publish(
        m.topic,
        Buffer.from(m.payload, 'base64'),
        m.userProperties,
        (err) => send({ type: 'ack', id: m.id, err }),
        { retain: m.retain },
      );
      return;
    case 'subscribe':
      conn?.subscribe(m.topic);
      return;
    case 'end':
      void (conn?.end(m.graceMs) ?? Promise.resolve()).then(() => {
        send({ type: 'ended' });
        process.exit(0);
      });
      return;
  }
});
// The gateway went away: so do we.
process.on('disconnect', () => process.exit(0));
