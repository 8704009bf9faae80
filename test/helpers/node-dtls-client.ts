import { createRequire } from 'node:module';

export interface NodeDtlsSocket {
  on(event: 'connected' | 'close', cb: () => void): NodeDtlsSocket;
  on(event: 'message', cb: (m: Buffer) => void): NodeDtlsSocket;
  on(event: 'error', cb: (e: Error) => void): NodeDtlsSocket;
  send(data: Buffer): void;
  close(): void;
}

/** node-dtls-client@1.1.1 (CommonJS, untyped): the independent Node.js DTLS peer. */
export const { dtls } = createRequire(import.meta.url)('node-dtls-client') as {
  dtls: { createSocket(o: Record<string, unknown>): NodeDtlsSocket };
};
