import { systemClock } from '../clock.ts';
import { resolveConfig } from '../config/index.ts';
import { createLogger, LogRing } from '../log.ts';
import type { Gateway } from '../main.ts';
import { EXIT } from './exit-codes.ts';
import type { Io } from './io.ts';
import { stagedRestoreAtStart } from './restore-at-start.ts';
import { GatewaySupervisor } from './supervise.ts';

export { type Io, stdio } from './io.ts';

/** How long shutdown may take before the process gives up waiting and exits non-zero. */
const SHUTDOWN_DEADLINE_MS = 4_000;

export async function startCommand(configPath: string | undefined): Promise<number> {
  // A restore staged from a backup goes in place before anything opens the database (gateway/src/backup).
  const { loaded, note } = await stagedRestoreAtStart(resolveConfig(configPath), () =>
    resolveConfig(configPath),
  );
  // The recent lines also stay in memory for the UI's logs page (bounded).
  const logs = new LogRing();
  const logger = createLogger(loaded.config.log.level, logs);
  if (note) logger[note.level](note.fields, note.msg);
  // One signal handler for the whole run, installed before start-up: a stop requested while the gateway is
  // still starting (or in the moment after it logged "started") is honoured once it is up, as a clean, audited
  // stop. Swapping handlers instead loses a signal that lands between them. A second signal exits at once, and
  // so does a shutdown that hangs.
  let gateway: Gateway | null = null;
  let requested: NodeJS.Signals | null = null;
  let finish: (code: number) => void = () => {};
  const finished = new Promise<number>((resolve) => {
    finish = resolve;
  });
  const stop = (running: Gateway, signal: NodeJS.Signals) => {
    const deadline = setTimeout(() => {
      logger.error('shutdown deadline passed; exiting');
      process.exit(EXIT.failure);
    }, SHUTDOWN_DEADLINE_MS);
    deadline.unref();
    // Through the supervisor: a configuration change under way finishes (or rolls back) first.
    (supervisor ? supervisor.stop(signal) : running.stop(signal)).then(
      () => finish(EXIT.ok),
      (err: unknown) => {
        logger.error({ err }, 'error during shutdown');
        finish(EXIT.failure);
      },
    );
  };
  const onSignal = (signal: NodeJS.Signals) => {
    if (requested) process.exit(EXIT.failure);
    requested = signal;
    if (gateway) stop(gateway, signal);
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  // Owns the running gateway, so the console's configuration changes can restart it with rollback.
  const supervisor = new GatewaySupervisor(loaded, { clock: systemClock, logger, logs });
  try {
    gateway = await supervisor.boot();
  } catch (err) {
    process.removeListener('SIGTERM', onSignal);
    process.removeListener('SIGINT', onSignal);
    throw err;
  }
  if (requested) stop(gateway, requested);
  return finished;
}

export function configCheckCommand(file: string | undefined, print: boolean, io: Io): number {
  const loaded = resolveConfig(file);
  io.out(`ok: ${loaded.source ?? 'embedded defaults'}`);
  if (print) io.out(JSON.stringify(loaded.config, null, 2));
  return EXIT.ok;
}
