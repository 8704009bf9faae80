import { execFile } from 'node:child_process';
import type { AuditLog } from '../audit/index.ts';
import { PortcullisError } from '../errors.ts';

export type PowerAction = 'restart' | 'reboot';

/** Runs one command (argv, no shell). Injected, so tests observe a restart or reboot without doing one. */
export type CommandRunner = (argv: readonly string[]) => Promise<void>;

export class PowerError extends PortcullisError {
  constructor(code: 'ERR_POWER_FAILED' | 'ERR_POWER_BUSY', message: string) {
    super(code, message);
  }
}

/**
 * What restarts the gateway service and reboots the host on the appliance. `--no-block`: systemctl returns once
 * the job is queued, so the request is answered before systemd stops this process. The appliance's polkit rule
 * (systemd/polkit/50-portcullis.rules) allows the service user exactly these (docs/appliance.md).
 */
export const DEFAULT_POWER_COMMANDS: Record<PowerAction, readonly string[]> = {
  restart: ['systemctl', '--no-block', 'restart', 'portcullis-gateway.service'],
  reboot: ['systemctl', '--no-block', 'reboot'],
};

export const systemctlRunner: CommandRunner = (argv) =>
  new Promise((resolve, reject) => {
    const [cmd, ...args] = argv as [string, ...string[]];
    execFile(cmd, args, { timeout: 15_000 }, (err, _stdout, stderr) => {
      if (err) {
        reject(
          new PowerError(
            'ERR_POWER_FAILED',
            `${cmd} failed: ${String(stderr).trim().slice(0, 200) || err.message}`,
          ),
        );
      } else resolve();
    });
  });

/** Restart the gateway or reboot the host: audited before it happens (afterwards there may be no process left). */
export class PowerControl {
  private pending: PowerAction | null = null;

  constructor(
    private readonly deps: {
      audit: AuditLog;
      run?: CommandRunner;
      commands?: Record<PowerAction, readonly string[]>;
      /** The answer goes out before the command runs (tests: 0). */
      delayMs?: number;
    },
  ) {}

  /** Queues the action; resolves when the command has been started (or throws why it could not be). */
  request(action: PowerAction, actor: string, reason: string): { action: PowerAction; command: string } {
    if (this.pending) throw new PowerError('ERR_POWER_BUSY', `a ${this.pending} is already under way`);
    const argv = (this.deps.commands ?? DEFAULT_POWER_COMMANDS)[action];
    this.deps.audit.append({
      actor,
      action: action === 'restart' ? 'gateway.restart' : 'host.reboot',
      target: null,
      details: { reason: reason.slice(0, 300), command: argv.join(' ') },
    });
    this.pending = action;
    const run = this.deps.run ?? systemctlRunner;
    const timer = setTimeout(() => {
      run(argv).then(
        () => {
          this.pending = null;
        },
        (err: unknown) => {
          this.pending = null;
          try {
            this.deps.audit.append({
              actor,
              action: `${action === 'restart' ? 'gateway.restart' : 'host.reboot'}.failed`,
              target: null,
              details: { reason: err instanceof Error ? err.message.slice(0, 300) : 'failed' },
            });
          } catch {
            // The store is closed: the gateway is stopping — what was asked for is under way (systemctl, cut off
            // by that stop, reports a failure). Thrown here it ended the process with exit 1, and systemd
            // recorded the requested restart as a failure.
          }
        },
      );
    }, this.deps.delayMs ?? 500);
    timer.unref();
    return { action, command: argv.join(' ') };
  }
}
