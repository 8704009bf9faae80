import { execFile } from 'node:child_process';
import type { Logger } from './log.ts';

/**
 * systemd readiness and watchdog for `Type=notify` (systemd/portcullis-gateway.service). Node cannot send to
 * a Unix datagram socket itself, so the messages go through `systemd-notify`, a child in the same cgroup —
 * hence `NotifyAccess=all` in the unit. Outside systemd (no NOTIFY_SOCKET) everything here does nothing.
 */
/**
 * The watchdog kept while a configuration change stops and starts the gateway in this process: shared by every
 * notifier, because the gateway that starts again makes a new one (whose `ready` ends it).
 */
let reloadPets: NodeJS.Timeout | undefined;

export class SystemdNotifier {
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly logger: Logger,
    private readonly env: NodeJS.ProcessEnv = process.env,
    /** How long a reload may keep the watchdog without a store to ask (a start that hangs beyond is killed). */
    private readonly reloadLimitMs = 120_000,
  ) {}

  /** Half the unit's WatchdogSec, when it has one and it is this process's. */
  private watchdogEveryMs(): number | undefined {
    const usec = Number(this.env.WATCHDOG_USEC);
    const forUs = !this.env.WATCHDOG_PID || Number(this.env.WATCHDOG_PID) === process.pid;
    if (!this.active || !Number.isFinite(usec) || usec <= 0 || !forUs) return undefined;
    return Math.max(1000, usec / 2000);
  }

  get active(): boolean {
    return Boolean(this.env.NOTIFY_SOCKET);
  }

  private send(...messages: string[]): void {
    if (!this.active) return;
    execFile(
      'systemd-notify',
      [`--pid=${process.pid}`, ...messages],
      { env: this.env, timeout: 5000 },
      (err) => {
        if (err) this.logger.warn({ err: err.message }, 'systemd-notify failed');
      },
    );
  }

  /** Ready: every listener is up. Starts the watchdog if the unit has one (WATCHDOG_USEC). */
  ready(healthy: () => boolean): void {
    clearInterval(reloadPets);
    this.send('--ready', 'STATUS=serving');
    const every = this.watchdogEveryMs();
    if (every === undefined) return;
    // Pet at half the interval, and only while the store answers: a wedged gateway gets restarted.
    let last = performance.now();
    this.timer = setInterval(() => {
      // A pet due long ago means the event loop was held (a synchronous call): said, so a watchdog kill
      // in the journal comes with what preceded it.
      const late = performance.now() - last - every;
      last = performance.now();
      if (late > every / 2) {
        this.logger.warn({ lateMs: Math.round(late) }, 'event loop held: the watchdog pet came late');
      }
      if (healthy()) this.send('WATCHDOG=1');
      else this.logger.error('store unhealthy: withholding the systemd watchdog');
    }, every);
    this.timer.unref();
  }

  stopping(): void {
    clearInterval(this.timer);
    clearInterval(reloadPets);
    this.send('STOPPING=1', 'STATUS=stopping');
  }

  /**
   * Stopping to start again in this process (a configuration change); the next `ready` ends it. The process
   * keeps petting the watchdog meanwhile: on a small board (or the appliance under emulation) stopping and
   * starting takes longer than WatchdogSec, and systemd killed a gateway that was coming back healthy. Bounded:
   * a start that hangs beyond `reloadLimitMs` is killed and restarted, and its marker rolls the change back.
   */
  reloading(): void {
    clearInterval(this.timer);
    this.send('RELOADING=1', 'STATUS=applying a configuration change');
    const every = this.watchdogEveryMs();
    if (every === undefined) return;
    const until = Date.now() + this.reloadLimitMs;
    clearInterval(reloadPets);
    reloadPets = setInterval(() => {
      if (Date.now() < until) this.send('WATCHDOG=1');
      else clearInterval(reloadPets);
    }, every);
    reloadPets.unref();
  }
}

/**
 * Another unit's state as systemd reports it (`systemctl is-active`), polled in the background so /healthz
 * never waits on D-Bus. The appliance's gateway unit names the policy flows' unit in PORTCULLIS_FLOWS_UNIT;
 * elsewhere (no such variable) there is nothing to ask and `state()` stays undefined.
 */
export class UnitStateProbe {
  private current: string | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly unit: string,
    private readonly intervalMs = 10_000,
  ) {}

  static fromEnv(env: NodeJS.ProcessEnv = process.env): UnitStateProbe | undefined {
    const unit = env.PORTCULLIS_FLOWS_UNIT;
    return unit && /^[A-Za-z0-9@._:-]+\.service$/.test(unit) ? new UnitStateProbe(unit) : undefined;
  }

  start(): this {
    const poll = () =>
      execFile('systemctl', ['is-active', this.unit], { timeout: 5000 }, (err, stdout) => {
        // is-active exits non-zero for every state but active and still prints the state; nothing printed
        // means systemd could not be asked.
        const state = String(stdout).trim().split('\n')[0];
        this.current = state || (err ? 'unknown' : undefined);
      });
    poll();
    this.timer = setInterval(poll, this.intervalMs);
    this.timer.unref();
    return this;
  }

  state(): string | undefined {
    return this.current;
  }

  stop(): void {
    clearInterval(this.timer);
  }
}
