import { Hono } from 'hono';
import { secureHeaders } from 'hono/secure-headers';
import type { Core } from '../../gateway/src/core.ts';

/** The technician UI and its JSON API. Pages and /api/v1 arrive with the UI issue; health is here from day one. */
export function createUiApp(core: Core): Hono {
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

  app.notFound((c) => c.json({ error: { code: 'ERR_NOT_FOUND', message: 'no such route' } }, 404));
  app.onError((_err, c) => c.json({ error: { code: 'ERR_INTERNAL', message: 'internal error' } }, 500));
  return app;
}
