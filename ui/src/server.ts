import { createServer as createHttpsServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import type { Hono } from 'hono';
import {
  type ConnectionLimits,
  defaultLimits,
  type GuardStats,
  guardConnections,
  serverTimeouts,
} from '../../gateway/src/connection-guard.ts';
import { ListenError } from '../../gateway/src/errors.ts';
import type { Logger } from '../../gateway/src/log.ts';
import { UI_TLS_CIPHERS } from './tls.ts';

export { ListenError };

export interface RunningServer {
  address: AddressInfo;
  /** Open and refused connections (the per-client and total caps). */
  connections(): GuardStats;
  close(): Promise<void>;
}

export function startHttpsServer(
  app: Hono,
  opts: {
    host: string;
    port: number;
    key: string;
    cert: string;
    logger?: Logger;
    /** Tests lower these; the defaults follow the process's descriptor limit. */
    limits?: Partial<ConnectionLimits>;
  },
): Promise<RunningServer> {
  const limits = { ...defaultLimits(), ...opts.limits };
  return new Promise((resolve, reject) => {
    const server = serve({
      fetch: app.fetch,
      hostname: opts.host,
      port: opts.port,
      createServer: createHttpsServer,
      serverOptions: {
        key: opts.key,
        cert: opts.cert,
        minVersion: 'TLSv1.2',
        // TLS 1.2: forward-secret AEAD suites only (no CBC, no static RSA); TLS 1.3 suites are all AEAD.
        ciphers: UI_TLS_CIPHERS,
        honorCipherOrder: true,
        ...serverTimeouts(limits),
      },
    }) as Server;
    const guard = guardConnections(server, limits, { logger: opts.logger, name: 'ui' });
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(new ListenError('ui', opts.host, opts.port, err)),
    );
    server.once('listening', () => {
      resolve({
        address: server.address() as AddressInfo,
        connections: guard.stats,
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done());
            server.closeAllConnections();
          }),
      });
    });
  });
}
