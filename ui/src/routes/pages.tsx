import { type Context, Hono, type MiddlewareHandler } from 'hono';
import { deleteCookie, getCookie, setCookie } from 'hono/cookie';
import type { Child } from 'hono/jsx';
import { streamSSE } from 'hono/streaming';
import type { HtmlEscapedString } from 'hono/utils/html';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import { z } from 'zod';
import { RETENTION_MS } from '../../../gateway/src/anomaly/activity.ts';
import type { BehaviourStatus } from '../../../gateway/src/anomaly/index.ts';
import { toJsonLine } from '../../../gateway/src/audit/index.ts';
import { assess, gatherLiveEvidence, toHtml } from '../../../gateway/src/compliance/index.ts';
import type { ConfigApplier } from '../../../gateway/src/config/apply.ts';
import { hostTimePaths, readHostTime } from '../../../gateway/src/config/host-time.ts';
import type { Core } from '../../../gateway/src/core.ts';
import type { HandshakeLog } from '../../../gateway/src/datapath/handshake-log.ts';
import { sha256Hex } from '../../../gateway/src/digest.ts';
import { firstIssue, PortcullisError } from '../../../gateway/src/errors.ts';
import type { FleetRuntimeStatus } from '../../../gateway/src/fleet/view.ts';
import { uiLockedByTamper } from '../../../gateway/src/hardware/index.ts';
import type { RuntimeProbe } from '../../../gateway/src/health.ts';
import { clientAddress, describeError, HttpError } from '../../../gateway/src/http.ts';
import { deviceIdSchema } from '../../../gateway/src/identity/index.ts';
import type { DeviceState, Role } from '../../../gateway/src/store/index.ts';
import type { UplinkStatus } from '../../../gateway/src/uplink/uplink.ts';
import type { UiSession, UiSessions } from '../../../gateway/src/users/index.ts';
import { passwordSchema, SCOPES, usernameSchema } from '../../../gateway/src/users/index.ts';
import { type Method, type RouteSpec, routesOf, signedInRule } from '../access.ts';
import { clearSessionCookie, OPERATORS, sessionFrom, setSessionCookie } from '../auth.ts';
import {
  applyConfigForUi,
  configChangeForm,
  configChangeOf,
  hostTimeForm,
  hostTimeOf,
  setHostTimeForUi,
} from '../config-forms.ts';
import { dnsLookup, hostSchema, portSchema, tcpReach, uplinkTls } from '../diagnostics.ts';
import { assertEnforcing, firewallReview, firewallStatus } from '../firewall-review.ts';
import { handshakeView } from '../handshake-view.ts';
import { type LiveFeed, MAX_STREAMS } from '../live.ts';
import { completeLogin, type LoginThrottle, reauthenticate } from '../login.ts';
import { maintenanceView } from '../maintenance-view.ts';
import { AccountPage } from '../pages/account.tsx';
import { Alerts } from '../pages/alerts.tsx';
import { AuditPage } from '../pages/audit.tsx';
import {
  EnrollPage,
  ErrorPage,
  ForcedPasswordPage,
  LoginPage,
  RecoveryCodesPage,
  SetupPage,
  TotpPage,
} from '../pages/auth.tsx';
import { CompliancePage } from '../pages/compliance.tsx';
import type { TypedChange } from '../pages/config-edit.tsx';
import { ConfigurationPage } from '../pages/configuration.tsx';
import { Dashboard } from '../pages/dashboard.tsx';
import { DeviceDetail, DeviceList, PAGE_SIZE } from '../pages/devices.tsx';
import { DiagnosticsPage } from '../pages/diagnostics.tsx';
import { FleetPage } from '../pages/fleet.tsx';
import { HealthPage } from '../pages/health.tsx';
import { type FlashMessage, Layout, type Viewer } from '../pages/layout.tsx';
import { LEVELS, type LogFilter, LogsPage, parseLogLine } from '../pages/logs.tsx';
import { MaintenancePage } from '../pages/maintenance.tsx';
import { Onboarding, PskCreated } from '../pages/onboarding.tsx';
import { type FirewallView, Segments } from '../pages/segments.tsx';
import { TokenCreated, TokensPage } from '../pages/tokens.tsx';
import { type SessionView, UsersPage } from '../pages/users.tsx';
import { ping, pingCountSchema } from '../ping.ts';
import { SystemMonitor } from '../system.ts';

/** Update status: the updates module (tar, semver) loads with the first page that shows it, not at start. */
const updates = () => import('../../../gateway/src/updates/index.ts');
/** The fleet page's view, loaded with the first visit to it. */
const fleetView = () => import('../../../gateway/src/fleet/view.ts');

/** The QR encoder, loaded on the first page that shows a code (PSK wizard, MFA enrolment), not at start. */
const qrcode = async () => (await import('qrcode')).default;

type Html = HtmlEscapedString | Promise<HtmlEscapedString>;
type Env = { Variables: { viewer: Viewer; session: UiSession } };

/** The page routes of the UI's one access table (ui/src/access.ts), in its order: the role tests walk them. */
export interface PageSpec extends RouteSpec {
  /** A form body that passes validation, for the tests. */
  sample?: Record<string, string>;
}
export const PAGE_ROUTES = routesOf('page') as readonly PageSpec[];

const FLASH_COOKIE = '__Host-portcullis-flash';
const AUDIT_PAGE = 200;

export interface PageOptions {
  pairingOpen: () => boolean;
  uplinkStatus: () => UplinkStatus | undefined;
  /** The device's behaviour model, for the device page (absent where monitoring is off). */
  behaviour?: (deviceId: string) => BehaviourStatus | undefined;
  /** The gateway's recent log lines (pino JSON), for the logs page. */
  logs?: { recent(): string[] } | undefined;
  /** The gateway's running parts, for the health page (absent: what the store knows). */
  runtime?: RuntimeProbe | undefined;
  /** The sensors' recent DTLS handshakes (absent: this process runs no sensor listener). */
  handshakes?: HandshakeLog | undefined;
  /** Applies a configuration change with rollback (absent: the process cannot restart itself). */
  configApply?: ConfigApplier | undefined;
  /** The fleet agent's publications (absent: no uplink, or not this process). */
  fleet?: (() => FleetRuntimeStatus | undefined) | undefined;
  /** Failures that are not the service layer's typed errors: the person sees "internal error", the log why. */
  report: (err: unknown, where: string) => void;
}

/** Form fields as strings; a file or a repeated field where one string belongs is a 400 like any bad field. */
async function form<S extends z.ZodType>(c: Context, schema: S): Promise<z.output<S>> {
  const type = c.req.header('content-type') ?? '';
  if (!type.startsWith('application/x-www-form-urlencoded') && !type.startsWith('multipart/form-data')) {
    throw new HttpError(415, 'ERR_UI_CONTENT_TYPE', 'send a form');
  }
  let raw: Record<string, unknown>;
  try {
    raw = (await c.req.parseBody()) as Record<string, unknown>;
  } catch {
    throw new HttpError(400, 'ERR_UI_INVALID', 'the form could not be read');
  }
  const { _csrf: _, ...fields } = raw;
  const r = schema.safeParse(fields);
  if (!r.success) {
    throw new HttpError(400, 'ERR_UI_INVALID', firstIssue(r.error, 'form'));
  }
  return r.data;
}

/**
 * The raw fields of a form, as strings (or, for the names in `multi`, lists of strings: checkboxes), without
 * the CSRF token; a file is refused.
 */
async function formFields(c: Context, multi: string[] = []): Promise<Record<string, string | string[]>> {
  const type = c.req.header('content-type') ?? '';
  if (!type.startsWith('application/x-www-form-urlencoded') && !type.startsWith('multipart/form-data')) {
    throw new HttpError(415, 'ERR_UI_CONTENT_TYPE', 'send a form');
  }
  let raw: Record<string, unknown>;
  try {
    raw = (await c.req.parseBody({ all: true })) as Record<string, unknown>;
  } catch {
    throw new HttpError(400, 'ERR_UI_INVALID', 'the form could not be read');
  }
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(raw)) {
    if (k === '_csrf') continue;
    const list = Array.isArray(v) ? v : [v];
    if (!list.every((x) => typeof x === 'string')) {
      throw new HttpError(400, 'ERR_UI_INVALID', `${k}: only text fields are accepted`);
    }
    if (multi.includes(k)) out[k] = list as string[];
    else if (list.length !== 1) throw new HttpError(400, 'ERR_UI_INVALID', `${k}: given more than once`);
    else out[k] = list[0] as string;
  }
  return out;
}

const optional = (max: number) =>
  z
    .string()
    .max(max)
    .transform((v) => v.trim() || undefined)
    .optional();
const reauthFields = { password: z.string().min(1).max(256), code: z.string().min(1).max(32) };

/**
 * A cross-site form must not act. Fetch metadata decides where the browser sends it; otherwise the Origin must
 * name this host. A request with neither is not from a browser, so not a cross-site forgery.
 */
function sameOrigin(c: Context): boolean {
  const site = c.req.header('sec-fetch-site');
  if (site !== undefined) return site === 'same-origin';
  const origin = c.req.header('origin');
  if (origin === undefined) return true;
  try {
    return new URL(origin).host === new URL(c.req.url).host;
  } catch {
    return false; // includes "null" (an opaque origin: sandboxed frames, data: pages)
  }
}

/** A same-host path to go back to after a form, from the Referer; never an open redirect. */
function backTo(c: Context, fallback: string): string {
  const ref = c.req.header('referer');
  if (!ref) return fallback;
  try {
    const here = new URL(c.req.url);
    const u = new URL(ref);
    if (u.host !== here.host) return fallback;
    const path = `${u.pathname}${u.search}`;
    // `https://gw//evil.example/x` has the path `//evil.example/x`, which a browser reads in a Location header
    // as another host (scheme-relative): only a path that stays on this host when resolved here goes back.
    if (!path.startsWith('/') || path.startsWith('//') || path.startsWith('/\\')) return fallback;
    if (new URL(path, here).host !== here.host) return fallback;
    return path;
  } catch {
    return fallback;
  }
}

function flashTo(c: Context, to: string, flash: FlashMessage): Response {
  // Only our own short messages (never a secret) ride in the cookie; it lives for the next page only.
  setCookie(c, FLASH_COOKIE, JSON.stringify(flash), {
    secure: true,
    httpOnly: true,
    sameSite: 'Strict',
    path: '/',
    maxAge: 60,
  });
  return c.redirect(to, 303);
}

function takeFlash(c: Context): FlashMessage | undefined {
  const v = getCookie(c, FLASH_COOKIE);
  if (!v) return undefined;
  deleteCookie(c, FLASH_COOKIE, { secure: true, path: '/' });
  try {
    const f = JSON.parse(v) as FlashMessage; // hono's cookie helpers do the URI encoding
    return (f.kind === 'ok' || f.kind === 'error') && typeof f.text === 'string'
      ? { kind: f.kind, text: f.text.slice(0, 300) }
      : undefined;
  } catch {
    return undefined;
  }
}

/** A failure as a page shows it: the same safe message the JSON API gives. */
function describe(err: unknown): { status: ContentfulStatusCode; text: string } {
  const { status, message } = describeError(err);
  return { status, text: message };
}

const sessionId = (tokenHash: string) => sha256Hex(`session:${tokenHash}`).slice(0, 16);

/** The signed-in sessions (of one user, or all) as the pages list them, the viewer's own marked. */
function sessionViews(users: Core['users'], c: Context<Env>, username?: string): SessionView[] {
  const mine = c.get('session').tokenHash;
  return users
    .sessions(username)
    .filter((s) => s.mfaPassed)
    .map((s) => ({
      id: sessionId(s.tokenHash),
      username: s.username,
      createdAt: s.createdAt,
      lastSeenAt: s.lastSeenAt,
      address: s.address,
      current: s.tokenHash === mine,
    }));
}

function sessionById(users: Core['users'], idValue: string, username?: string) {
  const s = users.sessions(username).find((x) => sessionId(x.tokenHash) === idValue);
  if (!s) throw new HttpError(404, 'ERR_UI_NOT_FOUND', 'no such session (it may have ended already)');
  return s;
}

/**
 * Signed-in pages: a session past its second factor, an enabled user (whose forced password change comes
 * first), and on every form the same-origin check, the session's CSRF token and the tamper lock.
 */
function signedInGuard(
  core: Core,
  sessions: UiSessions,
  errorPage: (c: Context, err: unknown) => Response | Promise<Response>,
): MiddlewareHandler<Env> {
  const users = core.users;
  return async (c, next) => {
    const s = sessionFrom(c, sessions);
    if (!s) return c.redirect(users.needsSetup() ? '/setup' : '/login', 303);
    if (!s.mfaPassed) return c.redirect(users.isEnrolled(s.username) ? '/login/totp' : '/login/enroll', 303);
    const user = users.get(s.username);
    if (!user || user.disabledAt) {
      sessions.destroyHash(s.tokenHash);
      clearSessionCookie(c);
      return c.redirect('/login', 303);
    }
    // A password an admin set is replaced before anything else: only the account page and its form work.
    if (user.passwordChangeRequired && !['/account', '/account/password'].includes(c.req.path)) {
      if (c.req.method === 'GET') return c.redirect('/account', 303);
      return errorPage(
        c,
        new HttpError(403, 'ERR_UI_PASSWORD_CHANGE_REQUIRED', 'choose your own password first'),
      );
    }
    if (c.req.method !== 'GET') {
      if (!sameOrigin(c)) return errorPage(c, new HttpError(403, 'ERR_UI_CSRF', 'cross-site form refused'));
      const type = c.req.header('content-type') ?? '';
      const fields = type.includes('form') ? await c.req.parseBody().catch(() => ({})) : {};
      if ((fields as Record<string, unknown>)._csrf !== s.csrf) {
        return errorPage(
          c,
          new HttpError(403, 'ERR_UI_CSRF', 'the form is stale or forged; reload the page'),
        );
      }
      if (!c.req.path.endsWith('/ack') && uiLockedByTamper(core.alerts({ open: true }))) {
        return errorPage(
          c,
          new HttpError(
            423,
            'ERR_UI_TAMPER_LOCK',
            'the enclosure was opened: acknowledge the tamper alert first',
          ),
        );
      }
    }
    c.set('session', s);
    c.set('viewer', { username: s.username, role: user.role, csrf: s.csrf });
    await next();
  };
}

/** Registers a signed-in page under its access-table row: the role check, then the handler's errors as a page. */
function pageRegistrar(
  app: Hono<Env>,
  signedIn: MiddlewareHandler<Env>,
  errorPage: (c: Context, err: unknown) => Response | Promise<Response>,
  options: PageOptions,
): PageKit['page'] {
  return (method: Method, path: string, handler: (c: Context<Env>) => Response | Promise<Response>) => {
    const access = signedInRule('page', method, path);
    app.on(method, path, signedIn, async (c) => {
      const role: Role = c.get('viewer').role;
      if (!access.roles.includes(role)) {
        return errorPage(
          c,
          new HttpError(403, 'ERR_UI_FORBIDDEN', `this needs the role ${access.roles.join(' or ')}`),
        );
      }
      try {
        return await handler(c);
      } catch (err) {
        if (!(err instanceof PortcullisError)) options.report(err, `${method} ${path}`);
        if (method === 'GET') return errorPage(c, err);
        // A failed form goes back where it came from, saying why; nothing was changed by the service.
        return flashTo(c, backTo(c, '/'), { kind: 'error', text: describe(err).text });
      }
    });
  };
}

/** What every group of pages registers with: the services, and the helpers pageRoutes makes per app. */
interface PageKit {
  app: Hono<Env>;
  core: Core;
  sessions: UiSessions;
  feed: LiveFeed;
  options: PageOptions;
  users: Core['users'];
  now: () => number;
  html: (c: Context, status: ContentfulStatusCode, node: Html) => Response | Promise<Response>;
  errorPage: (c: Context, err: unknown) => Response | Promise<Response>;
  page: (method: Method, path: string, handler: (c: Context<Env>) => Response | Promise<Response>) => void;
  render: (
    c: Context<Env>,
    title: string,
    body: Child,
    live?: boolean,
    status?: ContentfulStatusCode,
  ) => Response | Promise<Response>;
  canOperate: (c: Context<Env>) => boolean;
  actor: (c: Context<Env>) => string;
  id: (c: Context<Env>) => string;
  deviceUrl: (deviceId: string) => string;
  reauthed: (c: Context<Env>, b: { password: string; code: string }) => Promise<void>;
}

function dashboardPages(k: PageKit): void {
  const { core, sessions, feed, options, page, render } = k;
  page('GET', '/', async (c) =>
    render(
      c,
      'Dashboard',
      <Dashboard
        status={core.status()}
        uplink={options.uplinkStatus()}
        alerts={core.alerts({ open: true })}
        updates={(await updates()).updateStatus(core)}
      />,
      true,
    ),
  );

  page('GET', '/events', (c) => {
    if (feed.size >= MAX_STREAMS) throw new HttpError(503, 'ERR_UI_BUSY', 'too many live views open');
    const s = c.get('session');
    return streamSSE(c, async (stream) => {
      const unsubscribe = feed.subscribe((topic, data) => {
        void stream.writeSSE({ event: topic, data: JSON.stringify(data) });
      });
      stream.onAbort(unsubscribe);
      // The stream ends with the session (idle or absolute expiry, logout) and never keeps it alive.
      while (!stream.aborted && !stream.closed && sessions.alive(s.tokenHash)) {
        await stream.sleep(5000);
        await stream.write(': keep-alive\n\n');
      }
      unsubscribe();
    });
  });
}

function deviceViewPages(k: PageKit): void {
  const { core, options, now, page, render, canOperate, id } = k;
  const stateSchema = z.enum(['pending', 'active', 'quarantined', 'decommissioned']);
  page('GET', '/devices', (c) => {
    const q = (c.req.query('q') ?? '').trim().toLowerCase().slice(0, 100);
    const stateQ = c.req.query('state') ?? '';
    const state: DeviceState | '' = stateSchema.safeParse(stateQ).success ? (stateQ as DeviceState) : '';
    const segment = (c.req.query('segment') ?? '').slice(0, 64);
    const all = core.identity
      .list(state ? { state } : {})
      .filter(
        (d) =>
          (!segment || d.segment === segment) &&
          (!q || [d.id, d.name, d.type, d.address].some((v) => v?.toLowerCase().includes(q))),
      );
    const pages = Math.max(1, Math.ceil(all.length / PAGE_SIZE));
    const pageNo = Math.min(pages, Math.max(1, Number.parseInt(c.req.query('page') ?? '1', 10) || 1));
    return render(
      c,
      'Devices',
      <DeviceList
        devices={all.slice((pageNo - 1) * PAGE_SIZE, pageNo * PAGE_SIZE)}
        total={all.length}
        filter={{ q, state, segment, page: pageNo }}
        segments={core.segmentation.segments()}
      />,
      true,
    );
  });

  page('GET', '/devices/:id', (c) => {
    const { device, credentials } = core.identity.show(id(c));
    const range = c.req.query('range') === '7d' ? '7d' : '24h';
    const from = now() - (range === '7d' ? RETENTION_MS : 86_400_000);
    const since = new Date(from).toISOString();
    return render(
      c,
      `Device ${device.id}`,
      <DeviceDetail
        data={{
          device,
          credentials,
          activity: core.deviceActivity(device.id, since),
          range,
          from,
          to: now(),
          alerts: core.alerts({ open: true, deviceId: device.id }),
          events: core.searchAudit({ target: device.id, limit: 20 }).filter((e) => e.target === device.id),
          rateLimit: core.policy.rateLimit(device.id),
          behaviour: options.behaviour?.(device.id),
          policy: {
            effective: core.policy.show(device.id),
            refusals: core.policy.refusals(device.id),
            profiles: Object.keys(core.config.policy.profiles).sort(),
            defaultProfile: core.config.policy.defaultProfile ?? null,
          },
          firewallEnforced: core.config.firewall.enforce,
          handshakes:
            options.handshakes?.recent({ deviceId: device.id, address: device.address, limit: 10 }) ?? null,
        }}
        viewer={c.get('viewer')}
        canOperate={canOperate(c)}
      />,
      true,
    );
  });
}

function deviceActionPages(k: PageKit): void {
  const { core, page, actor, id, deviceUrl, reauthed } = k;
  page('POST', '/devices/:id/approve', async (c) => {
    const d = core.identity.approve(id(c), actor(c));
    return flashTo(c, backTo(c, deviceUrl(d.id)), {
      kind: 'ok',
      text: `${d.id} approved: it may now connect.`,
    });
  });
  page('POST', '/devices/:id/reject', async (c) => {
    const d = core.identity.reject(id(c), actor(c), 'rejected at onboarding');
    return flashTo(c, '/onboarding', { kind: 'ok', text: `${d.id} rejected; its credential was erased.` });
  });
  page('POST', '/devices/:id/quarantine', async (c) => {
    const b = await form(
      c,
      z.strictObject({
        reason: z.string().trim().min(1).max(500),
        mode: z.enum(['observe', 'isolate']).optional(),
      }),
    );
    const r = await core.segmentation.quarantine(id(c), b, actor(c));
    const mode = r.device.quarantine?.mode ?? b.mode ?? 'observe';
    const how =
      mode === 'observe'
        ? 'observe: it stays connected and watched, and its readings are refused'
        : 'isolate: its sessions are cut and it cannot connect';
    const fw =
      r.firewall === 'off'
        ? ' The firewall is off (firewall.enforce), so the network does not block it: this acts in the gateway only.'
        : r.firewall === 'no-address'
          ? ' Its network address is not known yet, so the firewall has nothing to block until it connects.'
          : r.firewall === 'enforced'
            ? ' The firewall blocks its address too.'
            : '';
    const text =
      r.firewall === 'failed'
        ? `${id(c)} is quarantined in the gateway, but the firewall did not take it: ${r.error ?? 'see the alerts'}`
        : `${id(c)} quarantined (${how}).${fw}`;
    return flashTo(c, deviceUrl(id(c)), { kind: r.firewall === 'failed' ? 'error' : 'ok', text });
  });
  // The profile only; overrides are set with `portcullis device profile --overrides` (docs/policy.md).
  page('POST', '/devices/:id/profile', async (c) => {
    const b = await form(c, z.strictObject({ profile: z.string().max(32) }));
    const eff = core.policy.assign(id(c), { profile: b.profile === '' ? null : b.profile }, actor(c));
    return flashTo(c, deviceUrl(id(c)), {
      kind: 'ok',
      text: `${id(c)} now takes ${eff.profile ? `the profile ${eff.profile}` : 'no profile (known and active only)'}; it applies to its next message.`,
    });
  });
  page('POST', '/devices/:id/release', async (c) => {
    const b = await form(c, z.strictObject({ reason: optional(500) }));
    await core.segmentation.release(id(c), actor(c), b.reason);
    return flashTo(c, deviceUrl(id(c)), { kind: 'ok', text: `${id(c)} released.` });
  });
  page('POST', '/devices/:id/unlimit', async (c) => {
    const b = await form(c, z.strictObject(reauthFields));
    const d = core.identity.show(id(c)).device;
    // Nothing to lift answers before the password is checked (a stale page is not a failed login).
    if (!core.policy.rateLimit(d.id))
      return flashTo(c, deviceUrl(d.id), { kind: 'ok', text: `${d.id} has no rate limit.` });
    await reauthed(c, b);
    const lifted = core.policy.liftRateLimit(d.id, actor(c));
    return flashTo(c, deviceUrl(d.id), {
      kind: 'ok',
      text: lifted ? `${d.id}: rate limit lifted.` : `${d.id} has no rate limit.`,
    });
  });
  page('POST', '/devices/:id/decommission', async (c) => {
    const b = await form(c, z.strictObject({ reason: optional(500), ...reauthFields }));
    await reauthed(c, b);
    const d = core.identity.decommission(id(c), actor(c), b.reason);
    return flashTo(c, deviceUrl(d.id), {
      kind: 'ok',
      text: `${d.id} decommissioned; its credentials were erased.`,
    });
  });
}

function onboardingPages(k: PageKit): void {
  const { core, page, render, canOperate } = k;
  page('GET', '/onboarding', (c) =>
    render(
      c,
      'Onboarding',
      <Onboarding
        pending={core.identity.list({ state: 'pending' }).map((d) => core.identity.show(d.id))}
        segments={core.segmentation.segments()}
        viewer={c.get('viewer')}
        canOperate={canOperate(c)}
      />,
      true,
    ),
  );
}

/** The PSK wizard's form, and its fields' names as its errors say them. */
const pskWizard = z.strictObject({
  id: deviceIdSchema,
  pskIdentity: z.string().trim().min(1, { error: 'is required' }).max(128),
  pskHex: z
    .string()
    .max(128)
    .transform((v) => v.replace(/[\s:]/g, '') || undefined)
    .pipe(
      z
        .string()
        .regex(/^([0-9a-fA-F]{2}){16,64}$/, { error: 'must be 16 to 64 bytes written as hex' })
        .optional(),
    )
    .optional(),
  name: optional(128),
  type: optional(64),
  segment: optional(64),
});
const PSK_FIELDS: Record<string, string> = {
  id: 'Device id',
  pskIdentity: 'PSK identity',
  pskHex: 'Key',
  name: 'Name',
  type: 'Type',
  segment: 'Segment',
};

function pskWizardPages(k: PageKit): void {
  const { core, html, page, render, canOperate, actor } = k;
  page('POST', '/onboarding/psk', async (c) => {
    const raw = await formFields(c);
    const kept = {
      values: Object.fromEntries(
        Object.entries(raw).filter(([k]) => k !== 'pskHex' && k in PSK_FIELDS),
      ) as Record<string, string>,
    };
    const again = (errors: string[]) =>
      html(
        c,
        400,
        <Layout
          title="Onboarding"
          path="/onboarding"
          viewer={c.get('viewer')}
          flash={{
            kind: 'error',
            text:
              errors.length === 1
                ? (errors[0] as string)
                : `The device was not created: ${errors.length} problems, listed above the form.`,
          }}
        >
          <Onboarding
            pending={core.identity.list({ state: 'pending' }).map((d) => core.identity.show(d.id))}
            segments={core.segmentation.segments()}
            viewer={c.get('viewer')}
            canOperate={canOperate(c)}
            kept={{ ...kept, errors }}
          />
        </Layout>,
      );
    // Every problem at once (not the first only), and the fields kept — except a typed key, which is
    // never sent back in a page.
    const parsed = pskWizard.safeParse(raw);
    if (!parsed.success) {
      return again(
        parsed.error.issues.map(
          (i) => `${PSK_FIELDS[String(i.path[0])] ?? String(i.path[0] ?? 'form')} ${i.message}`,
        ),
      );
    }
    const b = parsed.data;
    let created: ReturnType<Core['identity']['addPskDevice']>;
    try {
      created = core.identity.addPskDevice({ ...b, generate: !b.pskHex }, actor(c));
    } catch (err) {
      if (!(err instanceof PortcullisError)) throw err;
      return again([describe(err).text]);
    }
    const { device, generatedPskHex } = created;
    // The key is shown in this response only: never stored in the clear, never in a redirect or a cache.
    const qrSvg = generatedPskHex
      ? await (await qrcode()).toString(
          `portcullis-psk:v1?${new URLSearchParams({ id: device.id, identity: b.pskIdentity, psk: generatedPskHex })}`,
          { type: 'svg', errorCorrectionLevel: 'M', margin: 2 },
        )
      : null;
    return render(
      c,
      `Device ${device.id} created`,
      <PskCreated device={device} identity={b.pskIdentity} pskHex={generatedPskHex} qrSvg={qrSvg} />,
    );
  });
}

function alertSegmentPages(k: PageKit): void {
  const { core, page, render, canOperate, actor, id, reauthed } = k;
  page('GET', '/alerts', (c) => {
    const all = c.req.query('all') === '1';
    return render(
      c,
      'Alerts',
      <Alerts
        alerts={core.alerts({ open: all ? undefined : true })}
        all={all}
        viewer={c.get('viewer')}
        canOperate={canOperate(c)}
        locked={uiLockedByTamper(core.alerts({ open: true }))}
      />,
      true,
    );
  });
  page('POST', '/alerts/:id/ack', (c) => {
    const n = Number(id(c));
    if (!Number.isSafeInteger(n) || n < 1)
      throw new HttpError(400, 'ERR_UI_INVALID', 'alert id must be a positive integer');
    core.acknowledgeAlert(n, actor(c));
    return flashTo(c, backTo(c, '/alerts'), { kind: 'ok', text: `Alert ${n} acknowledged.` });
  });

  page('GET', '/segments', async (c) => {
    const members = new Map<string, number>();
    for (const d of core.identity.list()) {
      if (d.segment && d.state !== 'decommissioned')
        members.set(d.segment, (members.get(d.segment) ?? 0) + 1);
    }
    let rendered: FirewallView['rendered'];
    try {
      const r = await firewallReview(core);
      rendered = {
        hash: r.hash,
        changed: r.changed,
        warnings: r.warnings,
        diff: [...r.diff.iptables, ...r.diff.ipsets],
      };
    } catch (err) {
      rendered = { error: describe(err).text };
    }
    return render(
      c,
      'Segments',
      <Segments
        segments={core.config.segments}
        members={members}
        viewer={c.get('viewer')}
        firewall={{ ...firewallStatus(core), rendered }}
      />,
    );
  });
  page('POST', '/segments/apply', async (c) => {
    // Before the password is even looked at: with enforcement off there is nothing to apply.
    assertEnforcing(core);
    const b = await form(c, z.strictObject({ hash: z.string().min(1).max(128), ...reauthFields }));
    await reauthed(c, b);
    // What is applied must be what was reviewed: a change in between sends the technician back to look again.
    const current = await core.segmentation.render();
    if (current.hash !== b.hash) {
      return flashTo(c, '/segments', {
        kind: 'error',
        text: 'the ruleset changed since you reviewed it; review the new difference and apply again',
      });
    }
    // A failure throws: the applier has already restored the previous rules, and the flash says why.
    const r = await core.segmentation.apply(actor(c));
    return flashTo(c, '/segments', {
      kind: 'ok',
      text: `Ruleset ${r.hash.slice(0, 12)} is in force (${r.rules} rules).`,
    });
  });
}

function auditCompliancePages(k: PageKit): void {
  const { core, page, render, actor } = k;
  const auditFilter = (c: Context<Env>) => ({
    actor: (c.req.query('actor') ?? '').slice(0, 64),
    action: (c.req.query('action') ?? '').slice(0, 64),
    target: (c.req.query('target') ?? '').slice(0, 128),
  });
  page('GET', '/audit', (c) => {
    const f = auditFilter(c);
    const before = Number.parseInt(c.req.query('before') ?? '', 10);
    const rows = core.searchAudit({
      actor: f.actor || undefined,
      action: f.action || undefined,
      target: f.target || undefined,
      beforeSeq: Number.isSafeInteger(before) && before > 0 ? before : undefined,
      limit: AUDIT_PAGE,
    });
    const verify = c.req.query('verify') === '1' ? core.audit.verify() : undefined;
    return render(
      c,
      'Audit log',
      <AuditPage rows={rows} filter={{ ...f, before: undefined }} verify={verify} pageSize={AUDIT_PAGE} />,
    );
  });
  page('GET', '/audit/export', (c) => {
    const f = auditFilter(c);
    const has = (v: string | null, part: string) =>
      !part || (v ?? '').toLowerCase().includes(part.toLowerCase());
    const lines: string[] = [];
    for (const e of core.audit.entries()) {
      if (has(e.actor, f.actor) && has(e.action, f.action) && has(e.target, f.target))
        lines.push(toJsonLine(e));
    }
    core.audit.append({
      actor: actor(c),
      action: 'audit.export',
      details: { entries: lines.length, filter: f },
    });
    c.header('Content-Type', 'application/x-ndjson; charset=utf-8');
    c.header('Content-Disposition', 'attachment; filename="portcullis-audit.jsonl"');
    c.header('Cache-Control', 'no-store');
    return c.body(lines.map((l) => `${l}\n`).join(''));
  });

  // The firewall is read back from the kernel for each report: "in force" is never the config flag alone.
  const report = async () => assess(core, await gatherLiveEvidence(core));
  page('GET', '/compliance', async (c) =>
    render(c, 'Compliance', <CompliancePage report={await report()} />),
  );
  page('GET', '/compliance/report', async (c) => {
    // Opens in the browser to be read and printed; "save as" still gives the file its name.
    c.header('Content-Disposition', 'inline; filename="portcullis-compliance.html"');
    c.header('Cache-Control', 'no-store');
    return c.html(toHtml(await report()));
  });

  /** A session as pages show it: a short digest of the stored hash names it (never the token). */
}

function userPages(k: PageKit): void {
  const { users, now, page, render, actor, id, reauthed } = k;
  page('GET', '/users', (c) =>
    render(
      c,
      'Users',
      <UsersPage
        users={users.list()}
        viewer={c.get('viewer')}
        sessions={sessionViews(users, c)}
        now={now()}
      />,
    ),
  );
  page('POST', '/users/:id/manage', async (c) => {
    const b = await form(
      c,
      z.strictObject({
        op: z.enum(['reset-password', 'reset-mfa', 'disable', 'enable', 'delete']),
        newPassword: z.string().max(256).optional(),
        ...reauthFields,
      }),
    );
    const target = id(c);
    // Checked before the password is: a wrong target costs nobody a failed login.
    if (!users.get(target)) throw new HttpError(404, 'ERR_UI_NOT_FOUND', `no account ${target}`);
    if (b.op === 'reset-password') {
      const pw = passwordSchema.safeParse(b.newPassword ?? '');
      if (!pw.success)
        throw new HttpError(400, 'ERR_UI_INVALID', `new password ${pw.error.issues[0]?.message}`);
    }
    await reauthed(c, b);
    let text: string;
    switch (b.op) {
      case 'reset-password': {
        const r = await users.resetPassword(target, b.newPassword ?? '', actor(c));
        text = `New password set for ${target}; they must change it at their next login (${r.sessionsEnded} session(s) ended).`;
        break;
      }
      case 'reset-mfa':
        users.resetMfa(target, actor(c));
        text = `Second factor of ${target} reset: they enrol an authenticator at their next login.`;
        break;
      case 'disable':
        users.setEnabled(target, false, actor(c));
        text = `${target} disabled; their sessions ended.`;
        break;
      case 'enable':
        users.setEnabled(target, true, actor(c));
        text = `${target} enabled.`;
        break;
      case 'delete':
        users.deleteUser(target, actor(c));
        text = `${target} deleted.`;
        break;
    }
    return flashTo(c, '/users', { kind: 'ok', text });
  });
  page('POST', '/users/sessions/revoke', async (c) => {
    const b = await form(c, z.strictObject({ session: z.string().min(1).max(64) }));
    const s = sessionById(users, b.session);
    users.revokeSession(s.tokenHash, actor(c));
    return flashTo(c, '/users', { kind: 'ok', text: `A session of ${s.username} was ended.` });
  });
}

function logPages(k: PageKit): void {
  const { options, page, render } = k;
  const logFilter = (c: Context<Env>): LogFilter => {
    const level = c.req.query('level') ?? 'info';
    return {
      level: level in LEVELS ? level : 'info',
      q: (c.req.query('q') ?? '').slice(0, 100),
      device: (c.req.query('device') ?? '').slice(0, 64),
    };
  };
  const logLines = (f: LogFilter) => {
    const raw = options.logs?.recent();
    if (!raw) return null;
    const min = LEVELS[f.level] ?? 30;
    const q = f.q.toLowerCase();
    const out: { raw: string; line: ReturnType<typeof parseLogLine> }[] = [];
    for (let i = raw.length - 1; i >= 0; i--) {
      const line = parseLogLine(raw[i] as string);
      if (line.level < min) continue;
      if (f.device && line.deviceId !== f.device) continue;
      if (q && !`${line.msg} ${line.fields}`.toLowerCase().includes(q)) continue;
      out.push({ raw: raw[i] as string, line });
    }
    return { total: raw.length, out };
  };
  page('GET', '/logs', (c) => {
    const f = logFilter(c);
    const r = logLines(f);
    return render(
      c,
      'Gateway log',
      <LogsPage lines={r ? r.out.map((x) => x.line) : null} total={r?.total ?? 0} filter={f} shown={500} />,
    );
  });
  page('GET', '/logs/download', (c) => {
    const r = logLines(logFilter(c));
    // No kept log (an embedded start): the log page says where the log is instead.
    if (!r) return c.redirect('/logs', 303);
    c.header('Content-Type', 'application/x-ndjson; charset=utf-8');
    c.header('Content-Disposition', 'attachment; filename="portcullis-gateway-log.jsonl"');
    c.header('Cache-Control', 'no-store');
    // Oldest first, as a log reads.
    return c.body(
      r.out
        .map((x) => `${x.raw}\n`)
        .reverse()
        .join(''),
    );
  });

  // Diagnostics answer with the page and the result (nothing changed, so no redirect); every run is audited.
}

type DiagnosticsAnswer = (
  c: Context<Env>,
  results: Parameters<typeof DiagnosticsPage>[0]['results'],
  values?: Record<string, string>,
) => Response | Promise<Response>;

/** The diagnostics page with a result (and the form as typed): every form of it answers this way. */
function diagnosticsAnswer(k: PageKit): DiagnosticsAnswer {
  return (c, results, values) =>
    k.render(
      c,
      'Diagnostics',
      <DiagnosticsPage
        viewer={c.get('viewer')}
        results={results}
        values={values}
        handshakes={handshakeView(k.options.handshakes, c.req.query())}
      />,
    );
}

function diagnosticsPages(k: PageKit): void {
  const { core, page, actor } = k;
  const diagnostics = diagnosticsAnswer(k);
  page('GET', '/diagnostics', (c) => diagnostics(c, {}));
  // A refused form is answered here with what was typed (as ping's): a flash back to the Referer went to
  // /diagnostics/dns itself after a first lookup, which has no GET (404). A reload of a result page goes back too.
  for (const path of ['/diagnostics/dns', '/diagnostics/reach', '/diagnostics/ping', '/diagnostics/uplink']) {
    page('GET', path, (c) => c.redirect('/diagnostics', 303));
  }
  page('POST', '/diagnostics/dns', async (c) => {
    const raw = await formFields(c);
    const parsed = z.strictObject({ name: hostSchema }).safeParse(raw);
    if (!parsed.success) {
      const name = String(raw.name ?? '').slice(0, 253);
      return diagnostics(
        c,
        { invalid: { form: 'dns', message: firstIssue(parsed.error, 'form') } },
        { name },
      );
    }
    const b = parsed.data;
    const dns = await dnsLookup(b.name);
    core.audit.append({
      actor: actor(c),
      action: 'diagnostics.dns',
      target: b.name,
      details: { ok: !dns.error },
    });
    return diagnostics(c, { dns }, { name: b.name });
  });
  page('POST', '/diagnostics/reach', async (c) => {
    const raw = await formFields(c);
    const parsed = z.strictObject({ host: hostSchema, port: portSchema }).safeParse(raw);
    if (!parsed.success) {
      const host = String(raw.host ?? '').slice(0, 253);
      const port = String(raw.port ?? '').slice(0, 5);
      return diagnostics(
        c,
        { invalid: { form: 'reach', message: firstIssue(parsed.error, 'form') } },
        { host, port },
      );
    }
    const b = parsed.data;
    const reach = await tcpReach(b.host, b.port);
    core.audit.append({
      actor: actor(c),
      action: 'diagnostics.reach',
      target: `${b.host}:${b.port}`,
      details: { ok: reach.ok },
    });
    return diagnostics(c, { reach }, { host: b.host, port: String(b.port) });
  });
  page('POST', '/diagnostics/uplink', async (c) => {
    await form(c, z.strictObject({}));
    const uplink = await uplinkTls(core);
    core.audit.append({
      actor: actor(c),
      action: 'diagnostics.uplink',
      target: uplink.url ?? null,
      details: { ok: uplink.ok ?? false, trusted: uplink.trusted ?? false },
    });
    return diagnostics(c, { uplink });
  });
  pingPage(k, diagnostics);
}

/** Ping from the gateway (admins): refused as typed, in place; the count bounded. */
function pingPage(k: PageKit, diagnostics: DiagnosticsAnswer): void {
  const { core, page, actor } = k;
  page('POST', '/diagnostics/ping', async (c) => {
    const raw = await formFields(c);
    const parsed = z.strictObject({ host: hostSchema, count: pingCountSchema }).safeParse(raw);
    if (!parsed.success) {
      // Answered here, with the form as typed (as DNS and reach are).
      const problem = { code: 'ERR_UI_INVALID', message: firstIssue(parsed.error, 'form') };
      const host = String(raw.host ?? '').slice(0, 253);
      return diagnostics(c, { ping: { host, count: 0, error: problem } }, { pingHost: host });
    }
    const b = parsed.data;
    const r = await ping(b.host, b.count);
    core.audit.append({
      actor: actor(c),
      action: 'diagnostics.ping',
      target: b.host,
      details: { count: b.count, received: r.received ?? 0, ...(r.error ? { error: r.error.code } : {}) },
    });
    return diagnostics(c, { ping: r }, { pingHost: b.host, pingCount: String(b.count) });
  });
}

function maintenanceConfigPages(k: PageKit): void {
  const { core, options, page, render } = k;
  page('GET', '/maintenance', async (c) =>
    render(
      c,
      'Maintenance',
      <MaintenancePage v={await maintenanceView(core, c.get('viewer').role === 'admin')} />,
    ),
  );

  page('GET', '/fleet', async (c) =>
    render(
      c,
      'Fleet',
      <FleetPage view={(await fleetView()).fleetPageView(core)} runtime={options.fleet?.()} />,
    ),
  );

  configurationPages(k);
}

/** The configuration page and its forms (uplink, segments, clock), each refused as typed, in place. */
function configurationPages(k: PageKit): void {
  const { core, options, page, render, actor, reauthed } = k;
  const configurationPage = (c: Context<Env>, typed?: TypedChange, status: ContentfulStatusCode = 200) =>
    render(
      c,
      'Configuration',
      <ConfigurationPage
        config={core.config}
        viewer={c.get('viewer')}
        edit={{
          editable: options.configApply?.canApply() ?? false,
          status: options.configApply?.status() ?? null,
          hostTime: readHostTime(hostTimePaths()),
          typed,
        }}
      />,
      false,
      status,
    );
  /**
   * A refused change is answered here, its form filled in as typed (never the password or code) with the
   * reason beside it: a flash back to the page in force made the technician type it all again.
   */
  const refusedAsTyped = async (
    c: Context<Env>,
    typed: Omit<TypedChange, 'error'>,
    run: () => Promise<Response>,
  ): Promise<Response> => {
    try {
      return await run();
    } catch (err) {
      if (!(err instanceof PortcullisError)) throw err;
      const d = describe(err);
      return configurationPage(c, { ...typed, error: d.text }, d.status);
    }
  };
  page('GET', '/configuration', (c) => configurationPage(c));
  // The address a refused change was answered at, reloaded: the page again, never a 404.
  page('GET', '/configuration/apply', (c) => c.redirect('/configuration', 303));
  page('GET', '/configuration/time', (c) => c.redirect('/configuration', 303));
  page('POST', '/configuration/apply', async (c) => {
    const b = await form(c, configChangeForm);
    const values: Record<string, string> =
      b.part === 'uplink'
        ? { url: b.url ?? '', topicPrefix: b.topicPrefix ?? '', caPem: b.caPem ?? '' }
        : { segments: b.segments ?? '' };
    return refusedAsTyped(c, { form: b.part, values }, async () => {
      // Refused before the password is checked: a process that cannot restart itself changes nothing.
      const applier = options.configApply;
      if (!applier) {
        throw new HttpError(409, 'ERR_CONFIG_APPLY_STATE', 'this gateway process cannot restart itself');
      }
      // An invalid change is refused with the schema's words before the password and code are spent on it.
      applyConfigForUi(applier, configChangeOf(b), actor(c), true);
      await reauthed(c, b);
      const r = applyConfigForUi(applier, configChangeOf(b), actor(c), false);
      return flashTo(c, '/configuration', {
        kind: 'ok',
        text: `Applying ${r.changed.join(', ')}: the gateway restarts with it and must come back healthy, or the previous file is put back. Reload this page in a few seconds for the result.`,
      });
    });
  });
  page('POST', '/configuration/time', async (c) => {
    const b = await form(c, hostTimeForm);
    return refusedAsTyped(c, { form: 'clock', values: { timeZone: b.timeZone, ntp: b.ntp } }, async () => {
      const paths = hostTimePaths();
      const next = hostTimeOf(b, readHostTime(paths));
      await reauthed(c, b);
      const { changed } = await setHostTimeForUi(next, paths);
      core.audit.append({ actor: actor(c), action: 'host.time', target: null, details: { changed } });
      return flashTo(c, '/configuration', {
        kind: 'ok',
        text: `Clock settings changed: ${changed.join(', ')}.`,
      });
    });
  });
}

function uplinkCertificatePages(k: PageKit): void {
  const { core, page, actor, reauthed } = k;
  page('POST', '/configuration/uplink-csr', async (c) => {
    const b = await form(
      c,
      z.strictObject({
        // A distinguished name in OpenSSL's one-line form: attribute=value pairs, nothing else.
        subject: z
          .string()
          .trim()
          .max(200)
          .regex(/^\/?[A-Za-z]{1,16}=[^=,/]{1,64}(?:[,/][A-Za-z]{1,16}=[^=,/]{1,64}){0,7}$/, {
            error: 'must be like CN=gateway-1 or CN=gateway-1,O=Example',
          }),
      }),
    );
    const keystore = core.keystore as NonNullable<Core['keystore']>;
    const pem = await keystore.uplinkCsr(b.subject);
    core.audit.append({ actor: actor(c), action: 'uplink.csr', target: b.subject, details: {} });
    c.header('Content-Type', 'application/pkcs10; charset=utf-8');
    c.header('Content-Disposition', 'attachment; filename="portcullis-uplink.csr"');
    c.header('Cache-Control', 'no-store');
    return c.body(pem.endsWith('\n') ? pem : `${pem}\n`);
  });

  page('POST', '/configuration/uplink-certificate', async (c) => {
    const b = await form(c, z.strictObject({ certificate: z.string().max(16_384), ...reauthFields }));
    if (!core.config.uplink?.certFile) {
      throw new HttpError(409, 'ERR_UPLINK_CERT_STATE', 'uplink.certFile is not set in the configuration');
    }
    await reauthed(c, b);
    const { installUplinkCertificate } = await import('../../../gateway/src/uplink/certificate-install.ts');
    const r = await installUplinkCertificate(
      {
        config: core.config,
        keystore: core.keystore as NonNullable<Core['keystore']>,
        audit: core.audit,
        clock: core.clock,
      },
      b.certificate,
      actor(c),
    );
    return flashTo(c, '/configuration', {
      kind: 'ok',
      text: `Certificate ${r.subject} (until ${r.notAfter.slice(0, 10)}) written to ${r.file}${r.replaced ? '; it replaces the previous one from the next start' : ''}.`,
    });
  });
}

function accountPages(k: PageKit): void {
  const { core, options, users, now, html, page, render, actor } = k;
  const monitor = new SystemMonitor(core, options.runtime);
  page('GET', '/health', (c) => render(c, 'Health', <HealthPage h={monitor.read()} now={now()} />));

  page('GET', '/account', (c) => {
    const v = c.get('viewer');
    if (users.get(v.username)?.passwordChangeRequired) {
      return html(c, 200, <ForcedPasswordPage csrf={v.csrf} flash={takeFlash(c)} />);
    }
    return render(
      c,
      'Account',
      <AccountPage
        viewer={v}
        enrolledAt={users.get(v.username)?.totpEnrolledAt ?? null}
        sessions={sessionViews(users, c, v.username)}
        now={now()}
      />,
    );
  });
  page('POST', '/account/password', async (c) => {
    const b = await form(
      c,
      z.strictObject({
        current: z.string().min(1).max(256),
        next: z.string().max(256),
        again: z.string().max(256),
      }),
    );
    // Every problem with the new password at once, before the current one is checked (no failed login).
    const problems: string[] = [];
    const pw = passwordSchema.safeParse(b.next);
    if (!pw.success) problems.push(`new password ${pw.error.issues[0]?.message}`);
    if (b.next !== b.again) problems.push('the two new passwords differ');
    if (problems.length > 0) throw new HttpError(400, 'ERR_UI_INVALID', problems.join('; '));
    const s = c.get('session');
    const r = await users.changePassword(s.username, b.current, b.next, clientAddress(c), s.tokenHash);
    return flashTo(c, '/account', {
      kind: 'ok',
      text: `Password changed${r.sessionsEnded ? `; ${r.sessionsEnded} other session(s) ended` : ''}.`,
    });
  });
  page('POST', '/account/sessions/revoke', async (c) => {
    const b = await form(c, z.strictObject({ session: z.string().min(1).max(64) }));
    // Only one's own sessions: another account's session is "not found" here, whatever its id.
    const s = sessionById(users, b.session, c.get('viewer').username);
    users.revokeSession(s.tokenHash, actor(c));
    return flashTo(c, '/account', { kind: 'ok', text: 'The session was ended.' });
  });
}

function tokenPages(k: PageKit): void {
  const { core, users, page, render, actor, id, reauthed } = k;
  const tokens = core.controlTokens;
  page('GET', '/tokens', (c) =>
    render(c, 'Flow tokens', <TokensPage tokens={tokens.list()} scopes={SCOPES} viewer={c.get('viewer')} />),
  );
  page('POST', '/tokens', async (c) => {
    const raw = await formFields(c, ['scopes']);
    const b = z
      .strictObject({
        name: z.string().trim().min(1).max(32),
        scopes: z.array(z.enum(SCOPES)).min(1, { error: 'choose at least one scope' }),
        ...reauthFields,
      })
      .safeParse({ ...raw, scopes: raw.scopes ?? [] });
    if (!b.success) throw new HttpError(400, 'ERR_UI_INVALID', firstIssue(b.error, 'form'));
    await reauthed(c, b.data);
    const { token, info } = tokens.create(b.data.name, b.data.scopes, actor(c));
    // The token is in this response only (no-store), never in a redirect, a flash or the log.
    return render(
      c,
      `Token ${info.name} created`,
      <TokenCreated name={info.name} token={token} scopes={info.scopes} />,
    );
  });
  page('POST', '/tokens/:id/revoke', (c) => {
    tokens.revoke(id(c), actor(c));
    return flashTo(c, '/tokens', {
      kind: 'ok',
      text: `Token ${id(c)} revoked: flows using it stop at once.`,
    });
  });
  page('POST', '/users', async (c) => {
    const b = await form(
      c,
      z.strictObject({
        username: z.string().trim().min(1).max(64),
        role: z.enum(['admin', 'technician', 'auditor']),
        newPassword: z.string().min(1).max(256),
        ...reauthFields,
      }),
    );
    await reauthed(c, b);
    const u = await users.createUser(
      { username: b.username, role: b.role, password: b.newPassword },
      actor(c),
    );
    return flashTo(c, '/users', { kind: 'ok', text: `User ${u.username} (${u.role}) added.` });
  });
}

/**
 * The server-rendered pages: plain HTML forms (no script needed), POST-redirect-GET with a one-page flash,
 * the session's CSRF token in every form plus a same-origin check, roles enforced per route exactly as in the
 * JSON API, and dangerous actions re-authenticated inside their own form.
 */
export function pageRoutes(
  core: Core,
  sessions: UiSessions,
  feed: LiveFeed,
  options: PageOptions,
): Hono<Env> {
  const app = new Hono<Env>();
  const users = core.users;
  const now = () => core.clock.now();

  const html = (c: Context, status: ContentfulStatusCode, node: Html) => {
    c.header('Cache-Control', 'no-store');
    return c.html(node, status);
  };
  const errorPage = (c: Context, err: unknown) => {
    const { status, text } = describe(err);
    return html(c, status, <ErrorPage status={status} message={text} />);
  };

  const signedIn = signedInGuard(core, sessions, errorPage);

  const page = pageRegistrar(app, signedIn, errorPage, options);
  const render = (
    c: Context<Env>,
    title: string,
    body: Child,
    live = false,
    status: ContentfulStatusCode = 200,
  ) =>
    html(
      c,
      status,
      <Layout title={title} path={c.req.path} viewer={c.get('viewer')} flash={takeFlash(c)} live={live}>
        {body}
      </Layout>,
    );
  const canOperate = (c: Context<Env>) => OPERATORS.includes(c.get('viewer').role);
  const actor = (c: Context<Env>) => `ui:${c.get('viewer').username}`;
  const id = (c: Context<Env>) => c.req.param('id') as string;
  const deviceUrl = (deviceId: string) => `/devices/${encodeURIComponent(deviceId)}`;
  /** Inline re-authentication of a dangerous action (the form carries the password and a code). */
  const reauthed = async (c: Context<Env>, b: { password: string; code: string }) => {
    await reauthenticate(core, sessions, c.get('session'), b.password, b.code, clientAddress(c));
  };

  const kit: PageKit = {
    app,
    core,
    sessions,
    feed,
    options,
    users,
    now,
    html,
    errorPage,
    page,
    render,
    canOperate,
    actor,
    id,
    deviceUrl,
    reauthed,
  };
  dashboardPages(kit);
  deviceViewPages(kit);
  deviceActionPages(kit);
  onboardingPages(kit);
  pskWizardPages(kit);
  alertSegmentPages(kit);
  auditCompliancePages(kit);
  userPages(kit);
  logPages(kit);
  diagnosticsPages(kit);
  maintenanceConfigPages(kit);
  uplinkCertificatePages(kit);
  accountPages(kit);
  tokenPages(kit);
  return app;
}

/** What the public pages register with: the services, and the helpers loginPages makes per app. */
interface LoginKit {
  app: Hono;
  core: Core;
  sessions: UiSessions;
  users: Core['users'];
  options: PageOptions;
  show: (c: Context, node: Html, status?: ContentfulStatusCode) => Response | Promise<Response>;
  /** Same origin, and the per-address throttle: before any form is read. */
  guard: (c: Context) => void;
  preMfa: (c: Context) => ReturnType<typeof sessionFrom> | undefined;
}

function setupRoutes(k: LoginKit): void {
  const { app, users, options, show, guard } = k;
  app.get('/setup', (c) => {
    if (!users.needsSetup()) return c.redirect('/login', 303);
    return show(c, <SetupPage pairingOpen={options.pairingOpen()} flash={takeFlash(c)} />);
  });
  app.post('/setup', async (c) => {
    // What was typed comes back after an error (never the password), with every problem at once.
    let kept: { values: Record<string, string | undefined>; errors?: string[] } = { values: {} };
    try {
      guard(c);
      const raw = await formFields(c);
      kept = {
        values: {
          code: typeof raw.code === 'string' ? raw.code.slice(0, 32) : undefined,
          username: typeof raw.username === 'string' ? raw.username.slice(0, 64) : undefined,
        },
      };
      const b = z
        .strictObject({
          code: optional(32),
          username: z.string().trim().min(1).max(64),
          password: z.string().min(1).max(256),
        })
        .safeParse(raw);
      if (!b.success) throw new HttpError(400, 'ERR_UI_INVALID', firstIssue(b.error, 'form'));
      const problems = [
        ...(usernameSchema.safeParse(b.data.username).success
          ? []
          : [`Administrator name ${usernameSchema.safeParse(b.data.username).error?.issues[0]?.message}`]),
        ...(passwordSchema.safeParse(b.data.password).success
          ? []
          : [`Password ${passwordSchema.safeParse(b.data.password).error?.issues[0]?.message}`]),
      ];
      if (problems.length > 0) {
        kept.errors = problems;
        throw new HttpError(
          400,
          'ERR_UI_INVALID',
          problems.length === 1 ? (problems[0] as string) : `${problems.length} problems: see the list`,
        );
      }
      const bd = b.data;
      await users.completeSetup(
        bd.code ?? null,
        bd.username,
        bd.password,
        options.pairingOpen(),
        clientAddress(c),
      );
      return flashTo(c, '/login', {
        kind: 'ok',
        text: `Administrator ${bd.username} created. Log in to enrol a second factor.`,
      });
    } catch (err) {
      const { status, text } = describe(err);
      return show(
        c,
        <SetupPage pairingOpen={options.pairingOpen()} flash={{ kind: 'error', text }} kept={kept} />,
        status,
      );
    }
  });
}

function passwordLoginRoutes(k: LoginKit): void {
  const { app, sessions, users, show, guard } = k;
  app.get('/login', (c) => {
    if (users.needsSetup()) return c.redirect('/setup', 303);
    const s = sessionFrom(c, sessions);
    if (s?.mfaPassed) return c.redirect('/', 303);
    return show(c, <LoginPage flash={takeFlash(c)} />);
  });
  app.post('/login', async (c) => {
    let username: string | undefined;
    try {
      guard(c);
      const raw = await formFields(c);
      // Kept for the next try: the name is not secret to the person who typed it (the password is).
      username = typeof raw.username === 'string' ? raw.username.slice(0, 64) : undefined;
      const parsed = z
        .strictObject({ username: z.string().min(1).max(64), password: z.string().min(1).max(256) })
        .safeParse(raw);
      if (!parsed.success) throw new HttpError(400, 'ERR_UI_INVALID', firstIssue(parsed.error, 'form'));
      const b = parsed.data;
      const user = await users.authenticate(b.username, b.password, clientAddress(c));
      const { token } = sessions.create(user.username, false, clientAddress(c));
      setSessionCookie(c, token);
      return c.redirect(user.totpEnrolledAt ? '/login/totp' : '/login/enroll', 303);
    } catch (err) {
      const { status, text } = describe(err);
      return show(c, <LoginPage flash={{ kind: 'error', text }} username={username} />, status);
    }
  });
}

function totpRoutes(k: LoginKit): void {
  const { app, core, sessions, users, show, guard, preMfa } = k;
  app.get('/login/totp', (c) => {
    const s = preMfa(c);
    if (!s) return c.redirect('/login', 303);
    if (!users.isEnrolled(s.username)) return c.redirect('/login/enroll', 303);
    return show(c, <TotpPage />);
  });
  app.post('/login/totp', async (c) => {
    try {
      guard(c);
      const s = preMfa(c);
      if (!s) return c.redirect('/login', 303);
      const b = await form(c, z.strictObject({ code: z.string().trim().min(1).max(32) }));
      users.verifySecondFactor(s.username, b.code, clientAddress(c));
      completeLogin(c, core, sessions, s, {});
      return c.redirect('/', 303);
    } catch (err) {
      const { status, text } = describe(err);
      return show(c, <TotpPage flash={{ kind: 'error', text }} />, status);
    }
  });
}

function enrolRoutes(k: LoginKit): void {
  const { app, core, sessions, users, show, guard, preMfa } = k;
  const enrollPage = async (c: Context, username: string, flash?: FlashMessage, fresh = false) => {
    const { secret, uri, renewed } = users.beginTotpEnrollment(username, { fresh });
    const qrSvg = await (await qrcode()).toString(uri, { type: 'svg', errorCorrectionLevel: 'M', margin: 2 });
    return show(
      c,
      <EnrollPage secret={secret} qrSvg={qrSvg} renewed={renewed} flash={flash} />,
      flash?.kind === 'error' ? 400 : 200,
    );
  };
  // Asked for by the person (a key seen by someone else, an app that lost it): the old key stops working.
  app.post('/login/enroll/new-key', async (c) => {
    try {
      guard(c);
      const s = preMfa(c);
      if (!s || users.isEnrolled(s.username)) return c.redirect('/login', 303);
      return enrollPage(c, s.username, { kind: 'ok', text: 'A new key: scan it again.' }, true);
    } catch (err) {
      const { status, text } = describe(err);
      return show(c, <ErrorPage status={status} message={text} />, status);
    }
  });
  app.get('/login/enroll', async (c) => {
    const s = preMfa(c);
    if (!s) return c.redirect('/login', 303);
    if (users.isEnrolled(s.username)) return c.redirect('/login/totp', 303);
    return enrollPage(c, s.username);
  });
  app.post('/login/enroll', async (c) => {
    const s = preMfa(c);
    try {
      guard(c);
      if (!s) return c.redirect('/login', 303);
      const b = await form(c, z.strictObject({ code: z.string().trim().min(1).max(8) }));
      const codes = users.confirmTotpEnrollment(s.username, b.code, clientAddress(c));
      completeLogin(c, core, sessions, s, { enrolled: true });
      return show(c, <RecoveryCodesPage codes={codes} />);
    } catch (err) {
      const { text } = describe(err);
      // A wrong code keeps the key (the app already holds it); "Start over with a new key" replaces it.
      if (s && !users.isEnrolled(s.username)) {
        return enrollPage(c, s.username, {
          kind: 'error',
          text: `${text}. The key is unchanged: type the code your app shows now.`,
        });
      }
      return c.redirect('/login', 303);
    }
  });
}

function logoutRoute(k: LoginKit): void {
  const { app, core, sessions, show } = k;
  app.post('/logout', async (c) => {
    const s = sessionFrom(c, sessions);
    if (s) {
      const fields = await c.req.parseBody().catch(() => ({}) as Record<string, unknown>);
      if (s.mfaPassed && (!sameOrigin(c) || (fields as Record<string, unknown>)._csrf !== s.csrf)) {
        return show(
          c,
          <ErrorPage status={403} message="the form is stale or forged; reload the page" />,
          403,
        );
      }
      sessions.destroyHash(s.tokenHash);
      core.audit.append({
        actor: `ui:${s.username}`,
        action: 'user.logout',
        target: s.username,
        details: {},
      });
    }
    clearSessionCookie(c);
    return c.redirect('/login', 303);
  });
}

/** The public side: setup, login, second factor, logout. Forms only; every POST is throttled per address. */
export function loginPages(
  core: Core,
  sessions: UiSessions,
  limiter: LoginThrottle,
  options: PageOptions,
): Hono {
  const app = new Hono();
  const users = core.users;
  const show = (c: Context, node: Html, status: ContentfulStatusCode = 200) => {
    c.header('Cache-Control', 'no-store');
    return c.html(node, status);
  };
  const guard = (c: Context) => {
    if (!sameOrigin(c)) throw new HttpError(403, 'ERR_UI_CSRF', 'cross-site form refused');
    limiter.check(c);
  };
  /** The pre-MFA session of this browser, if any. */
  const preMfa = (c: Context) => {
    const s = sessionFrom(c, sessions);
    return s && !s.mfaPassed ? s : undefined;
  };

  const kit: LoginKit = { app, core, sessions, users, options, show, guard, preMfa };
  setupRoutes(kit);
  passwordLoginRoutes(kit);
  totpRoutes(kit);
  enrolRoutes(kit);
  logoutRoute(kit);
  return app;
}
