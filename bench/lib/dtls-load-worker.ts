/**
 * One generator thread of `npm run bench -- dtls --generators N`: runs handshakes against a port for the
 * seconds it is told and answers with what it did (a LoadResult).
 */
import { createPrivateKey } from 'node:crypto';
import { parentPort, workerData } from 'node:worker_threads';
import { type ClientCertificate, type HandshakeKind, handshake } from './dtls-handshakes.ts';
import { runFor } from './load.ts';

export interface LoadWorkerData {
  /** The ECDHE client certificate: DER, and its key as PKCS#8 PEM (a KeyObject does not cross threads). */
  certificate: { der: Uint8Array; keyPem: string };
}

export interface LoadRequest {
  port: number;
  kind: HandshakeKind;
  seconds: number;
  concurrency: number;
}

const data = workerData as LoadWorkerData;
const certificate: ClientCertificate = {
  der: Buffer.from(data.certificate.der),
  key: createPrivateKey(data.certificate.keyPem),
};
const parent = parentPort;
if (!parent) throw new Error('dtls-load-worker runs as a worker thread');
parent.on('message', (req: LoadRequest) => {
  void runFor(req.seconds, req.concurrency, () => handshake(req.port, req.kind, certificate)).then((r) =>
    parent.postMessage(r),
  );
});
