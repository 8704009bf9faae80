/**
 * Peer-triggered log lines (a refused sensor, a failing handshake) must not let one noisy or hostile peer fill
 * the journal: each key logs at most once per interval, and the next line says how many were suppressed.
 */
export class LogThrottle {
  private readonly last = new Map<string, { at: number; suppressed: number }>();

  constructor(
    private readonly intervalMs: number,
    private readonly now: () => number,
    private readonly maxKeys = 10_000,
  ) {}

  /** Returns the number of suppressed repeats to report, or null when this occurrence should not be logged. */
  admit(key: string): number | null {
    const t = this.now();
    const e = this.last.get(key);
    if (e && t - e.at < this.intervalMs) {
      e.suppressed++;
      return null;
    }
    if (!e && this.last.size >= this.maxKeys) this.last.clear();
    this.last.set(key, { at: t, suppressed: 0 });
    return e?.suppressed ?? 0;
  }
}
