/**
 * The Portcullis side of `npm run bench -- dtls`: a CoAPs server in its own process, so the load generator
 * and the server do not share a CPU and the server's CPU time and memory can be read from /proc.
 *
 * argv[2]: JSON { psk, certPath, keyPath, caPath, limits?, resumption? } (`limits` replaces the load-generator limits below,
 * e.g. with the gateway's own for `npm run bench -- dtls-flood`). Prints {"port": N, "crypto": {…}} once listening. On stdin, "gc\n"
 * runs a full garbage collection (needs --expose-gc) and answers "gc done".
 */
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { CoapRouter, createCoapsServer } from '../gateway/src/coap/index.ts';
import { dtlsCryptoStatus } from '../gateway/src/dtls/index.ts';

interface Args {
  psk: string;
  certPath: string;
  keyPath: string;
  caPath: string;
  limits?: Record<string, number>;
  /** Session resumption (the gateway's default) on: `npm run bench -- dtls` measures resumed handshakes. */
  resumption?: boolean;
}

const args = JSON.parse(process.argv[2] ?? '{}') as Args;
const psk = Buffer.from(args.psk, 'utf8');
const router = new CoapRouter().on('POST', '/telemetry', () => ({ code: '2.04' }));
const { server } = createCoapsServer(
  {
    lookupPsk: () => psk,
    identity: {
      certificateChain: [new X509Certificate(readFileSync(args.certPath)).raw],
      privateKey: createPrivateKey(readFileSync(args.keyPath)),
    },
    clientAuth: { trustAnchors: [new X509Certificate(readFileSync(args.caPath))] },
    // One load generator on one address opens every session: the per-source limit would measure itself.
    limits: args.limits ?? {
      handshakesPerSecondPerSource: 1_000_000,
      maxHandshakesPerSource: 100_000,
      maxHandshakesPerPrefix: 100_000,
      maxSessions: 100_000,
    },
    sessionResumption: args.resumption ?? false,
    onInternalError: (err) => process.stderr.write(`internal error: ${String(err)}\n`),
  },
  { router },
);
const { port } = await server.listen(0, '127.0.0.1');
process.stdout.write(`${JSON.stringify({ port, crypto: dtlsCryptoStatus() })}\n`);

createInterface({ input: process.stdin }).on('line', (line) => {
  if (line.trim() === 'gc') {
    (globalThis as { gc?: () => void }).gc?.();
    process.stdout.write('gc done\n');
  }
});
process.stdin.on('end', () => {
  void server.close().then(() => process.exit(0));
});
