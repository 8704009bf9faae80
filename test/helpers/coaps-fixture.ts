import { randomBytes } from 'node:crypto';
import { generate } from 'coap-packet';
import {
  type CoapEndpointOptions,
  createCoapsServer,
  type Telemetry,
  telemetryRouter,
} from '../../gateway/src/coap/index.ts';
import type {
  DiscardEvent,
  DtlsServer,
  DtlsServerOptions,
  DtlsSession,
  HandshakeFailure,
} from '../../gateway/src/dtls/index.ts';
import type { TestPki } from './pki.ts';

export const PSK_IDENTITY = 'sensor-1';

export interface Fixture {
  server: DtlsServer;
  port: number;
  /** A fresh random PSK per fixture, printable so every peer's command line takes it. */
  psk: string;
  telemetry: Telemetry[];
  failures: HandshakeFailure[];
  sessions: DtlsSession[];
  closed: string[];
  discards: DiscardEvent[];
  internalErrors: unknown[];
  close(): Promise<void>;
}

/** Polls until `pick` returns a value; rejects with `what` after `timeoutMs`. */
export async function waitFor<T>(what: string, pick: () => T | undefined, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = pick();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * A CoAPs server on a random loopback port with PSK, certificates (if `pki`) and, unless `coap` brings its
 * own router, the telemetry resource.
 */
export async function startFixture(
  pki: TestPki | null,
  extra: Partial<DtlsServerOptions> = {},
  coap: Partial<CoapEndpointOptions> = {},
): Promise<Fixture> {
  const psk = randomBytes(12).toString('base64url');
  const f: Omit<Fixture, 'server' | 'port' | 'close'> = {
    psk,
    telemetry: [],
    failures: [],
    sessions: [],
    closed: [],
    discards: [],
    internalErrors: [],
  };
  const { server } = createCoapsServer(
    {
      lookupPsk: (id) => (id.toString('utf8') === PSK_IDENTITY ? Buffer.from(psk, 'utf8') : undefined),
      ...(pki
        ? {
            identity: { certificateChain: [pki.server.der], privateKey: pki.server.key },
            clientAuth: { trustAnchors: [pki.ca], allowRawPublicKeys: true },
          }
        : {}),
      onSession: (s) => f.sessions.push(s),
      onClose: (_s, reason) => f.closed.push(reason),
      onHandshakeFailure: (x) => f.failures.push(x),
      onDiscard: (d) => f.discards.push(d),
      onInternalError: (e) => f.internalErrors.push(e),
      ...extra,
    },
    { router: telemetryRouter((t) => void f.telemetry.push(t)), ...coap },
  );
  const addr = await server.listen(0, '127.0.0.1');
  return { ...f, server, port: addr.port, close: () => server.close() };
}

/** A confirmable CoAP POST to /telemetry. */
export function coapPost(payload: string, messageId = 0x1234): Buffer {
  return generate({
    code: 'POST',
    messageId,
    token: Buffer.from([0xca, 0xfe]),
    confirmable: true,
    options: [{ name: 'Uri-Path', value: Buffer.from('telemetry') }],
    payload: Buffer.from(payload),
  });
}
