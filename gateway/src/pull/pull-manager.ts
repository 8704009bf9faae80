import { type ChildProcess, fork } from 'node:child_process';
import { createHash } from 'node:crypto';
import { raiseAlert } from '../alerts.ts';
import type { AnomalyService } from '../anomaly/index.ts';
import { logChildStderr, siblingModule } from '../child.ts';
import type { Core } from '../core.ts';
import { ingestTelemetry } from '../datapath/ingest.ts';
import type { Logger } from '../log.ts';
import { LogThrottle } from '../log-throttle.ts';
import type { Uplink } from '../uplink/index.ts';
import { queueFull } from '../uplink/queue-full.ts';
import type { FromPoller, PollSource, ToPoller } from './poller-worker.ts';

/** How often sources are re-read (the CLI adds and decommissions devices from another process). */
const RELOAD_MS = 2000;
/** Exits in a row, with nothing heard from the worker in between, after which it counts as crash-looping. */
const CRASH_LOOP_EXITS = 3;
/** The longest wait between restarts: a broken worker is retried, slowly, and said to be broken. */
const MAX_RESTART_DELAY_MS = 300_000;

/** What /healthz and the UI say about the poller. */
export interface WorkerHealth {
  state: 'idle' | 'running' | 'restarting' | 'crash-looping';
  /** Exits in a row since the worker last answered. */
  crashes: number;
  lastError: string | null;
  /** Pulled readings refused because the uplink queue was full (not stored: the next poll reads the sensor again). */
  refused: number;
}

/**
 * Pull-mode sensors: runs the poller worker, gives it the active sources, and feeds what they answer into the
 * same policy → durable uplink path as pushed telemetry. A crashed worker is restarted with capped back-off; its
 * stderr goes to the log, and a worker that keeps dying before it answers is crash-looping: health says so and an
 * alert is raised, instead of a silent loop.
 */
export class PullManager {
  private child: ChildProcess | null = null;
  private reload: NodeJS.Timeout | null = null;
  private restart: NodeJS.Timeout | null = null;
  private lastDigest = '';
  private syncedStamp = '';
  private crashes = 0;
  private lastError: string | null = null;
  private stopped = false;
  private refused = 0;
  private refusedLogged = 0;
  private readonly refusalLog: LogThrottle;

  constructor(
    private readonly core: Core,
    private readonly uplink: Uplink,
    private readonly logger: Logger,
    private readonly anomaly?: AnomalyService,
  ) {
    this.refusalLog = new LogThrottle(60_000, () => core.clock.now());
  }

  start(): void {
    this.sync();
    this.reload = setInterval(() => this.sync(), RELOAD_MS);
    this.reload.unref();
  }

  private sources(): PollSource[] {
    const out: PollSource[] = [];
    for (const p of this.core.store.pullSources.list()) {
      let cred: { identity: string; key: Buffer } | undefined;
      try {
        cred = this.core.identity.pullCredential(p.deviceId);
      } catch (err) {
        this.logger.error({ deviceId: p.deviceId, err: (err as Error).message }, 'pull sensor key unusable');
      }
      if (!cred) continue; // not active (pending, quarantined, decommissioned): not polled
      const url = new URL(p.url);
      out.push({
        deviceId: p.deviceId,
        host: url.hostname.replace(/^\[|\]$/g, ''),
        port: url.port ? Number(url.port) : 5684,
        path: url.pathname.split('/').filter(Boolean).map(decodeURIComponent),
        intervalSeconds: p.intervalSeconds,
        identity: cred.identity,
        keyLatin1: cred.key.toString('latin1'),
      });
    }
    return out;
  }

  private sync(): void {
    if (this.stopped) return;
    // Sources (and their keys) are re-read only when identity changed or the worker needs them afresh.
    const stamp = this.core.identity.changeStamp;
    if (this.child && stamp === this.syncedStamp) return;
    this.syncedStamp = stamp;
    const sources = this.sources();
    const digest = createHash('sha256').update(JSON.stringify(sources)).digest('hex');
    if (sources.length === 0 && !this.child) return;
    if (!this.child) this.spawn();
    if (digest === this.lastDigest) return;
    this.lastDigest = digest;
    const msg: ToPoller = { type: 'sources', sources };
    if (this.child?.connected) this.child.send(msg);
  }

  private spawn(): void {
    const worker = siblingModule(import.meta.url, 'poller-worker');
    const child = fork(worker.path, [], {
      execArgv: worker.execArgv,
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    });
    this.child = child;
    this.lastDigest = '';
    const stderr = child.stderr ? logChildStderr(child.stderr, this.logger, 'pull-poller') : null;
    child.on('message', (m: FromPoller) => this.onMessage(m));
    child.on('exit', (code, signal) => {
      if (this.child !== child) return;
      this.child = null;
      if (this.stopped) return;
      this.crashes++;
      this.lastError = stderr?.lastError() ?? `exited with ${signal ?? `code ${code}`}`;
      const delay = Math.min(MAX_RESTART_DELAY_MS, 500 * 2 ** Math.min(this.crashes, 10));
      this.logger.warn(
        { code, signal, restartInMs: delay, crashes: this.crashes, err: this.lastError },
        'pull poller exited; restarting',
      );
      if (this.crashes === CRASH_LOOP_EXITS) this.reportCrashLoop();
      this.restart = setTimeout(() => {
        this.restart = null;
        this.sync();
      }, delay);
    });
  }

  private reportCrashLoop(): void {
    this.logger.error({ crashes: this.crashes, err: this.lastError }, 'pull poller is crash-looping');
    raiseAlert(this.core, {
      deviceId: null,
      severity: 'high',
      kind: 'gateway.worker_crash_loop',
      explanation: `The pull-mode poller exited ${this.crashes} times in a row before answering (${this.lastError}); pull-mode sensors are not being read`,
      evidence: { worker: 'pull-poller', crashes: this.crashes, lastError: this.lastError },
      dedupeKey: 'gateway.worker_crash_loop:pull-poller',
    });
  }

  health(): WorkerHealth {
    let state: WorkerHealth['state'];
    if (this.crashes >= CRASH_LOOP_EXITS) state = 'crash-looping';
    else if (this.restart) state = 'restarting';
    else state = this.child ? 'running' : 'idle';
    return { state, crashes: this.crashes, lastError: this.lastError, refused: this.refused };
  }

  private onMessage(m: FromPoller): void {
    // The worker answered: it runs (a poll that failed is the sensor's problem, not the worker's).
    this.crashes = 0;
    if (m.type === 'poll-failed') {
      this.logger.warn({ deviceId: m.deviceId, reason: m.reason }, 'pull poll failed');
      return;
    }
    const device = this.core.store.devices.get(m.deviceId);
    const reading = {
      payload: Buffer.from(m.payload, 'base64'),
      contentFormat: m.contentFormat,
      credentialKind: 'psk',
    };
    ingestTelemetry(this.core, this.uplink, device, reading, this.anomaly).then(
      (decision) => {
        if (!decision.allow) {
          this.logger.warn({ deviceId: m.deviceId, reason: decision.reason }, 'pulled reading refused');
        }
      },
      (err: unknown) => {
        if (queueFull(err)) this.refusedReading(m.deviceId);
        else this.logger.error({ err: (err as Error).message }, 'pulled reading not queued');
      },
    );
  }

  /**
   * The uplink queue is full: the reading is not stored, and counted here (and in the uplink's refusals). A pulled
   * reading is a sample the sensor still holds; the next poll reads its value then, so nothing acknowledged is lost.
   */
  private refusedReading(deviceId: string): void {
    this.refused++;
    if (this.refusalLog.admit('queue-full') === null) return;
    this.logger.warn(
      { deviceId, refused: this.refused - this.refusedLogged, total: this.refused },
      'pulled readings not stored: the uplink queue is full',
    );
    this.refusedLogged = this.refused;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.reload) clearInterval(this.reload);
    if (this.restart) clearTimeout(this.restart);
    const child = this.child;
    this.child = null;
    if (child && child.exitCode === null) {
      child.kill('SIGTERM');
    }
  }
}
