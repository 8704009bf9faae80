import { randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import type { Clock } from '../clock.ts';
import {
  type ConfigApplier,
  ConfigApplyError,
  type ConfigApplyStatus,
  type ConfigChange,
  changeTargetOf,
  clearPending,
  pendingChange,
  planConfigChange,
  restorePrevious,
  writeConfigChange,
} from '../config/apply.ts';
import { type LoadedConfig, resolveConfig } from '../config/index.ts';
import { assessHealth } from '../health.ts';
import type { Logger } from '../log.ts';
import { Gateway } from '../main.ts';

/** How long a changed gateway has to come back healthy before the change is rolled back. */
const DEFAULT_HEALTH_BOUND_MS = 30_000;
const POLL_MS = 250;
/** The answer to the form goes out before the UI it came through stops. */
const RESPONSE_GRACE_MS = 500;

interface Deps {
  clock: Clock;
  logger: Logger;
  logs?: { recent(): string[] };
}

/**
 * `portcullis start`'s owner of the running gateway, so the console can change the configuration file and have
 * it applied with automatic rollback (issue 25 item 12): the change is validated and written (the file in force
 * kept as `<file>.previous`, a marker saying a change is being tried), the gateway is stopped and started again
 * in this process with the new file, and it must come back healthy within a bound — the store answers, and an
 * uplink that was connected before the change is connected again (gateway/src/health.ts, without the 60 s grace
 * monitoring gives a broker outage). Otherwise the previous file is put back and the gateway started with it.
 * Either way one audit entry (`config.apply`) names what changed and the result, never a value.
 *
 * A process that dies while a change is being tried (a start that hangs, a crash) is restarted by systemd; the
 * marker then tells the next start that the change never proved itself, and the previous file is put back.
 */
export class GatewaySupervisor implements ConfigApplier {
  private gateway: Gateway | null = null;
  private busy: Promise<void> | null = null;
  private last: ConfigApplyStatus | null = null;
  private readonly boundMs: number;

  constructor(
    private readonly loaded: LoadedConfig,
    private readonly deps: Deps,
    opts: { healthBoundMs?: number } = {},
  ) {
    const env = Number(process.env.PORTCULLIS_APPLY_HEALTH_SECONDS);
    this.boundMs = opts.healthBoundMs ?? (env > 0 ? env * 1000 : DEFAULT_HEALTH_BOUND_MS);
  }

  private get file(): string | undefined {
    return this.loaded.source;
  }

  private start(loaded: LoadedConfig): Promise<Gateway> {
    return Gateway.start(loaded, { ...this.deps, configApply: this });
  }

  /** The first start; a change left half-tried by a dead process is rolled back first. */
  async boot(): Promise<Gateway> {
    const file = this.file;
    const target = file ? changeTargetOf(file) : undefined;
    const pending = target ? pendingChange(target) : undefined;
    if (!file || !target || !pending) {
      this.gateway = await this.start(this.loaded);
      return this.gateway;
    }
    this.deps.logger.warn(
      { changed: pending.changed },
      'a configuration change never proved itself: rolling it back',
    );
    restorePrevious(target);
    clearPending(target);
    this.gateway = await this.start(resolveConfig(file));
    this.finish(this.gateway, pending, 'rolled-back', [
      'the gateway stopped before the change was confirmed healthy',
    ]);
    return this.gateway;
  }

  status(): ConfigApplyStatus | null {
    return this.last;
  }

  canApply(): boolean {
    return this.file !== undefined;
  }

  check(change: ConfigChange): string[] {
    const plan = planConfigChange(this.writableFile(), change);
    if (plan.createdCaFile && plan.caFile) rmSync(plan.caFile, { force: true });
    return plan.changed;
  }

  private writableFile(): string {
    const file = this.file;
    if (!file) {
      throw new ConfigApplyError(
        'ERR_CONFIG_APPLY_STATE',
        'the gateway runs on embedded defaults: there is no configuration file to change',
      );
    }
    return file;
  }

  apply(change: ConfigChange, actor: string): { id: string; changed: string[] } {
    const file = this.writableFile();
    const running = this.gateway;
    if (this.busy || !running) {
      throw new ConfigApplyError(
        'ERR_CONFIG_APPLY_BUSY',
        'a configuration change is being applied; wait for its result',
      );
    }
    const plan = planConfigChange(file, change);
    const status: ConfigApplyStatus = {
      id: randomUUID(),
      actor,
      changed: plan.changed,
      state: 'applying',
      reasons: [],
      requestedAt: new Date(this.deps.clock.now()).toISOString(),
    };
    const mustConnect = this.uplinkConnected(running);
    writeConfigChange(plan, status);
    running.core.audit.append({
      actor,
      action: 'config.apply.requested',
      target: plan.file,
      details: { id: status.id, changed: plan.changed },
    });
    this.last = status;
    this.busy = new Promise<void>((r) => setTimeout(r, RESPONSE_GRACE_MS).unref())
      .then(() => this.restart(file, plan.file, status, mustConnect))
      .catch((err: unknown) => {
        // Nothing to fall back to: exit, and systemd's restart finds the marker (or the previous file) again.
        this.deps.logger.error({ err: (err as Error).message }, 'applying the configuration failed; exiting');
        process.exit(1);
      })
      .finally(() => {
        this.busy = null;
      });
    return { id: status.id, changed: plan.changed };
  }

  private uplinkConnected(gw: Gateway): boolean {
    return gw.core.config.uplink !== undefined && gw.uplink.status().state === 'connected';
  }

  /** Healthy for a change: the store answers and, if it was connected before, the uplink is again. */
  private async healthy(gw: Gateway, mustConnect: boolean): Promise<string[]> {
    const started = Date.now();
    const until = started + this.boundMs;
    let reasons: string[] = [];
    for (;;) {
      // The store and the workers as /healthz judges them; the uplink by this change's own bound instead of
      // the 60 s grace monitoring gives a broker outage.
      const h = assessHealth(
        gw.core.status(),
        { uplink: () => undefined, pullPoller: () => undefined, dtlsCrypto: () => undefined },
        this.deps.clock.now(),
      );
      reasons = [...h.reasons];
      const up = gw.uplink.status();
      if (mustConnect && up.state !== 'connected') {
        reasons.push(
          `the uplink was connected before the change and is ${up.state} ${Math.round((Date.now() - started) / 1000)} s after the restart${up.lastError ? `: ${up.lastError}` : ''}`,
        );
      }
      if (reasons.length === 0) return [];
      if (Date.now() >= until) return reasons;
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
  }

  /** `file`: the main configuration (what a start reads); `target`: where the change was written. */
  private async restart(
    file: string,
    target: string,
    status: ConfigApplyStatus,
    mustConnect: boolean,
  ): Promise<void> {
    const old = this.gateway as Gateway;
    this.gateway = null;
    await old.stop('configuration change', { reloading: true });
    let next: Gateway | null = null;
    let reasons: string[];
    try {
      next = await this.start(resolveConfig(file));
      reasons = await this.healthy(next, mustConnect);
    } catch (err) {
      reasons = [`the gateway did not start: ${(err as Error).message.split('\n')[0]}`];
    }
    if (next && reasons.length === 0) {
      clearPending(target);
      this.gateway = next;
      this.finish(next, status, 'applied', []);
      return;
    }
    this.deps.logger.error(
      { reasons, changed: status.changed },
      'configuration change unhealthy: rolling back',
    );
    await next?.stop('configuration rolled back', { reloading: true });
    restorePrevious(target);
    clearPending(target);
    this.gateway = await this.start(resolveConfig(file));
    this.finish(this.gateway, status, 'rolled-back', reasons);
  }

  private finish(
    gw: Gateway,
    status: ConfigApplyStatus,
    state: 'applied' | 'rolled-back',
    reasons: string[],
  ): void {
    this.last = { ...status, state, reasons, finishedAt: new Date(this.deps.clock.now()).toISOString() };
    gw.core.audit.append({
      actor: status.actor,
      action: 'config.apply',
      target: this.file ?? null,
      details: {
        id: status.id,
        changed: status.changed,
        result: state,
        ...(reasons.length ? { reasons } : {}),
      },
    });
    this.deps.logger.info({ changed: status.changed, result: state }, 'configuration change finished');
  }

  /** Stops the gateway, after a change under way has finished (it may be restarting it). */
  async stop(reason: string): Promise<void> {
    await this.busy;
    await this.gateway?.stop(reason);
  }
}
