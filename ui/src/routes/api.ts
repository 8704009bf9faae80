import { type Context, Hono } from 'hono';
import { z } from 'zod';
import { RETENTION_MS } from '../../../gateway/src/anomaly/activity.ts';
import { assess, gatherLiveEvidence } from '../../../gateway/src/compliance/index.ts';
import type { Core } from '../../../gateway/src/core.ts';
import { body, HttpError } from '../../../gateway/src/http.ts';
import type { UiSessions } from '../../../gateway/src/users/index.ts';
import { type Method, type RouteSpec, routesOf, signedInRule } from '../access.ts';
import { type AuthVars, allow } from '../auth.ts';
import { assertEnforcing, firewallReview, firewallStatus } from '../firewall-review.ts';
import { sessionGuards } from './api-guards.ts';

type Env = { Variables: AuthVars };
type Register = (
  method: Method,
  path: string,
  handler: (c: Context<Env>) => Response | Promise<Response>,
) => void;

export type { RouteSpec };
/** The API routes of the UI's one access table (ui/src/access.ts) but the maintenance ones (their own tests). */
export const API_ROUTES: readonly RouteSpec[] = routesOf('api').filter(
  (r) => !r.path.startsWith('/api/v1/maintenance/'),
);

const id = (c: { req: { param(n: string): string | undefined } }) => c.req.param('id') as string;

const newPskDevice = z
  .strictObject({
    id: z.string().min(1).max(64),
    pskIdentity: z.string().min(1).max(128),
    pskHex: z.string().max(128).optional(),
    generatePsk: z.boolean().optional(),
    segment: z.string().min(1).optional(),
    name: z.string().min(1).max(128).optional(),
    type: z.string().min(1).max(64).optional(),
  })
  .refine((b) => Boolean(b.pskHex) !== Boolean(b.generatePsk), {
    error: 'give exactly one of pskHex or generatePsk',
  });

const quarantineBody = z.strictObject({
  reason: z.string().min(1).max(500),
  mode: z.enum(['observe', 'isolate']).optional(),
});
const reasonBody = z.strictObject({ reason: z.string().min(1).max(500).optional() });

/** The JSON API under /api/v1: the same services as the CLI, every action audited as `ui:<user>`. */
export function apiRoutes(core: Core, sessions: UiSessions): Hono<Env> {
  const app = new Hono<Env>();
  sessionGuards(app, core, sessions);
  const now = () => core.clock.now();
  // Registered only through the access table: a route without a row fails at start.
  const route: Register = (method, path, handler) =>
    app.on(method, path.replace(/^\/api\/v1/, ''), allow(signedInRule('api', method, path), now), handler);
  deviceApi(route, core);
  recordsApi(route, core);
  return app;
}

/** Status and devices: the identity, segmentation and policy services' methods. */
function deviceApi(route: Register, core: Core): void {
  const now = () => core.clock.now();
  route('GET', '/api/v1/status', (c) => c.json(core.status()));
  route('GET', '/api/v1/devices', (c) => c.json(core.identity.list()));
  route('POST', '/api/v1/devices', async (c) => {
    const b = await body(c, newPskDevice);
    const { device, generatedPskHex } = core.identity.addPskDevice(
      {
        id: b.id,
        pskIdentity: b.pskIdentity,
        pskHex: b.pskHex,
        generate: b.generatePsk,
        segment: b.segment,
        name: b.name,
        type: b.type,
      },
      c.get('actor'),
    );
    // The generated key is shown once, to this response only: never cached, never stored in the clear.
    c.header('Cache-Control', 'no-store');
    return c.json({ device, psk: generatedPskHex }, 201);
  });
  route('GET', '/api/v1/devices/:id', (c) => c.json(core.identity.show(id(c))));
  route('POST', '/api/v1/devices/:id/approve', (c) => c.json(core.identity.approve(id(c), c.get('actor'))));
  route('POST', '/api/v1/devices/:id/reject', (c) =>
    c.json(core.identity.reject(id(c), c.get('actor'), 'rejected at onboarding')),
  );
  route('GET', '/api/v1/devices/:id/activity', (c) => {
    const device = core.identity.show(id(c)).device;
    const span = c.req.query('range') === '7d' ? RETENTION_MS : 86_400_000;
    return c.json(core.deviceActivity(device.id, new Date(now() - span).toISOString()));
  });
  route('POST', '/api/v1/devices/:id/quarantine', async (c) => {
    const b = await body(c, quarantineBody);
    return c.json(await core.segmentation.quarantine(id(c), b, c.get('actor')));
  });
  route('POST', '/api/v1/devices/:id/release', async (c) => {
    const b = await body(c, reasonBody);
    return c.json(await core.segmentation.release(id(c), c.get('actor'), b.reason));
  });
  route('POST', '/api/v1/devices/:id/decommission', async (c) => {
    const b = await body(c, reasonBody);
    return c.json(core.identity.decommission(id(c), c.get('actor'), b.reason));
  });
  route('POST', '/api/v1/devices/:id/unlimit', (c) =>
    c.json({ lifted: core.policy.liftRateLimit(id(c), c.get('actor')) }),
  );
}

/** Alerts, audit, firewall, compliance, updates and accounts. */
function recordsApi(route: Register, core: Core): void {
  route('GET', '/api/v1/alerts', (c) => c.json(core.alerts({ open: c.req.query('all') ? undefined : true })));
  route('POST', '/api/v1/alerts/:id/ack', (c) => {
    const n = Number(id(c));
    if (!Number.isSafeInteger(n) || n < 1)
      throw new HttpError(400, 'ERR_UI_INVALID', 'alert id must be a positive integer');
    const alert = core.acknowledgeAlert(n, c.get('actor'));
    return c.json(alert);
  });
  route('GET', '/api/v1/audit', (c) => {
    const from = Math.max(1, Number(c.req.query('from') ?? 1) || 1);
    const limit = Math.min(1000, Math.max(1, Number(c.req.query('limit') ?? 100) || 100));
    const out = [];
    for (const row of core.auditRows(from)) {
      out.push({ ...row, details: JSON.parse(row.details) as unknown });
      if (out.length >= limit) break;
    }
    return c.json(out);
  });
  route('GET', '/api/v1/audit/verify', (c) => c.json(core.audit.verify()));
  route('GET', '/api/v1/firewall', (c) => c.json(firewallStatus(core)));
  route('GET', '/api/v1/segments', (c) => c.json(core.config.segments));
  route('GET', '/api/v1/compliance', async (c) => c.json(assess(core, await gatherLiveEvidence(core))));
  route('GET', '/api/v1/firewall/render', async (c) => c.json(await firewallReview(core)));
  route('POST', '/api/v1/firewall/apply', async (c) => {
    assertEnforcing(core);
    return c.json(await core.segmentation.apply(c.get('actor')));
  });
  // The updates module (tar, semver) loads on the first call, not with the UI.
  route('GET', '/api/v1/updates', async (c) =>
    c.json((await import('../../../gateway/src/updates/index.ts')).updateStatus(core)),
  );
  route('GET', '/api/v1/users', (c) => c.json(core.users.list()));
  route('POST', '/api/v1/users', async (c) => {
    const b = await body(
      c,
      z.strictObject({
        username: z.string(),
        role: z.enum(['admin', 'technician', 'auditor']),
        password: z.string(),
      }),
    );
    const u = await core.users.createUser(b, c.get('actor'));
    return c.json({ username: u.username, role: u.role }, 201);
  });
}
