import { writeFileSync } from 'node:fs';
import { request } from 'node:http';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import type { Clock } from '../../gateway/src/clock.ts';
import { resolveConfig } from '../../gateway/src/config/index.ts';
import { startControlServer } from '../../gateway/src/control/server.ts';
import { Core } from '../../gateway/src/core.ts';
import { ControlTokens } from '../../gateway/src/users/index.ts';
import { tempDir } from '../helpers/tmp.ts';

export interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  data: { error?: { code: string; message: string }; seq?: number };
}

const quieted = new WeakSet<Socket>();

/** One call over the real Unix socket; `body` is sent as given (a string or a Buffer is not re-encoded). */
export function call(
  socketPath: string,
  token: string,
  method: string,
  path: string,
  body?: string | Buffer,
  contentType = 'application/json',
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        socketPath,
        method,
        path,
        headers: { authorization: `Bearer ${token}`, 'content-type': contentType },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (d: Buffer) => chunks.push(d));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString();
          let data: Reply['data'];
          try {
            data = JSON.parse(text || '{}') as Reply['data'];
          } catch {
            data = { error: { code: 'NOT_JSON', message: text.slice(0, 200) } };
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, data });
        });
      },
    );
    req.on('error', reject);
    // A server that refuses a large body answers before reading it all and closes: the rest of our write then
    // fails with EPIPE, after the answer has arrived. That is the refusal working, not an error of the test.
    // Once per socket: the global agent keeps sockets alive, and a listener per request on a reused one passed
    // Node's limit of 10 (MaxListenersExceededWarning in the flood tests).
    req.on('socket', (s) => {
      if (quieted.has(s)) return;
      quieted.add(s);
      s.on('error', () => {});
    });
    req.end(body);
  });
}

/** A gateway core (software keystore) with its control socket, and a way to make tokens. */
export async function controlSocket(t: TestContext, clock: Clock) {
  const dir = tempDir(t);
  const config = join(dir, 'config.yaml');
  writeFileSync(config, `dataDir: ${join(dir, 'var')}\n`);
  const core = Core.open(resolveConfig(config).config, clock);
  t.after(() => core.close());
  const server = await startControlServer(core, join(dir, 'control.sock'));
  t.after(() => server.close());
  const tokens = new ControlTokens(core.store, core.audit, clock);
  const token = (name: string, scopes: string[]) => tokens.create(name, scopes, 'cli:test').token;
  const auditCount = () => [...core.audit.entries()].length;
  return { core, socket: server.path, token, auditCount, dir };
}
