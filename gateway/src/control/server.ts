import { chmodSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { getRequestListener } from '@hono/node-server';
import { type Context, Hono } from 'hono';
import { z } from 'zod';
import type { Core } from '../core.ts';
import { body, errorResponse, HttpError } from '../http.ts';
import { type ControlToken, ControlTokens, type Scope } from './tokens.ts';

type Env = { Variables: { token: ControlToken; actor: string } };

/** Calls per second per token, beyond which the socket answers 429. */
const CALLS_PER_SECOND = 50;

/**
 * The control API the Node-RED nodes use, on a Unix socket (0660; the flows user reaches it by group). A bearer
 * token with scopes on every call — checked against the store each time, so a revocation is immediate —
 * rate-limited per token; every change is audited as `flows:<token name>`, every refusal too.
 */
export function controlApp(core: Core): Hono<Env> {
  const tokens = new ControlTokens(core.store, core.audit, core.clock);
  const buckets = new Map<string, { tokens: number; at: number }>();
  const app = new Hono<Env>();
  app.use('*', async (c, next) => {
    const presented = /^Bearer (\S+)$/.exec(c.req.header('authorization') ?? '')?.[1];
    const token = tokens.verify(presented);
    if (!token) throw new HttpError(401, 'ERR_CONTROL_TOKEN', 'missing, unknown or revoked token');
    const now = core.clock.now();
    const b = buckets.get(token.name) ?? { tokens: CALLS_PER_SECOND, at: now };
    b.tokens = Math.min(CALLS_PER_SECOND, b.tokens + ((now - b.at) / 1000) * CALLS_PER_SECOND);
    b.at = now;
    buckets.set(token.name, b);
    if (b.tokens < 1)
      throw new HttpError(429, 'ERR_CONTROL_RATE', `more than ${CALLS_PER_SECOND} calls a second`);
    b.tokens -= 1;
    c.set('token', token);
    c.set('actor', `flows:${token.name}`);
    await next();
  });
  const need = (c: Context<Env>, scope: Scope) => {
    const t = c.get('token');
    if (!t.scopes.includes(scope)) {
      core.audit.append({
        actor: c.get('actor'),
        action: 'control.denied',
        target: c.req.path,
        details: { scope },
      });
      throw new HttpError(403, 'ERR_CONTROL_SCOPE', `the token lacks the scope ${scope}`);
    }
  };
  const id = (c: Context<Env>) => c.req.param('id') as string;

  app.get('/v1/devices/:id', (c) => {
    need(c, 'device:read');
    return c.json(core.identity.show(id(c)).device);
  });
  app.post('/v1/devices/:id/quarantine', async (c) => {
    need(c, 'device:quarantine');
    const b = await body(
      c,
      z.strictObject({ reason: z.string().min(1).max(500), mode: z.enum(['observe', 'isolate']).optional() }),
    );
    return c.json(await core.segmentation.quarantine(id(c), b, c.get('actor')));
  });
  app.post('/v1/devices/:id/release', async (c) => {
    need(c, 'device:quarantine');
    const b = await body(c, z.strictObject({ reason: z.string().min(1).max(500).optional() }));
    return c.json(await core.segmentation.release(id(c), c.get('actor'), b.reason));
  });
  app.post('/v1/audit', async (c) => {
    need(c, 'audit:write');
    const b = await body(
      c,
      z.strictObject({
        action: z.string().regex(/^[a-z][a-z0-9._-]{0,47}$/),
        target: z.string().max(128).optional(),
        details: z.record(z.string(), z.unknown()).default({}),
      }),
    );
    // Namespaced: a flow cannot write an entry that looks like the gateway's own.
    const e = core.audit.append({
      actor: c.get('actor'),
      action: `flow.${b.action}`,
      target: b.target,
      details: b.details,
    });
    return c.json({ seq: e.seq }, 201);
  });
  app.notFound((c) => c.json({ error: { code: 'ERR_NOT_FOUND', message: 'no such route' } }, 404));
  app.onError((err, c) => errorResponse(c, err));
  return app;
}

export interface ControlServer {
  path: string;
  close(): Promise<void>;
}

export async function startControlServer(core: Core, path: string): Promise<ControlServer> {
  rmSync(path, { force: true }); // a socket left by a crash would make listen fail
  const server: Server = createServer(getRequestListener(controlApp(core).fetch));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve());
  });
  chmodSync(path, 0o660);
  return {
    path,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
