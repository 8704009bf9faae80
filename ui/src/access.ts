/**
 * Who may do what in the technician UI: one table for the pages, the JSON API and the routes before login.
 * A row is one action; its page form and its API call (when both exist) share the row, so a role or a
 * re-authentication is stated once. Pages and API routes are registered only through this table (`signedInRule`
 * throws at start for a route it lacks), and the app refuses any request whose matched route is not in it
 * (`onlyTableRoutes`): a route added without a row is closed, not open.
 *
 * CSRF follows from where a route is: a GET changes nothing; a page POST carries the session's token as a form
 * field and must come from this origin; an API POST carries it in `x-csrf-token`; the routes before login take
 * JSON bodies only (no cross-site form can send one) or, for the login pages, the same-origin check.
 */
import type { MiddlewareHandler } from 'hono';
import { matchedRoutes } from 'hono/route';
import { HttpError } from '../../gateway/src/http.ts';
import type { Role } from '../../gateway/src/store/index.ts';

export type Method = 'GET' | 'POST';
type Route = `${Method} /${string}`;

export interface Access {
  roles: readonly Role[];
  /** Dangerous: the password and a code again within the last few minutes. */
  reauth?: boolean;
}

export const ALL_ROLES: readonly Role[] = ['admin', 'technician', 'auditor'];
export const OPERATORS: readonly Role[] = ['admin', 'technician'];
export const ADMINS: readonly Role[] = ['admin'];

const EVERYONE: Access = { roles: ALL_ROLES };
const OPERATOR: Access = { roles: OPERATORS };
const ADMIN: Access = { roles: ADMINS };
const ADMIN_REAUTH: Access = { roles: ADMINS, reauth: true };

/** One action: who may do it, and where (its page route, its API route). Samples are valid bodies, for tests. */
interface Rule {
  access: Access;
  page?: Route;
  api?: Route;
  pageSample?: Record<string, string>;
  apiSample?: unknown;
}

/** A form sample whose re-authentication fields are present (and wrong). */
const REAUTH_SAMPLE = { password: 'x', code: '000000' };

// Form samples of re-authenticated rows are refused before any password is checked where the handler allows it
// (no such account, passwords that differ, no scope, nothing to lift): walking the table must not count as
// failed logins and throttle the test's address.
const RULES: readonly Rule[] = [
  { access: EVERYONE, api: 'GET /api/v1/status' },
  { access: EVERYONE, page: 'GET /' },
  { access: EVERYONE, page: 'GET /events' },
  { access: EVERYONE, page: 'GET /devices', api: 'GET /api/v1/devices' },
  { access: EVERYONE, page: 'GET /devices/:id', api: 'GET /api/v1/devices/:id' },
  { access: OPERATOR, page: 'POST /devices/:id/approve', api: 'POST /api/v1/devices/:id/approve' },
  { access: OPERATOR, page: 'POST /devices/:id/reject', api: 'POST /api/v1/devices/:id/reject' },
  { access: EVERYONE, api: 'GET /api/v1/devices/:id/activity' },
  {
    access: OPERATOR,
    page: 'POST /devices/:id/quarantine',
    api: 'POST /api/v1/devices/:id/quarantine',
    pageSample: { reason: 'test' },
    apiSample: { reason: 'test' },
  },
  {
    access: OPERATOR,
    page: 'POST /devices/:id/release',
    api: 'POST /api/v1/devices/:id/release',
    apiSample: {},
  },
  { access: OPERATOR, page: 'POST /devices/:id/profile', pageSample: { profile: '' } },
  {
    access: ADMIN_REAUTH,
    page: 'POST /devices/:id/decommission',
    api: 'POST /api/v1/devices/:id/decommission',
    pageSample: { ...REAUTH_SAMPLE },
    apiSample: { reason: 'test' },
  },
  {
    access: ADMIN_REAUTH,
    page: 'POST /devices/:id/unlimit',
    api: 'POST /api/v1/devices/:id/unlimit',
    pageSample: { ...REAUTH_SAMPLE },
  },
  { access: EVERYONE, page: 'GET /onboarding' },
  {
    access: OPERATOR,
    page: 'POST /onboarding/psk',
    api: 'POST /api/v1/devices',
    pageSample: { id: 'page-sensor', pskIdentity: 'page-sensor' },
    apiSample: { id: 'new-sensor', pskIdentity: 'new-sensor', generatePsk: true },
  },
  { access: EVERYONE, page: 'GET /alerts', api: 'GET /api/v1/alerts' },
  { access: OPERATOR, page: 'POST /alerts/:id/ack', api: 'POST /api/v1/alerts/:id/ack' },
  { access: EVERYONE, page: 'GET /segments', api: 'GET /api/v1/segments' },
  {
    access: ADMIN_REAUTH,
    page: 'POST /segments/apply',
    api: 'POST /api/v1/firewall/apply',
    pageSample: { hash: 'x', ...REAUTH_SAMPLE },
  },
  { access: EVERYONE, api: 'GET /api/v1/updates' },
  { access: EVERYONE, page: 'GET /audit', api: 'GET /api/v1/audit' },
  { access: EVERYONE, api: 'GET /api/v1/audit/verify' },
  { access: EVERYONE, page: 'GET /audit/export' },
  { access: EVERYONE, page: 'GET /compliance', api: 'GET /api/v1/compliance' },
  { access: EVERYONE, api: 'GET /api/v1/firewall' },
  { access: EVERYONE, api: 'GET /api/v1/firewall/render' },
  { access: EVERYONE, page: 'GET /compliance/report' },
  { access: ADMIN, page: 'GET /users', api: 'GET /api/v1/users' },
  {
    access: ADMIN_REAUTH,
    page: 'POST /users',
    api: 'POST /api/v1/users',
    pageSample: {
      username: 'pageuser',
      role: 'auditor',
      newPassword: 'a long enough password',
      ...REAUTH_SAMPLE,
    },
    apiSample: { username: 'newtech', role: 'technician', password: 'a long enough password' },
  },
  {
    access: ADMIN_REAUTH,
    api: 'POST /api/v1/maintenance/backup',
    apiSample: { passphrase: 'x', again: 'y' },
  },
  { access: ADMIN_REAUTH, api: 'POST /api/v1/maintenance/uploads/restore' },
  { access: ADMIN_REAUTH, api: 'POST /api/v1/maintenance/restore/:id', apiSample: { passphrase: 'x' } },
  { access: ADMIN_REAUTH, api: 'POST /api/v1/maintenance/uploads/update' },
  { access: ADMIN, api: 'GET /api/v1/maintenance/jobs/:id' },
  { access: ADMIN_REAUTH, api: 'POST /api/v1/maintenance/rollback', apiSample: {} },
  {
    access: ADMIN_REAUTH,
    api: 'POST /api/v1/maintenance/power',
    apiSample: { action: 'restart', confirm: 'no' },
  },
  { access: ADMIN_REAUTH, page: 'POST /users/:id/manage', pageSample: { op: 'disable', ...REAUTH_SAMPLE } },
  { access: ADMIN, page: 'POST /users/sessions/revoke', pageSample: { session: 'x' } },
  { access: EVERYONE, page: 'GET /health' },
  { access: EVERYONE, page: 'GET /logs' },
  { access: ADMIN, page: 'GET /diagnostics' },
  // A result page's address reloaded (or gone back to): the diagnostics page again, never a 404.
  { access: ADMIN, page: 'GET /diagnostics/dns' },
  { access: ADMIN, page: 'GET /configuration/apply' },
  { access: ADMIN, page: 'GET /configuration/time' },
  { access: ADMIN, page: 'GET /diagnostics/reach' },
  { access: ADMIN, page: 'GET /diagnostics/ping' },
  { access: ADMIN, page: 'GET /diagnostics/uplink' },
  { access: EVERYONE, page: 'GET /maintenance' },
  { access: EVERYONE, page: 'GET /fleet' },
  { access: ADMIN, page: 'GET /configuration' },
  { access: ADMIN, page: 'POST /configuration/uplink-csr', pageSample: { subject: 'CN=page-test' } },
  {
    access: ADMIN_REAUTH,
    page: 'POST /configuration/apply',
    pageSample: { part: 'segments', segments: '[]', ...REAUTH_SAMPLE },
  },
  {
    access: ADMIN_REAUTH,
    page: 'POST /configuration/time',
    pageSample: { timeZone: 'Not/AZone', ntp: '', ...REAUTH_SAMPLE },
  },
  {
    access: ADMIN_REAUTH,
    page: 'POST /configuration/uplink-certificate',
    pageSample: { certificate: 'x', ...REAUTH_SAMPLE },
  },
  { access: ADMIN, page: 'POST /diagnostics/dns', pageSample: { name: 'localhost' } },
  { access: ADMIN, page: 'POST /diagnostics/reach', pageSample: { host: '127.0.0.1', port: '9' } },
  { access: ADMIN, page: 'POST /diagnostics/uplink' },
  { access: ADMIN, page: 'POST /diagnostics/ping', pageSample: { host: '127.0.0.1', count: '1' } },
  { access: EVERYONE, page: 'GET /logs/download' },
  { access: EVERYONE, page: 'GET /account' },
  {
    access: EVERYONE,
    page: 'POST /account/password',
    pageSample: { current: 'x', next: 'a long enough password', again: 'another long password' },
  },
  { access: EVERYONE, page: 'POST /account/sessions/revoke', pageSample: { session: 'x' } },
  { access: ADMIN, page: 'GET /tokens' },
  { access: ADMIN_REAUTH, page: 'POST /tokens', pageSample: { name: 'page-flow', ...REAUTH_SAMPLE } },
  { access: ADMIN, page: 'POST /tokens/:id/revoke' },
];

/** Before a session exists: each route says how it resists cross-site use. */
const PUBLIC: readonly { route: Route; csrf: 'none' | 'json' | 'origin' | 'header' }[] = [
  { route: 'GET /healthz', csrf: 'none' },
  { route: 'GET /favicon.ico', csrf: 'none' },
  { route: 'GET /static/:file', csrf: 'none' },
  { route: 'GET /auth/state', csrf: 'none' },
  { route: 'POST /auth/setup', csrf: 'json' },
  { route: 'POST /auth/login', csrf: 'json' },
  { route: 'POST /auth/totp', csrf: 'json' },
  { route: 'POST /auth/totp/enroll', csrf: 'json' },
  { route: 'POST /auth/totp/confirm', csrf: 'json' },
  // With a session: its token in the header, like the API.
  { route: 'POST /auth/reauth', csrf: 'header' },
  { route: 'POST /auth/logout', csrf: 'header' },
  { route: 'GET /setup', csrf: 'none' },
  { route: 'POST /setup', csrf: 'origin' },
  { route: 'GET /login', csrf: 'none' },
  { route: 'POST /login', csrf: 'origin' },
  { route: 'GET /login/totp', csrf: 'none' },
  { route: 'POST /login/totp', csrf: 'origin' },
  { route: 'POST /login/enroll/new-key', csrf: 'origin' },
  { route: 'GET /login/enroll', csrf: 'none' },
  { route: 'POST /login/enroll', csrf: 'origin' },
  { route: 'POST /logout', csrf: 'origin' },
];

/** One route as the table resolves it: method and path pattern → who, re-authentication, CSRF. */
export interface UiRoute {
  method: Method;
  path: string;
  surface: 'page' | 'api' | 'public';
  /** null: reachable before login (see `csrf` for how it resists cross-site use). */
  access: Access | null;
  csrf: 'none' | 'form' | 'header' | 'json' | 'origin';
  sample?: unknown;
}

const split = (r: Route) => {
  const at = r.indexOf(' ');
  return { method: r.slice(0, at) as Method, path: r.slice(at + 1) };
};

/** The whole table, one row per route. */
export const UI_ROUTES: readonly UiRoute[] = [
  ...PUBLIC.map(({ route, csrf }) => ({ ...split(route), surface: 'public' as const, access: null, csrf })),
  ...RULES.flatMap((r) => [
    ...(r.page
      ? [
          {
            ...split(r.page),
            surface: 'page' as const,
            access: r.access,
            csrf: r.page.startsWith('GET') ? ('none' as const) : ('form' as const),
            ...(r.pageSample ? { sample: r.pageSample } : {}),
          },
        ]
      : []),
    ...(r.api
      ? [
          {
            ...split(r.api),
            surface: 'api' as const,
            access: r.access,
            csrf: r.api.startsWith('GET') ? ('none' as const) : ('header' as const),
            ...(r.apiSample !== undefined ? { sample: r.apiSample } : {}),
          },
        ]
      : []),
  ]),
];

/** A signed-in route as the role tests walk it. */
export interface RouteSpec {
  method: Method;
  path: string;
  access: Access;
  sample?: unknown;
}

/** The signed-in routes of one surface, in table order (the tests walk them for every role). */
export function routesOf(surface: 'page' | 'api'): RouteSpec[] {
  return UI_ROUTES.filter((r) => r.surface === surface).map((r) => ({
    method: r.method,
    path: r.path,
    access: r.access as Access,
    ...(r.sample !== undefined ? { sample: r.sample } : {}),
  }));
}

const patternOf = (path: string) =>
  new RegExp(`^${path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replace(/:[a-z]+/gi, '[^/]+')}$`);
const PATTERNS = UI_ROUTES.map((r) => ({ r, re: patternOf(r.path) }));

/** The row of a registered route (its pattern as registered, or a concrete path a pattern row covers). */
export function lookupRoute(method: string, path: string): UiRoute | undefined {
  return (
    UI_ROUTES.find((r) => r.method === method && r.path === path) ??
    PATTERNS.find(({ r, re }) => r.method === method && re.test(path))?.r
  );
}

/** The access of a signed-in route being registered; a route without a row is a bug found at start. */
export function signedInRule(surface: 'page' | 'api', method: Method, path: string): Access {
  const row = UI_ROUTES.find((r) => r.surface === surface && r.method === method && r.path === path);
  if (!row?.access)
    throw new Error(`${surface} route ${method} ${path} is missing from the UI's access table`);
  return row.access;
}

/**
 * Refuses a request whose route has no row in the table: a route registered around `signedInRule` (or a row
 * removed) is closed, not open. Unknown paths stay 404.
 */
export const onlyTableRoutes: MiddlewareHandler = async (c, next) => {
  const handler = matchedRoutes(c)
    .filter((r) => r.method !== 'ALL')
    .at(-1);
  if (handler && !lookupRoute(handler.method, handler.path)) {
    throw new HttpError(403, 'ERR_UI_FORBIDDEN', 'this route is not in the access table');
  }
  await next();
};
