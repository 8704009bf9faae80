import { readFileSync } from 'node:fs';
import { Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { secureHeaders } from 'hono/secure-headers';
import type { BehaviourStatus } from '../../gateway/src/anomaly/index.ts';
import type { ConfigApplier } from '../../gateway/src/config/apply.ts';
import type { Core } from '../../gateway/src/core.ts';
import type { HandshakeLog } from '../../gateway/src/datapath/handshake-log.ts';
import { PortcullisError } from '../../gateway/src/errors.ts';
import type { FleetRuntimeStatus } from '../../gateway/src/fleet/view.ts';
import { assessHealth, type RuntimeProbe } from '../../gateway/src/health.ts';
import { errorResponse } from '../../gateway/src/http.ts';
import type { Logger } from '../../gateway/src/log.ts';
import type { UplinkStatus } from '../../gateway/src/uplink/uplink.ts';
import { onlyTableRoutes } from './access.ts';
import { LiveFeed } from './live.ts';
import { LoginThrottle } from './login.ts';
import { apiRoutes } from './routes/api.ts';
import { authRoutes } from './routes/auth-routes.ts';
import { type MaintenanceOptions, maintenanceApi, STREAMED_UPLOADS } from './routes/maintenance-api.ts';
import { loginPages, pageRoutes } from './routes/pages.tsx';

/** The technician UI's server: health, authentication, the JSON API and the server-rendered pages. */
export interface UiOptions {
  /** The pairing button's window is open: physical presence, so first setup needs no code. */
  pairingOpen?: () => boolean;
  /** The running uplink's connection state, for the dashboard (absent: only what the store knows). */
  uplinkStatus?: () => UplinkStatus | undefined;
  /** The gateway's running parts (uplink, workers, DTLS crypto), for /healthz; absent: only what the store knows. */
  runtime?: RuntimeProbe;
  /** The behaviour model's state of a device (learning, re-learning and why, monitored); absent: not shown. */
  behaviour?: (deviceId: string) => BehaviourStatus | undefined;
  /** The gateway's recent log lines (pino JSON), for the logs page; absent: the page says where the log is. */
  logs?: { recent(): string[] } | undefined;
  /** The fleet agent's publications, for the fleet page (absent: no uplink). */
  fleet?: () => FleetRuntimeStatus | undefined;
  /** The sensors' recent DTLS handshakes, for the device and diagnostics pages; absent: not kept here. */
  handshakes?: HandshakeLog;
  /** Applies a configuration change with automatic rollback; absent: the configuration page is read-only. */
  configApply?: ConfigApplier | undefined;
  /** How often live views poll for changes (tests shorten it). */
  livePollMs?: number;
  /** Backups, updates, restart and reboot: the configuration file, the power command (tests record it), caps. */
  maintenance?: MaintenanceOptions;
  /** Where unexpected failures are reported (the client only sees "internal error"). */
  logger?: Pick<Logger, 'error'>;
}

// Two small files, read once: the pages work without them (progressive enhancement), nothing is fetched
// from anywhere else, and the CSP below allows nothing else.
const STATIC: Record<string, { type: string; body: string }> = {
  '/static/app.css': {
    type: 'text/css; charset=utf-8',
    body: readFileSync(new URL('../static/app.css', import.meta.url), 'utf8'),
  },
  '/static/app.js': {
    type: 'text/javascript; charset=utf-8',
    body: readFileSync(new URL('../static/app.js', import.meta.url), 'utf8'),
  },
  '/static/maintenance.js': {
    type: 'text/javascript; charset=utf-8',
    body: readFileSync(new URL('../static/maintenance.js', import.meta.url), 'utf8'),
  },
  '/static/favicon.svg': {
    type: 'image/svg+xml',
    body: readFileSync(new URL('../static/favicon.svg', import.meta.url), 'utf8'),
  },
};

/** Request bodies beyond this are refused with 413 before they are read. */
export const MAX_BODY_BYTES = 64 * 1024;

export function createUiApp(core: Core, options: UiOptions = {}): Hono {
  const app = new Hono();
  // Every route is in the one access table (ui/src/access.ts); one that is not is refused, whatever it does.
  app.use('*', onlyTableRoutes);
  // Nothing the UI accepts is large (the biggest is a form of a few fields): refuse big bodies before reading.
  // The two streamed uploads (an update bundle, a backup archive) go to disk under their own cap instead.
  const limit = bodyLimit({
    maxSize: MAX_BODY_BYTES,
    onError: (c) =>
      c.json(
        { error: { code: 'ERR_UI_TOO_LARGE', message: `bodies are limited to ${MAX_BODY_BYTES} bytes` } },
        413,
      ),
  });
  app.use('*', (c, next) => (STREAMED_UPLOADS.test(c.req.path) ? next() : limit(c, next)));
  app.use(
    '*',
    secureHeaders({
      // Same-origin requests keep their Referer (a form returns to the page it came from); others get none.
      referrerPolicy: 'same-origin',
      contentSecurityPolicy: {
        defaultSrc: ["'none'"],
        scriptSrc: ["'self'"],
        styleSrc: ["'self'"],
        imgSrc: ["'self'", 'data:'],
        connectSrc: ["'self'"],
        formAction: ["'self'"],
        frameAncestors: ["'none'"],
        baseUri: ["'none'"],
      },
    }),
  );

  // Unauthenticated by design (monitoring, systemd health checks): states only, no device names or counts.
  app.get('/healthz', (c) => {
    const s = core.status();
    const h = assessHealth(s, options.runtime, core.clock.now());
    return c.json(
      {
        status: h.status,
        version: s.version,
        uptimeSeconds: s.uptimeSeconds,
        reasons: h.reasons,
        components: h.components,
        ...(h.uplink ? { uplink: h.uplink } : {}),
      },
      // 503 only when the gateway cannot work at all (its store); a degraded uplink or worker is still 200,
      // so a health check that restarts on 503 does not restart a gateway for its broker's outage.
      s.store === 'ok' ? 200 : 503,
    );
  });
  // Browsers ask for /favicon.ico whatever the page links: answer with the icon rather than a 404 in the log.
  app.get('/favicon.ico', (c) => c.redirect('/static/favicon.svg', 301));
  for (const [path, file] of Object.entries(STATIC)) {
    app.get(path, (c) => {
      c.header('Content-Type', file.type);
      c.header('Cache-Control', 'no-cache');
      return c.body(file.body);
    });
  }

  // Read-only opens (no keystore) serve health only.
  if (core.keystore) {
    const sessions = core.uiSessions;
    const limiter = new LoginThrottle(() => core.clock.now());
    const pageOptions = {
      pairingOpen: options.pairingOpen ?? (() => false),
      uplinkStatus: options.uplinkStatus ?? (() => undefined),
      behaviour: options.behaviour ?? (() => undefined),
      runtime: options.runtime,
      logs: options.logs,
      fleet: options.fleet,
      handshakes: options.handshakes,
      configApply: options.configApply,
      report: (err: unknown, where: string) =>
        options.logger?.error(
          { err: err instanceof Error ? err.message : String(err), where },
          'UI page failed',
        ),
    };
    app.route('/auth', authRoutes(core, sessions, pageOptions.pairingOpen, limiter));
    app.route('/api/v1', apiRoutes(core, sessions));
    app.route('/api/v1/maintenance', maintenanceApi(core, sessions, options.maintenance));
    app.route('/', loginPages(core, sessions, limiter, pageOptions));
    app.route('/', pageRoutes(core, sessions, new LiveFeed(core, options.livePollMs), pageOptions));
  }

  app.notFound((c) => c.json({ error: { code: 'ERR_NOT_FOUND', message: 'no such route' } }, 404));
  app.onError((err, c) => {
    if (!(err instanceof PortcullisError)) {
      options.logger?.error(
        { err: err.message, path: c.req.path, method: c.req.method },
        'UI request failed',
      );
    }
    return errorResponse(c, err);
  });
  return app;
}
