import type { Hono } from 'hono';
import type { Core } from '../../../gateway/src/core.ts';
import { uiLockedByTamper } from '../../../gateway/src/hardware/index.ts';
import { HttpError } from '../../../gateway/src/http.ts';
import type { UiSessions } from '../../../gateway/src/users/index.ts';
import { type AuthVars, requireSession } from '../auth.ts';

/** A live session past its second factor, an own password, no tamper lock: before any API route. */
export function sessionGuards(app: Hono<{ Variables: AuthVars }>, core: Core, sessions: UiSessions): void {
  app.use(
    '*',
    requireSession(sessions, (u) => {
      const user = core.users.get(u);
      return user && !user.disabledAt ? user.role : undefined;
    }),
  );
  // A password an admin set is changed (on the account page) before the account does anything else.
  app.use('*', async (c, next) => {
    if (core.users.get(c.get('session').username)?.passwordChangeRequired) {
      throw new HttpError(
        403,
        'ERR_UI_PASSWORD_CHANGE_REQUIRED',
        'an admin set this password: change it on the account page first',
      );
    }
    await next();
  });
  // After a tamper alert (with tamperLocksUi), nothing changes through the UI until a person acknowledges it.
  app.use('*', async (c, next) => {
    if (
      c.req.method !== 'GET' &&
      !/\/alerts\/[^/]+\/ack$/.test(c.req.path) &&
      uiLockedByTamper(core.alerts({ open: true }))
    ) {
      throw new HttpError(
        423,
        'ERR_UI_TAMPER_LOCK',
        'the enclosure was opened: acknowledge the tamper alert first',
      );
    }
    await next();
  });
}
