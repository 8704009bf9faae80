import type { Context } from 'hono';
import type { Core } from '../../gateway/src/core.ts';
import { clientAddress, HttpError } from '../../gateway/src/http.ts';
import type { UiSession, UiSessions } from '../../gateway/src/users/index.ts';
import { setSessionCookie } from './auth.ts';

/**
 * Login attempts per client address per minute, failed or not, before the users service's own per-source
 * throttling of failures even counts.
 */
const LOGIN_ATTEMPTS_PER_MINUTE = 10;

/** One budget per client address, shared by the JSON API's and the pages' login, setup and code forms. */
export class LoginThrottle {
  private readonly attempts = new Map<string, { start: number; n: number }>();

  constructor(private readonly now: () => number) {}

  check(c: Context): void {
    const key = clientAddress(c);
    const now = this.now();
    const a = this.attempts.get(key);
    if (!a || now - a.start >= 60_000) {
      // Forget stale addresses as new ones come, so the map stays as small as one minute's clients.
      if (this.attempts.size > 10_000) {
        for (const [k, v] of this.attempts) if (now - v.start >= 60_000) this.attempts.delete(k);
      }
      this.attempts.set(key, { start: now, n: 1 });
    } else if (++a.n > LOGIN_ATTEMPTS_PER_MINUTE) {
      throw new HttpError(429, 'ERR_UI_RATE_LIMITED', 'too many attempts from this address; wait a minute');
    }
  }
}

/** The second factor passed: a fresh session token (no fixation) and an audit entry. */
export function completeLogin(
  c: Context,
  core: Core,
  sessions: UiSessions,
  s: UiSession,
  details: Record<string, unknown>,
): UiSession {
  const { token, session } = sessions.promote(s);
  setSessionCookie(c, token);
  core.audit.append({
    actor: `ui:${s.username}`,
    action: 'user.login',
    target: s.username,
    details: { address: clientAddress(c), ...details },
  });
  return session;
}

/**
 * Password and a code again (failures count for the source and the account, as at login); marks the session
 * re-authenticated.
 */
export async function reauthenticate(
  core: Core,
  sessions: UiSessions,
  s: UiSession,
  password: string,
  code: string,
  address: string,
): Promise<void> {
  await core.users.authenticate(s.username, password, address);
  core.users.verifySecondFactor(s.username, code, address);
  sessions.markReauth(s);
}
