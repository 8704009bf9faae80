import { spawn } from 'node:child_process';
import type { Socket } from 'node:net';
import type { Logger } from './log.ts';

/**
 * Runs a short systemd tool (systemd-notify, systemctl) without holding the process open: neither the child, its
 * pipes nor its time limit keep Node's event loop alive. A stopped gateway exits when its own work is done; a
 * `systemd-notify` still waiting for PID 1 (its BARRIER=1 round trip, slow on a busy or emulated board) kept it
 * past `portcullis start`'s 4 s shutdown deadline, which exits 1 — systemd recorded a requested restart as a
 * failure ("exit-code") on the appliance. Exported for tests.
 */
export function runUnheld(
  cmd: string,
  args: readonly string[],
  opts: { env?: NodeJS.ProcessEnv; timeoutMs: number },
  done: (err: Error | null, stdout: string) => void,
): void {
  let out = '';
  let errText = '';
  let finished = false;
  const finish = (err: Error | null) => {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    done(err, out);
  };
  const child = spawn(cmd, args, { env: opts.env, stdio: ['ignore', 'pipe', 'pipe'] });
  const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs);
  timer.unref();
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString();
  });
  child.stderr.on('data', (d: Buffer) => {
    errText += d.toString();
  });
  child.on('error', (err) => finish(err));
  child.on('close', (code, signal) =>
    finish(
      code === 0
        ? null
        : new Error(
            `${cmd} ${signal ? `stopped by ${signal}` : `exited ${code}`}${errText.trim() ? `: ${errText.trim().split('\n')[0]}` : ''}`,
          ),
    ),
  );
  child.unref();
  (child.stdout as unknown as Socket).unref();
  (child.stderr as unknown as Socket).unref();
}

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
    runUnheld(
      'systemd-notify',
      [`--pid=${process.pid}`, ...messages],
      { env: this.env, timeoutMs: 5000 },
      (err) => {
        if (err) this.logger.warn({ err: err.message }, 'systemd-notify failed');
      },
    );
  }

  /** Ready: every listener is up. Starts the watchdog if the unit has one (WATCHDOG_USEC). */
  ready(healthy: () => boolean): void {
    clearInterval(reloadPets);
    const every = this.watchdogEveryMs();
    // Petted with the readiness itself: after an in-process restart the last pet may be nearly an interval old,
    // and waiting another for the first of this gateway's left systemd 30 s without one (the booted appliance
    // killed a gateway that had just come back healthy).
    const pet = every !== undefined && healthy() ? ['WATCHDOG=1'] : [];
    this.send('--ready', 'STATUS=serving', ...pet);
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
    const every = this.watchdogEveryMs();
    // Petted at once, for the same reason as in `ready`.
    this.send(
      'RELOADING=1',
      'STATUS=applying a configuration change',
      ...(every === undefined ? [] : ['WATCHDOG=1']),
    );
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
      runUnheld('systemctl', ['is-active', this.unit], { timeoutMs: 5000 }, (err, stdout) => {
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
