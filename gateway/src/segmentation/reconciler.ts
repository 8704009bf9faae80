import type { IdentityService } from '../identity/index.ts';
import type { Logger } from '../log.ts';
import type { SegmentationService } from './service.ts';

const CHECK_MS = 1000;

export interface FirewallReconciler {
  /** Resolves after the first apply (successful or not: a failure is alerted and the previous rules stay). */
  ready: Promise<void>;
  close(): Promise<void>;
}

/**
 * Keeps the kernel in step with the store while the gateway runs (firewall.enforce): applies at start, then
 * whenever identity, placement, allow-lists or quarantines change (checked every second, so a change made by
 * the CLI in another process is in force within about a second), and when DNS answers are due again. Applies
 * only when the compiled ruleset's hash differs from the one in force.
 */
export function startFirewallReconciler(
  service: Pick<SegmentationService, 'render' | 'apply'>,
  identity: IdentityService,
  refreshSeconds: number,
  now: () => number,
  logger: Logger,
): FirewallReconciler {
  let stamp = identity.changeStamp;
  let namesAt = now();
  let inForce: string | undefined;
  let closed = false;

  const reconcile = async (refreshNames: boolean, force: boolean) => {
    try {
      const compiled = await service.render({ refreshNames });
      if (!force && compiled.hash === inForce) return;
      const r = await service.apply('system', compiled);
      inForce = r.hash;
      logger.info(
        {
          hash: r.hash,
          rules: r.rules,
          setEntries: r.setEntries,
          ms: Math.round(r.timings.totalMs),
          warnings: r.warnings,
        },
        'firewall ruleset applied',
      );
    } catch (err) {
      logger.error(
        { err: (err as Error).message, code: (err as { code?: string }).code },
        'firewall ruleset not applied',
      );
    }
  };

  const ready = reconcile(true, true);
  let running: Promise<void> = ready;
  const timer = setInterval(() => {
    if (closed) return;
    const current = identity.changeStamp;
    const namesDue = now() - namesAt >= refreshSeconds * 1000;
    if (current === stamp && !namesDue) return;
    stamp = current;
    if (namesDue) namesAt = now();
    // One reconcile at a time; a change during one is picked up by the next tick.
    running = running.then(() => reconcile(namesDue, false));
  }, CHECK_MS);
  timer.unref();
  return {
    ready,
    close: async () => {
      closed = true;
      clearInterval(timer);
      await running;
    },
  };
}
