import { raiseAlert as raise } from '../alerts.ts';
import type { Core } from '../core.ts';
import { type CapacityEvent, type PeerAddress, sourcePrefix } from '../dtls/index.ts';
import type { Logger } from '../log.ts';
import type { NewAlert } from '../store/index.ts';

/** DTLS capacity refusals fold into one alert update per this interval (the store is not written per hello). */
const CAPACITY_ALERT_MS = 60_000;
/** A flood from many prefixes keeps the first this many it saw until the next alert update. */
const MAX_PREFIXES = 1000;

type WarnOnce = (key: string, fields: Record<string, unknown>, message: string) => void;

/** Raises an alert; a store failure is logged, never thrown into the data path. */
function raiseAlert(core: Core, logger: Logger, alert: NewAlert, failure: string): void {
  try {
    raise(core, alert);
  } catch (err) {
    logger.error({ err: (err as Error).message }, failure);
  }
}

/**
 * Turns the DTLS server's capacity events into throttled log lines and alerts: a flood of never-continued
 * hellos (issue 19) must be visible to the operator without costing a log line or a database write per hello.
 */
export class CapacityReporter {
  private refused = 0;
  private evicted = 0;
  private byReason: Record<string, number> = {};
  private readonly prefixes = new Map<string, number>();
  private lastRaised = Number.NEGATIVE_INFINITY;
  private readonly lastOverused = new Map<string, number>();
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly core: Core,
    private readonly logger: Logger,
    private readonly warnOnce: WarnOnce,
  ) {}

  readonly onCapacity = (e: CapacityEvent): void => {
    if (e.action === 'evicted') this.evicted++;
    else this.refused++;
    const reason = e.action === 'evicted' ? 'evicted' : e.reason;
    this.byReason[reason] = (this.byReason[reason] ?? 0) + 1;
    const prefix = sourcePrefix(e.peer.address);
    if (this.prefixes.has(prefix) || this.prefixes.size < MAX_PREFIXES)
      this.prefixes.set(prefix, (this.prefixes.get(prefix) ?? 0) + 1);
    const device = e.credential ? this.core.identity.deviceFor(e.credential) : undefined;
    this.warnOnce(
      `dtls-capacity:${reason}`,
      { peer: `${e.peer.address}:${e.peer.port}`, reason, deviceId: device?.id },
      e.action === 'evicted'
        ? "DTLS handshake table full: evicted the busiest source's oldest half-open handshake"
        : 'DTLS capacity: refused',
    );
    if (e.reason === 'sessions-per-identity' && device) this.credentialOverused(device.id, e.peer);
    const since = this.core.clock.now() - this.lastRaised;
    if (since >= CAPACITY_ALERT_MS) this.raise();
    else if (!this.timer) {
      // What came after the last update is written at the end of the interval, even if the flood stopped.
      this.timer = setTimeout(() => this.flush(), CAPACITY_ALERT_MS - since);
      this.timer.unref();
    }
  };

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.flush();
  }

  private flush(): void {
    this.timer = null;
    if (this.refused + this.evicted > 0) this.raise();
  }

  /** One `dtls.capacity` alert (deduplicated) for what was refused and evicted since the last one. */
  private raise(): void {
    const top = [...this.prefixes].sort((a, b) => b[1] - a[1]).slice(0, 5);
    const reasons = Object.entries(this.byReason)
      .map(([r, n]) => `${r} ${n}`)
      .join(', ');
    raiseAlert(
      this.core,
      this.logger,
      {
        deviceId: null,
        severity: 'medium',
        kind: 'dtls.capacity',
        explanation:
          `DTLS handshakes refused for capacity: ${this.refused} refused, ${this.evicted} half-open ` +
          `evicted (${reasons}); busiest sources: ${top.map(([p, n]) => `${p} ${n}`).join(', ')}`,
        evidence: {
          refused: this.refused,
          evicted: this.evicted,
          byReason: this.byReason,
          topPrefixes: Object.fromEntries(top),
        },
        dedupeKey: 'dtls.capacity',
      },
      'raising the DTLS capacity alert failed',
    );
    this.lastRaised = this.core.clock.now();
    this.refused = 0;
    this.evicted = 0;
    this.byReason = {};
    this.prefixes.clear();
  }

  /**
   * Someone with a device's key was refused a session because that key already holds its cap from other
   * addresses: the key may be copied. Its own alert, on the device, at most once a minute per device.
   */
  private credentialOverused(deviceId: string, peer: PeerAddress): void {
    const now = this.core.clock.now();
    if (now - (this.lastOverused.get(deviceId) ?? Number.NEGATIVE_INFINITY) < CAPACITY_ALERT_MS) return;
    this.lastOverused.set(deviceId, now);
    raiseAlert(
      this.core,
      this.logger,
      {
        deviceId,
        severity: 'high',
        kind: 'dtls.session_limit',
        explanation:
          `${deviceId}'s credential was refused a session from ${peer.address}: it already holds the most ` +
          'sessions allowed (dtls.limits.maxSessionsPerIdentity) from other addresses. Is the key copied?',
        evidence: { address: peer.address },
        dedupeKey: `dtls.session_limit:${deviceId}`,
      },
      'raising the DTLS session-limit alert failed',
    );
  }
}
