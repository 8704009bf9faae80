import type { Core } from '../../gateway/src/core.ts';

export type LiveTopic = 'alerts' | 'devices' | 'activity';
export type LiveListener = (topic: LiveTopic, data: Record<string, number>) => void;

/** At most this many open event streams; beyond, new ones are refused rather than starving the gateway. */
export const MAX_STREAMS = 64;

/**
 * One poller for every open page: once a second, while anyone listens, it compares cheap stamps of the alerts
 * and devices tables (and when a device was last seen) and tells listeners what changed. Polling the store (not in-process events) also shows
 * changes made by the CLI in another process.
 */
export class LiveFeed {
  private readonly listeners = new Set<LiveListener>();
  private timer: NodeJS.Timeout | undefined;
  private last = { alerts: '', devices: '', seen: '' };

  constructor(
    private readonly core: Core,
    private readonly intervalMs = 1000,
  ) {}

  get size(): number {
    return this.listeners.size;
  }

  subscribe(l: LiveListener): () => void {
    this.listeners.add(l);
    if (!this.timer) {
      this.snapshot(); // the baseline: changes are reported from here on
      this.timer = setInterval(() => this.tick(), this.intervalMs);
      this.timer.unref();
    }
    return () => {
      this.listeners.delete(l);
      if (this.listeners.size === 0 && this.timer) {
        clearInterval(this.timer);
        this.timer = undefined;
      }
    };
  }

  private snapshot() {
    const alerts = this.core.alertSummary();
    // A device sending readings moves only its "last seen" (and, every few windows, its chart buckets).
    const { rows: devices, seen } = this.core.identity.liveStamps();
    const changed = {
      alerts: alerts.stamp !== this.last.alerts,
      devices: devices !== this.last.devices,
      seen: seen !== this.last.seen,
    };
    this.last = { alerts: alerts.stamp, devices, seen };
    return { alerts, changed };
  }

  /** Runs one poll now (tests call it instead of waiting for the timer). */
  tick(): void {
    let s: ReturnType<LiveFeed['snapshot']>;
    try {
      s = this.snapshot();
    } catch {
      return; // the store is closing; the next tick (or none) decides
    }
    const emit = (topic: LiveTopic, data: Record<string, number>) => {
      for (const l of this.listeners) l(topic, data);
    };
    if (s.changed.alerts) emit('alerts', { openAlerts: s.alerts.open, highAlerts: s.alerts.high });
    if (s.changed.devices) emit('devices', { ...this.core.identity.countByState() });
    if (s.changed.seen) emit('activity', {});
  }
}
