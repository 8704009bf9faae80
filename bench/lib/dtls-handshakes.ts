/**
 * The handshake the dtls bench repeats, shared by the bench process and its generator threads
 * (dtls-load-worker.ts): the test suite's crafted client, a full handshake, close_notify.
 */
import type { KeyObject } from 'node:crypto';
import { type TestClientOptions, TestDtlsClient } from '../../test/helpers/dtls-test-client.ts';

export const BENCH_PSK = 'bench-psk-0123456789';

export type HandshakeKind = 'psk' | 'ecdhe';

/** The client certificate of ECDHE-ECDSA handshakes. */
export interface ClientCertificate {
  der: Buffer;
  key: KeyObject;
}

export function clientOptions(
  port: number,
  kind: HandshakeKind,
  certificate: ClientCertificate | null,
): TestClientOptions {
  if (kind === 'psk') {
    return {
      port,
      suite: 'TLS_PSK_WITH_AES_128_CCM_8',
      psk: { identity: 'bench', key: Buffer.from(BENCH_PSK) },
      timeoutMs: 5000,
    };
  }
  if (!certificate) throw new Error('an ECDHE-ECDSA handshake needs a client certificate');
  return {
    port,
    suite: 'TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8',
    certificate: { chain: [certificate.der], key: certificate.key },
    timeoutMs: 5000,
  };
}

export async function handshake(
  port: number,
  kind: HandshakeKind,
  certificate: ClientCertificate | null,
): Promise<void> {
  const c = new TestDtlsClient(clientOptions(port, kind, certificate));
  try {
    await c.connect();
    await c.closeNotify();
  } finally {
    c.close();
  }
}
