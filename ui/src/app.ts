import { Hono } from 'hono';
import { secureHeaders } from 'hono/secure-headers';
import type { Core } from '../../gateway/src/core.ts';
import { errorResponse } from '../../gateway/src/http.ts';
import { apiRoutes } from './routes/api.ts';
import { authRoutes } from './routes/auth-routes.ts';
import { UiSessions } from './sessions.ts';

/** The technician UI's server: health, authentication, and the JSON API (pages arrive on top of it). */
export interface UiOptions {
  /** The pairing button's window is open: physical presence, so first setup needs no code. */
  pairingOpen?: () => boolean;
}

export function createUiApp(core: Core, options: UiOptions = {}): Hono {
  const app = new Hono();
  app.use('*', secureHeaders());

  // Unauthenticated by design (monitoring, systemd health checks): states only, no device names or counts.
  app.get('/healthz', (c) => {
    const s = core.status();
    const ok = s.store === 'ok';
    return c.json(
      {
        status: ok ? 'ok' : 'degraded',
        version: s.version,
        uptimeSeconds: s.uptimeSeconds,
        components: {
          store: s.store,
          keystore: s.keystore.backend,
          uplink: s.uplink.configured ? 'configured' : 'unset',
          firewall: s.firewall.enforce ? 'enforcing' : 'off',
        },
      },
      ok ? 200 : 503,
    );
  });

  // Read-only opens (no keystore) serve health only.
  if (core.keystore) {
    const sessions = new UiSessions(core.store, core.clock);
    app.route('/auth', authRoutes(core, sessions, options.pairingOpen ?? (() => false)));
    app.route('/api/v1', apiRoutes(core, sessions));
  }

  app.notFound((c) => c.json({ error: { code: 'ERR_NOT_FOUND', message: 'no such route' } }, 404));
  app.onError((err, c) => errorResponse(c, err));
  return app;
}
