import { type Context, Hono } from 'hono';
import { z } from 'zod';
import type { Core } from '../../../gateway/src/core.ts';
import { body, clientAddress, HttpError } from '../../../gateway/src/http.ts';
import type { UiSession, UiSessions } from '../../../gateway/src/users/index.ts';
import { clearSessionCookie, sessionFrom, setSessionCookie } from '../auth.ts';
import { completeLogin, type LoginThrottle, reauthenticate } from '../login.ts';

const credentials = z.strictObject({
  username: z.string().min(1).max(64),
  password: z.string().min(1).max(256),
});
const codeBody = z.strictObject({ code: z.string().min(1).max(32) });

/**
 * Setup, login, second factor, re-authentication, logout. Every body is JSON: a cross-site form cannot send
 * it without a CORS preflight the UI never grants, which closes login CSRF; the session cookie is SameSite
 * Strict for the rest.
 */
export function authRoutes(
  core: Core,
  sessions: UiSessions,
  pairingOpen: () => boolean,
  limiter: LoginThrottle,
): Hono {
  const app = new Hono();
  const users = core.users;
  const throttle = (c: Context) => limiter.check(c);

  app.get('/state', (c) => {
    const s = sessionFrom(c, sessions);
    const user = s ? users.get(s.username) : undefined;
    return c.json({
      setup: users.needsSetup(),
      authenticated: Boolean(s?.mfaPassed && user),
      mfa: !s ? 'none' : s.mfaPassed ? 'passed' : user?.totpEnrolledAt ? 'required' : 'enroll',
      username: s?.mfaPassed ? s.username : null,
      role: s?.mfaPassed ? (user?.role ?? null) : null,
      csrf: s?.mfaPassed ? s.csrf : null,
    });
  });

  app.post('/setup', async (c) => {
    throttle(c);
    const b = await body(
      c,
      z.strictObject({
        code: z.string().min(1).max(32).optional(),
        username: z.string().min(1).max(64),
        password: z.string().min(1).max(256),
      }),
    );
    // Proof of presence: the code from the console, or the pairing button pressed in the last few minutes.
    const user = await users.completeSetup(
      b.code ?? null,
      b.username,
      b.password,
      pairingOpen(),
      clientAddress(c),
    );
    return c.json(
      { username: user.username, role: user.role, next: 'log in, then enrol a second factor' },
      201,
    );
  });

  app.post('/login', async (c) => {
    throttle(c);
    const b = await body(c, credentials);
    const user = await users.authenticate(b.username, b.password, clientAddress(c));
    const { token } = sessions.create(user.username, false, clientAddress(c));
    setSessionCookie(c, token);
    return c.json({ next: user.totpEnrolledAt ? 'totp' : 'enroll' });
  });

  secondFactorRoutes(app, core, sessions, throttle);

  app.post('/logout', (c) => {
    const s = sessionFrom(c, sessions);
    if (s?.mfaPassed && c.req.header('x-csrf-token') !== s.csrf) {
      throw new HttpError(403, 'ERR_UI_CSRF', 'missing or wrong CSRF token');
    }
    if (s) sessions.destroyHash(s.tokenHash);
    clearSessionCookie(c);
    return c.json({ loggedOut: true });
  });
  return app;
}

/** The second factor (code, enrolment) and re-authentication, each ending in a fresh session or a mark on it. */
function secondFactorRoutes(
  app: Hono,
  core: Core,
  sessions: UiSessions,
  throttle: (c: Context) => void,
): void {
  const users = core.users;
  const loggedIn = (c: Context, s: UiSession, details: Record<string, unknown>) =>
    completeLogin(c, core, sessions, s, details);

  const preMfa = (c: Parameters<typeof sessionFrom>[0]) => {
    const s = sessionFrom(c, sessions);
    if (!s) throw new HttpError(401, 'ERR_UI_UNAUTHENTICATED', 'log in first');
    if (s.mfaPassed) throw new HttpError(409, 'ERR_UI_STATE', 'already logged in');
    return s;
  };

  app.post('/totp', async (c) => {
    throttle(c);
    const s = preMfa(c);
    const b = await body(c, codeBody);
    users.verifySecondFactor(s.username, b.code, clientAddress(c));
    const session = loggedIn(c, s, {});
    return c.json({ username: session.username, role: users.get(s.username)?.role, csrf: session.csrf });
  });

  app.post('/totp/enroll', async (c) => {
    const s = preMfa(c);
    return c.json(users.beginTotpEnrollment(s.username));
  });

  app.post('/totp/confirm', async (c) => {
    throttle(c);
    const s = preMfa(c);
    const b = await body(c, codeBody);
    const recoveryCodes = users.confirmTotpEnrollment(s.username, b.code, clientAddress(c));
    const session = loggedIn(c, s, { enrolled: true });
    return c.json({ recoveryCodes, csrf: session.csrf, role: users.get(s.username)?.role });
  });

  app.post('/reauth', async (c) => {
    throttle(c);
    const s = sessionFrom(c, sessions);
    if (!s?.mfaPassed) throw new HttpError(401, 'ERR_UI_UNAUTHENTICATED', 'log in first');
    if (c.req.header('x-csrf-token') !== s.csrf)
      throw new HttpError(403, 'ERR_UI_CSRF', 'missing or wrong CSRF token');
    const b = await body(
      c,
      z.strictObject({ password: z.string().min(1).max(256), code: z.string().min(1).max(32) }),
    );
    await reauthenticate(core, sessions, s, b.password, b.code, clientAddress(c));
    return c.json({ reauthenticated: true });
  });
}
