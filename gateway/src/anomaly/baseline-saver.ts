import type { Logger } from '../log.ts';
import type { Store } from '../store/index.ts';
import type { Detector } from './detector.ts';

/**
 * Baselines written per transaction by the periodic save. At 10,000 devices one transaction of every baseline
 * (~3.4 KB each) held the gateway's one data-path thread for 100–360 ms every ten minutes, and the decommission
 * check before it (a device read per baseline) 66–110 ms more (docs/performance.md): no datagram was read
 * meanwhile. In steps of this size the longest turn of the event loop is 7–25 ms on the machine measured (each
 * step is a commit: on a slow card its fsync is most of the turn).
 */
export const SAVE_STEP = 500;

/**
 * Persists the behaviour baselines: at once when the gateway stops, in steps while it runs. A device decommissioned
 * meanwhile had its baseline erased with it and is not written back from memory (checked in each step's own
 * transaction, so not even by a decommission from the CLI's process between the check and the write); one the
 * detector no longer holds is skipped.
 */
export class BaselineSaver {
  private step: NodeJS.Immediate | null = null;
  private running: Promise<void> | null = null;
  private finish: (() => void) | null = null;

  constructor(
    private readonly store: Store,
    private readonly detector: Detector,
    private readonly logger: Logger,
  ) {}

  /** Every baseline, in one transaction (the gateway is stopping); a save in steps still running ends first. */
  saveNow(now: string): void {
    this.cancel();
    this.write([...this.detector.deviceIds()], now);
  }

  /** Every baseline, SAVE_STEP to a turn; resolves when written, given up (logged) or cancelled. One at a time. */
  saveInSteps(now: string): Promise<void> {
    if (this.running) return this.running;
    const ids = [...this.detector.deviceIds()];
    let at = 0;
    const next = () => {
      this.step = null;
      const end = Math.min(at + SAVE_STEP, ids.length);
      const ok = this.write(ids.slice(at, end), now);
      at = end;
      if (ok && at < ids.length) this.step = setImmediate(next);
      else this.finish?.();
    };
    this.running = new Promise<void>((resolve) => {
      this.finish = () => {
        this.running = null;
        this.finish = null;
        resolve();
      };
    });
    const running = this.running;
    next();
    return running;
  }

  /** Stops a save in steps where it is (what it wrote stays written). */
  cancel(): void {
    if (this.step) clearImmediate(this.step);
    this.step = null;
    this.finish?.();
  }

  private write(ids: readonly string[], now: string): boolean {
    try {
      this.store.transaction(() => {
        for (const id of this.store.devices.decommissionedAmong(ids)) this.detector.forget(id);
        this.store.baselines.saveAll(this.states(ids), now);
      });
      return true;
    } catch (err) {
      this.logger.error({ err }, 'saving behaviour baselines failed');
      return false;
    }
  }

  private *states(ids: readonly string[]): IterableIterator<[string, Buffer]> {
    for (const id of ids) {
      const state = this.detector.exportState(id);
      if (state) yield [id, state];
    }
  }
}
