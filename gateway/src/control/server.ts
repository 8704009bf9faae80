import { chmodSync, chownSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { getRequestListener } from '@hono/node-server';
import { type Context, Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { z } from 'zod';
import type { AnomalyService } from '../anomaly/index.ts';
import { AuditError, MAX_DETAILS_BYTES } from '../audit/index.ts';
import { ConfigError } from '../config/index.ts';
import { checkSocketPath } from '../config/local-files.ts';
import type { Core } from '../core.ts';
import { EVENT_TYPES, type GatewayEventType } from '../events.ts';
import { findGroupId } from '../groups.ts';
import { errorResponse, HttpError } from '../http.ts';
import type { Uplink } from '../uplink/index.ts';
import { queueFull } from '../uplink/queue-full.ts';
import type { ControlToken, Scope } from '../users/index.ts';
import { AuditWriteLimiter } from './audit-rate.ts';
import { controlBody } from './body.ts';
import { DecisionPoints } from './decisions.ts';

type Env = { Variables: { token: ControlToken; actor: string } };

/** Calls per second per token, beyond which the socket answers 429. */
const CALLS_PER_SECOND = 50;

/**
 * The control API the Node-RED nodes use, on a Unix socket (0660; the flows user reaches it by group). A bearer
 * token with scopes on every call — checked against the store each time, so a revocation is immediate —
 * rate-limited per token; every change is audited as `flows:<token name>`, every refusal too.
 */
export interface ControlDeps {
  /** The running behaviour monitor (absent when anomaly detection is off). */
  anomaly?: AnomalyService;
  /** The durable uplink; flows publish through it, never with keys of their own. */
  uplink?: Uplink;
}

/** How often an open event stream re-checks its token: a revoked token's stream ends within this time. */
const STREAM_RECHECK_MS = 1000;
/** Events a slow reader may have pending before its stream is cut (it reconnects and carries on). */
const STREAM_MAX_PENDING = 10_000;

const ENCODER = new TextEncoder();

/**
 * A token's NDJSON stream: a `stream.open` line, then what `subscribe` writes, until the reader cancels or the
 * token is revoked (re-checked every STREAM_RECHECK_MS). `subscribe` returns its unsubscribe; `stop` ends both.
 */
function tokenStream(
  core: Core,
  stillActive: () => boolean,
  subscribe: (controller: ReadableStreamDefaultController<Uint8Array>, stop: () => void) => () => void,
): Response {
  let off: (() => void) | undefined;
  let timer: NodeJS.Timeout | undefined;
  const stop = () => {
    off?.();
    if (timer) clearInterval(timer);
  };
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      const opened = { type: 'stream.open', ts: new Date(core.clock.now()).toISOString() };
      controller.enqueue(ENCODER.encode(`${JSON.stringify(opened)}\n`));
      off = subscribe(controller, stop);
      timer = setInterval(() => {
        if (!stillActive()) {
          stop();
          controller.close();
        }
      }, STREAM_RECHECK_MS);
      timer.unref();
    },
    cancel: stop,
  });
  return new Response(body, {
    headers: { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' },
  });
}

const publishBody = z.strictObject({
  /** Under `<topicPrefix>/flows/<token name>/`: a flow cannot write into device or command topics. */
  topic: z
    .string()
    .min(1)
    .max(128)
    .regex(/^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/, {
      error: 'topic levels of letters, digits, ".", "_", "-"',
    })
    // MQTT does not resolve ".." — but a reader (or a bridge mapping topics to paths) might: refuse it outright.
    .refine((t) => t.split('/').every((level) => level !== '.' && level !== '..'), {
      error: 'topic levels "." and ".." are not allowed',
    }),
  payload: z.string().max(256 * 1024),
  encoding: z.enum(['utf8', 'base64']).default('utf8'),
  deviceId: z.string().min(1).max(64).optional(),
  contentFormat: z.number().int().min(0).max(65535).nullable().default(null),
});

const scoreBody = z.discriminatedUnion('kind', [
  z.strictObject({
    kind: z.literal('message'),
    bytes: z.number().int().min(0).max(1e9),
    resource: z.string().min(1).max(256).default('/telemetry'),
  }),
  z.strictObject({
    kind: z.literal('connection'),
    dst: z.string().min(1).max(64),
    dport: z.number().int().min(0).max(65535),
    proto: z.enum(['tcp', 'udp']),
  }),
  z.strictObject({ kind: z.literal('auth_failure') }),
]);

const answerBody = z.strictObject({
  id: z.uuid(),
  allow: z.boolean(),
});

/** Refuses (403, audited) a call whose token lacks `scope`. */
function need(core: Core, c: Context<Env>, scope: Scope): void {
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
}

const id = (c: Context<Env>) => c.req.param('id') as string;

/** Body size, then the bearer token (checked against the store on every call) and its rate. */
function guard(app: Hono<Env>, core: Core): void {
  const buckets = new Map<string, { tokens: number; at: number }>();
  // The largest legitimate body is a 256 KiB publish, base64-encoded.
  app.use(
    '*',
    bodyLimit({
      maxSize: 400 * 1024,
      onError: (c) =>
        c.json({ error: { code: 'ERR_CONTROL_TOO_LARGE', message: 'the body is too large' } }, 413),
    }),
  );
  app.use('*', async (c, next) => {
    const presented = /^Bearer (\S+)$/.exec(c.req.header('authorization') ?? '')?.[1];
    const token = core.controlTokens.verify(presented);
    if (!token) throw new HttpError(401, 'ERR_CONTROL_TOKEN', 'missing, unknown or revoked token');
    const now = core.clock.now();
    const b = buckets.get(token.name) ?? { tokens: CALLS_PER_SECOND, at: now };
    b.tokens = Math.min(CALLS_PER_SECOND, b.tokens + ((now - b.at) / 1000) * CALLS_PER_SECOND);
    b.at = now;
    buckets.set(token.name, b);
    if (b.tokens < 1) {
      return c.json(
        { error: { code: 'ERR_CONTROL_RATE', message: `more than ${CALLS_PER_SECOND} calls a second` } },
        429,
        { 'retry-after': '1' },
      );
    }
    b.tokens -= 1;
    c.set('token', token);
    c.set('actor', `flows:${token.name}`);
    await next();
  });
}

/** Reading a device, and scoring an event against its baseline. */
function deviceRoutes(app: Hono<Env>, core: Core, deps: ControlDeps): void {
  app.get('/v1/devices/:id', (c) => {
    need(core, c, 'device:read');
    const device = core.identity.show(id(c)).device;
    const allowList = core.segmentation.allowLists().find((l) => l.deviceId === device.id);
    return c.json({ ...device, allowList: allowList?.entries ?? null });
  });

  /** The per-event score against the device's baseline, without learning from it. */
  app.post('/v1/devices/:id/score', async (c) => {
    need(core, c, 'device:read');
    const b = await controlBody(c, scoreBody);
    const device = core.identity.show(id(c)).device;
    if (!deps.anomaly)
      throw new HttpError(409, 'ERR_CONTROL_STATE', 'behaviour monitoring is off (anomaly.enabled)');
    return c.json(deps.anomaly.detector.scoreEvent({ ...b, ts: core.clock.now(), device: device.id }));
  });
}

/** The two NDJSON streams: events, and the policy questions a flow answers. */
function streamRoutes(app: Hono<Env>, core: Core, points: DecisionPoints): void {
  /**
   * Events as they happen, one JSON object per line (NDJSON), optionally filtered by `types` and `device`.
   * The stream ends when the token is revoked.
   */
  app.get('/v1/events', (c) => {
    need(core, c, 'events:read');
    const types = new Set(
      (c.req.query('types') ?? '')
        .split(',')
        .map((t) => t.trim())
        .filter(Boolean),
    );
    for (const t of types) {
      if (!EVENT_TYPES.includes(t as GatewayEventType))
        throw new HttpError(
          400,
          'ERR_CONTROL_INVALID',
          `unknown event type ${t} (${EVENT_TYPES.join(', ')})`,
        );
    }
    const device = c.req.query('device');
    const token = c.get('token');
    return tokenStream(
      core,
      () => core.controlTokens.isActive(token.name),
      (controller, stop) =>
        core.events.on(
          (e) => {
            if (device && 'deviceId' in e && e.deviceId !== device) return;
            if ((controller.desiredSize ?? 0) < -STREAM_MAX_PENDING) {
              stop();
              controller.error(new Error('reader too slow'));
              return;
            }
            controller.enqueue(ENCODER.encode(`${JSON.stringify(e)}\n`));
          },
          [...types] as GatewayEventType[],
        ),
    );
  });

  /**
   * A flow registers as the decision point of the profiles that name its token (`decision.flow`): questions
   * arrive as NDJSON lines for as long as the stream is open; the token's revocation ends it.
   */
  app.get('/v1/policy/questions', (c) => {
    need(core, c, 'policy:decide');
    const token = c.get('token');
    return tokenStream(
      core,
      () => core.controlTokens.isActive(token.name),
      (controller) => {
        const off = points.register(token.name, {
          send: (line) => {
            // A flow that does not read is no decision point: its questions go unanswered (onTimeout).
            if ((controller.desiredSize ?? 0) < -1000) return false;
            controller.enqueue(ENCODER.encode(line));
            return true;
          },
        });
        core.audit.append({ actor: c.get('actor'), action: 'policy.decider.register', target: token.name });
        return off;
      },
    );
  });

  /** A flow's answer to one question; only the flow asked may answer, and only within the budget. */
  app.post('/v1/policy/answers', async (c) => {
    need(core, c, 'policy:decide');
    const b = await controlBody(c, answerBody);
    const accepted = points.answer(c.get('token').name, b.id, b.allow);
    return c.json({ accepted });
  });
}

/** What a flow may do: publish through the uplink, quarantine, release, lift a rate limit. */
function actionRoutes(app: Hono<Env>, core: Core, deps: ControlDeps): void {
  app.post('/v1/uplink/publish', async (c) => {
    need(core, c, 'uplink:publish');
    const b = await controlBody(c, publishBody);
    if (!deps.uplink) throw new HttpError(409, 'ERR_CONTROL_STATE', 'no uplink is running');
    const payload = Buffer.from(b.payload, b.encoding);
    try {
      await deps.uplink.enqueue({
        deviceId: b.deviceId ?? '',
        payload,
        contentFormat: b.contentFormat,
        credentialKind: 'flow',
        topicSuffix: `flows/${c.get('token').name}/${b.topic}`,
      });
    } catch (err) {
      // The queue is at its bound: not stored, so not 202. The flow's Catch node sees the code and may retry.
      const full = queueFull(err);
      if (!full) throw err;
      return c.json({ error: { code: 'ERR_UPLINK_QUEUE_FULL', message: (err as Error).message } }, 503, {
        'retry-after': String(full.retryAfterSeconds),
      });
    }
    return c.json({ queued: true, bytes: payload.length }, 202);
  });
  app.post('/v1/devices/:id/quarantine', async (c) => {
    need(core, c, 'device:quarantine');
    const b = await controlBody(
      c,
      z.strictObject({ reason: z.string().min(1).max(500), mode: z.enum(['observe', 'isolate']).optional() }),
    );
    // Idempotent for automation: a flow that asks again for a device already quarantined changes nothing.
    const current = core.identity.show(id(c)).device;
    if (current.state === 'quarantined') return c.json({ device: current, unchanged: true });
    return c.json(await core.segmentation.quarantine(id(c), b, c.get('actor')));
  });
  app.post('/v1/devices/:id/release', async (c) => {
    need(core, c, 'device:quarantine');
    const b = await controlBody(c, z.strictObject({ reason: z.string().min(1).max(500).optional() }));
    const current = core.identity.show(id(c)).device;
    if (current.state !== 'quarantined') return c.json({ device: current, unchanged: true });
    return c.json(await core.segmentation.release(id(c), c.get('actor'), b.reason));
  });
  // Lifting an automatic rate limit is undoing a containment, like release: the same scope.
  app.post('/v1/devices/:id/unlimit', async (c) => {
    need(core, c, 'device:quarantine');
    await controlBody(c, z.strictObject({}));
    const device = core.identity.show(id(c)).device;
    return c.json({ lifted: core.policy.liftRateLimit(device.id, c.get('actor')) });
  });
}

/** Audit entries a flow writes, namespaced and rate-limited per token. */
function auditRoute(app: Hono<Env>, core: Core): void {
  const auditWrites = new AuditWriteLimiter();
  app.post('/v1/audit', async (c) => {
    need(core, c, 'audit:write');
    const b = await controlBody(
      c,
      z.strictObject({
        action: z.string().regex(/^[a-z][a-z0-9._-]{0,47}$/),
        target: z.string().max(128).optional(),
        details: z.record(z.string(), z.unknown()).default({}),
      }),
    );
    const bytes = Buffer.byteLength(JSON.stringify(b.details), 'utf8');
    if (bytes > MAX_DETAILS_BYTES) {
      throw new HttpError(
        413,
        'ERR_CONTROL_AUDIT_TOO_LARGE',
        `details are ${bytes} bytes as JSON, more than ${MAX_DETAILS_BYTES}`,
      );
    }
    // Per token, so one compromised flow cannot fill the append-only log (docs/security.md).
    const rate = auditWrites.take(c.get('token').name, bytes, core.clock.now());
    if (!rate.ok) {
      return c.json({ error: { code: 'ERR_CONTROL_AUDIT_RATE', message: rate.why } }, 429, {
        'retry-after': String(rate.retryAfterSeconds),
      });
    }
    try {
      // Namespaced: a flow cannot write an entry that looks like the gateway's own.
      const e = core.audit.append({
        actor: c.get('actor'),
        action: `flow.${b.action}`,
        target: b.target,
        details: b.details,
      });
      return c.json({ seq: e.seq }, 201);
    } catch (err) {
      // What the flow sent, refused by the audit log: its fault (400/413), never the gateway's (500).
      if (err instanceof AuditError && err.code === 'ERR_AUDIT_SECRET_FIELD')
        throw new HttpError(400, 'ERR_CONTROL_SECRET_FIELD', err.message);
      if (err instanceof AuditError && err.code === 'ERR_AUDIT_TOO_LARGE')
        throw new HttpError(413, 'ERR_CONTROL_AUDIT_TOO_LARGE', err.message);
      if (err instanceof AuditError && err.code === 'ERR_AUDIT_INVALID_ENTRY')
        throw new HttpError(400, 'ERR_CONTROL_INVALID', err.message);
      throw err;
    }
  });
}

export function controlApp(core: Core, deps: ControlDeps = {}): Hono<Env> {
  // Profiles with `decision: {flow}` ask the flows registered here; without a control API nobody answers and
  // each such profile fails closed or open as it says.
  const points = new DecisionPoints();
  core.policy.setFlowDecider(points);
  const app = new Hono<Env>();
  guard(app, core);
  deviceRoutes(app, core, deps);
  streamRoutes(app, core, points);
  actionRoutes(app, core, deps);
  auditRoute(app, core);
  app.notFound((c) => c.json({ error: { code: 'ERR_NOT_FOUND', message: 'no such route' } }, 404));
  app.onError((err, c) => errorResponse(c, err));
  return app;
}

export interface ControlServer {
  path: string;
  close(): Promise<void>;
}

export async function startControlServer(
  core: Core,
  path: string,
  deps: ControlDeps & { group?: number } = {},
): Promise<ControlServer> {
  // A socket left by a crash would make listen fail, so it goes; anything else there (a config naming
  // /etc/shadow, a planted symlink) is refused, never deleted.
  if (checkSocketPath(path)) rmSync(path);
  const server: Server = createServer(getRequestListener(controlApp(core, deps).fetch));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve());
  });
  chmodSync(path, 0o660);
  // The flows service reaches the socket through this group; nobody else can connect.
  if (deps.group !== undefined) chownSync(path, -1, deps.group);
  return {
    path,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** The control socket's group id; an unknown group is a start-up error. */
export function groupId(name: string, groupFile = '/etc/group'): number {
  const gid = findGroupId(name, groupFile);
  if (gid !== undefined) return gid;
  throw new ConfigError('ERR_CONFIG_INVALID', `control.socketGroup: no group named ${name}`, [
    { path: 'control.socketGroup', message: `no group named ${name}` },
  ]);
}
