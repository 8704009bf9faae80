import type { Context, MiddlewareHandler } from 'hono';
import { deleteCookie, getCookie, setCookie } from 'hono/cookie';
import { HttpError } from '../../gateway/src/http.ts';
import type { Role } from '../../gateway/src/store/index.ts';
import { REAUTH_MS, type UiSession, type UiSessions } from '../../gateway/src/users/index.ts';
import type { Access } from './access.ts';

export const SESSION_COOKIE = '__Host-portcullis';

export interface AuthVars {
  session: UiSession;
  role: Role;
  actor: string;
}

export function setSessionCookie(c: Context, token: string): void {
  // __Host-: Secure, Path=/, no Domain — the cookie cannot be planted by a sibling host.
  setCookie(c, SESSION_COOKIE, token, { secure: true, httpOnly: true, sameSite: 'Strict', path: '/' });
}

export function clearSessionCookie(c: Context): void {
  deleteCookie(c, SESSION_COOKIE, { secure: true, path: '/' });
}

export function sessionFrom(c: Context, sessions: UiSessions): UiSession | undefined {
  return sessions.get(getCookie(c, SESSION_COOKIE));
}

const SAFE_METHODS = new Set(['GET', 'HEAD']);

/**
 * Every API request: a live session that passed the second factor, of an enabled user, and — for anything
 * that changes state — the session's CSRF token in `x-csrf-token`.
 */
export function requireSession(
  sessions: UiSessions,
  userRole: (username: string) => Role | undefined,
): MiddlewareHandler<{ Variables: AuthVars }> {
  return async (c, next) => {
    const s = sessionFrom(c, sessions);
    if (!s) throw new HttpError(401, 'ERR_UI_UNAUTHENTICATED', 'log in first');
    if (!s.mfaPassed) throw new HttpError(401, 'ERR_UI_MFA_REQUIRED', 'the second factor is still missing');
    const role = userRole(s.username);
    if (!role) {
      sessions.destroyHash(s.tokenHash);
      throw new HttpError(401, 'ERR_UI_UNAUTHENTICATED', 'the account is gone or disabled');
    }
    if (!SAFE_METHODS.has(c.req.method) && c.req.header('x-csrf-token') !== s.csrf) {
      throw new HttpError(403, 'ERR_UI_CSRF', 'missing or wrong CSRF token');
    }
    c.set('session', s);
    c.set('role', role);
    c.set('actor', `ui:${s.username}`);
    await next();
  };
}

export { type Access, ADMINS, ALL_ROLES, OPERATORS } from './access.ts';

/** Role (and re-authentication) check of one route; always server-side, whatever the page shows. */
export function allow(access: Access, now: () => number): MiddlewareHandler<{ Variables: AuthVars }> {
  return async (c, next) => {
    if (!access.roles.includes(c.get('role'))) {
      throw new HttpError(403, 'ERR_UI_FORBIDDEN', `this needs the role ${access.roles.join(' or ')}`);
    }
    const s = c.get('session');
    if (access.reauth && (s.reauthAt === null || now() - s.reauthAt > REAUTH_MS)) {
      throw new HttpError(
        403,
        'ERR_UI_REAUTH_REQUIRED',
        'confirm with your password and a code first (POST /auth/reauth)',
      );
    }
    await next();
  };
}
