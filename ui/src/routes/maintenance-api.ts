import { randomUUID } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { type Context, Hono } from 'hono';
import { z } from 'zod';
import type { Core } from '../../../gateway/src/core.ts';
import { PortcullisError } from '../../../gateway/src/errors.ts';
import { body, HttpError } from '../../../gateway/src/http.ts';
import { type CommandRunner, PowerControl } from '../../../gateway/src/maintenance/power.ts';
import type { UiSessions } from '../../../gateway/src/users/index.ts';
import { type RouteSpec, routesOf, signedInRule } from '../access.ts';
import { type AuthVars, allow } from '../auth.ts';
import { receiveUpload } from '../uploads.ts';
import { sessionGuards } from './api-guards.ts';

type Env = { Variables: AuthVars };

/** The backup and update services load with the first maintenance action, not at start. */
const backups = () => import('../../../gateway/src/backup/index.ts');
const updates = () => import('../../../gateway/src/updates/index.ts');

export interface MaintenanceOptions {
  /** The configuration file the gateway runs with (it goes into backups); absent: embedded defaults. */
  configSource?: string | undefined;
  /** Runs the restart/reboot command (argv); tests record it instead of rebooting the machine. */
  runCommand?: CommandRunner;
  /** Delay before the restart/reboot command runs, so the answer reaches the browser first. */
  powerDelayMs?: number;
  /** Upload caps (bytes). */
  maxBundleBytes?: number;
  maxArchiveBytes?: number;
}

export const MAX_BUNDLE_BYTES = 512 * 1024 * 1024;

/** The streamed uploads: exempt from the UI's 64 KiB body limit, capped by their own limit while read. */
export const STREAMED_UPLOADS = /^\/api\/v1\/maintenance\/uploads\/(update|restore)$/;

/** The maintenance routes of the UI's one access table (ui/src/access.ts), walked by the tests. */
export const MAINTENANCE_API_ROUTES: readonly RouteSpec[] = routesOf('api').filter((r) =>
  r.path.startsWith('/api/v1/maintenance/'),
);

/** An update in progress or done, as the page polls it. */
export interface UpdateJob {
  id: string;
  phase: 'verifying' | 'installing' | 'health-check' | 'installed' | 'refused';
  bytes: number;
  startedAt: string;
  version?: string;
  previous?: string | null;
  error?: { code: string; message: string };
}

/** The services' refusals, as the person who asked sees them: the reason, never "internal error". */
function shown(err: unknown): never {
  if (err instanceof PortcullisError && /^ERR_(BACKUP|UPDATE|POWER)_/.test(err.code)) {
    const status = /TOO_LARGE$/.test(err.code)
      ? 413
      : /(STATE|BUSY)$/.test(err.code)
        ? 409
        : err.code === 'ERR_POWER_FAILED'
          ? 502
          : 422;
    throw new HttpError(status, err.code, err.message);
  }
  throw err;
}

const passphrase = z.string().min(1).max(1024);

/**
 * Backup and restore, gateway updates, rollback, restart and reboot (issue 25 items 13 and 15): admins only,
 * every action re-authenticated (POST /auth/reauth within the last minutes) and audited by its service.
 * Uploads stream to the data disk under a cap (see receiveUpload); the page drives them with the browser's
 * upload progress and polls the job for verification and installation.
 */
export function maintenanceApi(
  core: Core,
  sessions: UiSessions,
  options: MaintenanceOptions = {},
): Hono<Env> {
  const app = new Hono<Env>();
  const now = () => core.clock.now();
  const uploadsDir = join(core.config.dataDir, 'uploads');

  sessionGuards(app, core, sessions);
  const route = (
    method: 'GET' | 'POST',
    path: string,
    handler: (c: Context<Env>) => Response | Promise<Response>,
  ) => {
    const access = signedInRule('api', method, path);
    app.on(method, path.replace(/^\/api\/v1\/maintenance/, ''), allow(access, now), async (c) => {
      try {
        return await handler(c);
      } catch (err) {
        shown(err);
      }
    });
  };

  const ctx: RouteContext = { route, core, options, uploadsDir };
  backupRoutes(ctx);
  updateRoutes(ctx);
  powerRoutes(ctx);
  return app;
}

type Register = (
  method: 'GET' | 'POST',
  path: string,
  handler: (c: Context<Env>) => Response | Promise<Response>,
) => void;

interface RouteContext {
  route: Register;
  core: Core;
  options: MaintenanceOptions;
  uploadsDir: string;
}

/** Backup download; restore upload (format and signature checked on arrival), then staging with the passphrase. */
function backupRoutes({ route, core, options, uploadsDir }: RouteContext): void {
  const pendingRestores = new Map<string, string>();
  route('POST', '/api/v1/maintenance/backup', async (c) => {
    const b = await body(c, z.strictObject({ passphrase, again: passphrase }));
    if (b.passphrase !== b.again) throw new HttpError(400, 'ERR_UI_INVALID', 'the two passphrases differ');
    const { backupFor, createBackup } = await backups();
    const { archive, summary } = await createBackup(backupFor(core), {
      passphrase: b.passphrase,
      configSource: options.configSource,
      actor: c.get('actor'),
    });
    c.header('Content-Type', 'application/octet-stream');
    c.header(
      'Content-Disposition',
      `attachment; filename="portcullis-backup-${summary.createdAt.slice(0, 10)}.pcbk"`,
    );
    c.header('Cache-Control', 'no-store');
    c.header('X-Backup-Sha256', summary.sha256);
    return c.body(new Uint8Array(archive));
  });

  route('POST', '/api/v1/maintenance/uploads/restore', async (c) => {
    const { MAX_ARCHIVE_BYTES, describeArchive } = await backups();
    const { file, bytes } = await receiveUpload(
      c,
      uploadsDir,
      'restore',
      options.maxArchiveBytes ?? MAX_ARCHIVE_BYTES,
    );
    try {
      // Format and identity signature now; the passphrase comes with the next request.
      const h = describeArchive(readFileSync(file));
      const id = randomUUID();
      pendingRestores.set(id, file);
      return c.json({
        upload: id,
        bytes,
        made: {
          createdAt: h.createdAt,
          gatewayVersion: h.gatewayVersion,
          schemaVersion: h.schemaVersion,
          identity: h.identity.fingerprint,
        },
      });
    } catch (err) {
      rmSync(file, { force: true });
      throw err;
    }
  });

  route('POST', '/api/v1/maintenance/restore/:id', async (c) => {
    const b = await body(c, z.strictObject({ passphrase, keepConfig: z.boolean().optional() }));
    const file = pendingRestores.get(c.req.param('id') ?? '');
    if (!file) throw new HttpError(404, 'ERR_UI_NOT_FOUND', 'no such upload: send the archive again');
    const { backupFor, stageRestore } = await backups();
    try {
      const staged = stageRestore(backupFor(core), readFileSync(file), {
        passphrase: b.passphrase,
        actor: c.get('actor'),
        keepConfig: b.keepConfig ?? false,
        configSource: options.configSource,
      });
      pendingRestores.delete(c.req.param('id') ?? '');
      rmSync(file, { force: true });
      return c.json({ staged, restartRequired: true });
    } catch (err) {
      // A wrong passphrase may be typed again; anything else needs a new upload.
      if (!(err instanceof PortcullisError && err.code === 'ERR_BACKUP_PASSPHRASE')) {
        pendingRestores.delete(c.req.param('id') ?? '');
        rmSync(file, { force: true });
      }
      throw err;
    }
  });
}

/** Update upload (a job: verify, install, health check), its status, rollback. */
function updateRoutes({ route, core, options, uploadsDir }: RouteContext): void {
  const jobs = new Map<string, UpdateJob>();
  route('POST', '/api/v1/maintenance/uploads/update', async (c) => {
    const { file, bytes } = await receiveUpload(
      c,
      uploadsDir,
      'update',
      options.maxBundleBytes ?? MAX_BUNDLE_BYTES,
    );
    const job: UpdateJob = {
      id: randomUUID(),
      phase: 'verifying',
      bytes,
      startedAt: new Date(core.clock.now()).toISOString(),
    };
    jobs.set(job.id, job);
    void runUpdate(job, file, c.get('actor'));
    return c.json(job, 202);
  });

  const runUpdate = async (job: UpdateJob, file: string, actor: string) => {
    const { installerFor } = await updates();
    const installer = installerFor(core);
    try {
      // The installer verifies, records and audits every outcome (refusals too); the job only mirrors it.
      const r = await installer.apply(file, actor, (phase, version) => {
        job.phase = phase;
        job.version = version;
      });
      job.previous = r.previous;
      job.phase = 'installed';
    } catch (err) {
      job.phase = 'refused';
      job.error =
        err instanceof PortcullisError
          ? { code: err.code, message: err.message }
          : { code: 'ERR_INTERNAL', message: 'internal error' };
    } finally {
      rmSync(file, { force: true });
      // Finished jobs are kept for the page to read, a bounded few.
      if (jobs.size > 20) jobs.delete(jobs.keys().next().value as string);
    }
  };

  route('GET', '/api/v1/maintenance/jobs/:id', (c) => {
    const job = jobs.get(c.req.param('id') ?? '');
    if (!job) throw new HttpError(404, 'ERR_UI_NOT_FOUND', 'no such update job');
    return c.json(job);
  });

  route('POST', '/api/v1/maintenance/rollback', async (c) => {
    await body(c, z.strictObject({}));
    const { installerFor } = await updates();
    return c.json({ ...installerFor(core).rollback(c.get('actor')), restartRequired: true });
  });
}

/** Restart the gateway or reboot the host: the action's name typed again, then the (injected) command. */
function powerRoutes({ route, core, options }: RouteContext): void {
  const power = new PowerControl({
    audit: core.audit,
    ...(options.runCommand ? { run: options.runCommand } : {}),
    ...(options.powerDelayMs !== undefined ? { delayMs: options.powerDelayMs } : {}),
  });
  route('POST', '/api/v1/maintenance/power', async (c) => {
    const b = await body(
      c,
      z.strictObject({
        action: z.enum(['restart', 'reboot']),
        confirm: z.string().max(20),
        reason: z.string().max(300).optional(),
      }),
    );
    // The confirmation is the action's name typed again: a stray click or a replayed form cannot reboot.
    if (b.confirm.trim().toLowerCase() !== b.action) {
      throw new HttpError(400, 'ERR_UI_CONFIRM', `type "${b.action}" to confirm`);
    }
    return c.json(power.request(b.action, c.get('actor'), b.reason ?? ''), 202);
  });
}
