import type { Core } from '../../gateway/src/core.ts';

export type LiveTopic = 'alerts' | 'devices';
export type LiveListener = (topic: LiveTopic, data: Record<string, number>) => void;

/** At most this many open event streams; beyond, new ones are refused rather than starving the gateway. */
export const MAX_STREAMS = 64;

/**
 * One poller for every open page: once a second, while anyone listens, it compares cheap stamps of the alerts
 * and devices tables and tells listeners what changed. Polling the store (not in-process events) also shows
 * changes made by the CLI in another process.
 */
export class LiveFeed {
  private readonly listeners = new Set<LiveListener>();
  private timer: NodeJS.Timeout | undefined;
  private last = { alerts: '', devices: '' };

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
    const alerts = this.core.store.alerts.openSummary();
    const devices = this.core.store.devices.changeStamp();
    const changed = { alerts: alerts.stamp !== this.last.alerts, devices: devices !== this.last.devices };
    this.last = { alerts: alerts.stamp, devices };
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
    if (s.changed.devices) emit('devices', { ...this.core.store.devices.countByState() });
  }
}
