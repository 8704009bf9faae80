import { createServer as createHttpsServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import type { Hono } from 'hono';
import { ListenError } from '../../gateway/src/errors.ts';

export { ListenError };

export interface RunningServer {
  address: AddressInfo;
  close(): Promise<void>;
}

export function startHttpsServer(
  app: Hono,
  opts: { host: string; port: number; key: string; cert: string },
): Promise<RunningServer> {
  return new Promise((resolve, reject) => {
    const server = serve({
      fetch: app.fetch,
      hostname: opts.host,
      port: opts.port,
      createServer: createHttpsServer,
      serverOptions: { key: opts.key, cert: opts.cert, minVersion: 'TLSv1.2' },
    }) as Server;
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(new ListenError('ui', opts.host, opts.port, err)),
    );
    server.once('listening', () => {
      resolve({
        address: server.address() as AddressInfo,
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done());
            server.closeAllConnections();
          }),
      });
    });
  });
}
