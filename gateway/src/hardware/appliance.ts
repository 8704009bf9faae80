import { raiseAlert } from '../alerts.ts';
import type { AuditLog } from '../audit/index.ts';
import type { Clock } from '../clock.ts';
import type { GatewayEvents } from '../events.ts';
import type { Logger } from '../log.ts';
import type { Alert, Store } from '../store/index.ts';
import type { GpioBackend } from './backend.ts';

export type LedState = 'ok' | 'pairing' | 'alert' | 'quarantine';

/** The status LED over a one-second cycle of eight 125 ms ticks. */
export const LED_PATTERNS: Record<LedState, readonly (0 | 1)[]> = {
  ok: [1, 1, 1, 1, 1, 1, 1, 1], // steady
  pairing: [1, 1, 1, 1, 0, 0, 0, 0], // slow blink: the pairing window is open
  alert: [1, 0, 1, 0, 1, 0, 1, 0], // fast blink: an open high-severity alert
  quarantine: [1, 0, 1, 0, 0, 0, 0, 0], // double blink: a device is in quarantine
};
const TICK_MS = 125;

export interface HardwareOptions {
  pins: {
    pairingButton?: number | undefined;
    tamperSwitch?: number | undefined;
    statusLed?: number | undefined;
  };
  /** Pressed button / open enclosure reads 0 (pull-up wiring). */
  activeLow: boolean;
  pairingWindowMinutes: number;
  /** An open tamper alert blocks changes through the UI until a person acknowledges it. */
  tamperLocksUi: boolean;
}

export const TAMPER_ALERT = 'hardware.tamper';

/** Whether an unacknowledged tamper alert among `openAlerts` (the store's: any process can ask) locks the UI. */
export function uiLockedByTamper(openAlerts: readonly Pick<Alert, 'kind' | 'evidence'>[]): boolean {
  return openAlerts.some(
    (a) => a.kind === TAMPER_ALERT && (a.evidence as { lockUi?: boolean } | null)?.lockUi === true,
  );
}

/**
 * The appliance's physical side: the pairing button opens a window in which a person at the box may do what
 * needs physical presence (first setup without the code); the tamper switch raises a high alert; the LED shows
 * the state. Pins and polarity come from the configuration.
 */
export class HardwareService {
  private pairingUntil = 0;
  private tick = 0;
  private led: LedState = 'ok';
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly deps: {
      backend: GpioBackend;
      options: HardwareOptions;
      store: Store;
      audit: AuditLog;
      clock: Clock;
      logger: Logger;
      /** Where the tamper alert is announced to flows. */
      events?: GatewayEvents;
    },
  ) {}

  start(): void {
    const { backend, options } = this.deps;
    const active = (level: 0 | 1) => (options.activeLow ? level === 0 : level === 1);
    if (options.pins.pairingButton !== undefined) {
      backend.watch(options.pins.pairingButton, (level) => {
        if (active(level)) this.openPairing();
      });
    }
    if (options.pins.tamperSwitch !== undefined) {
      backend.watch(options.pins.tamperSwitch, (level) => {
        if (active(level)) this.tampered();
      });
    }
    if (options.pins.statusLed !== undefined) {
      this.timer = setInterval(() => this.step(), TICK_MS);
      this.timer.unref();
    }
  }

  stop(): void {
    clearInterval(this.timer);
    this.deps.backend.close();
  }

  pairingOpen(): boolean {
    return this.deps.clock.now() < this.pairingUntil;
  }

  private openPairing(): void {
    const until = this.deps.clock.now() + this.deps.options.pairingWindowMinutes * 60_000;
    this.pairingUntil = until;
    this.deps.audit.append({
      actor: 'hardware',
      action: 'hardware.pairing.open',
      details: { until: new Date(until).toISOString() },
    });
    this.deps.logger.warn(
      { until: new Date(until).toISOString() },
      'pairing button pressed: pairing window open',
    );
  }

  private tampered(): void {
    const { store, audit, options, logger } = this.deps;
    store.transaction(() => {
      raiseAlert(this.deps, {
        deviceId: null,
        severity: 'high',
        kind: TAMPER_ALERT,
        explanation: `the enclosure was opened (tamper switch)${options.tamperLocksUi ? '; changes through the UI are locked until this alert is acknowledged' : ''}`,
        evidence: { pin: options.pins.tamperSwitch, lockUi: options.tamperLocksUi },
        dedupeKey: TAMPER_ALERT,
      });
      audit.append({
        actor: 'hardware',
        action: 'hardware.tamper',
        details: { lockUi: options.tamperLocksUi },
      });
    });
    logger.error('tamper switch: enclosure opened');
  }

  /** What the LED shows: pairing first (feedback to the person pressing), then alerts, quarantines, ok. */
  ledState(): LedState {
    if (this.pairingOpen()) return 'pairing';
    const { store } = this.deps;
    if (store.alerts.list({ open: true }).some((a) => a.severity === 'high')) return 'alert';
    if (store.devices.countByState().quarantined > 0) return 'quarantine';
    return 'ok';
  }

  /** One LED tick; the state is re-read once per cycle (a store query a second, not eight). */
  step(): void {
    const pin = this.deps.options.pins.statusLed;
    if (pin === undefined) return;
    if (this.tick % 8 === 0) this.led = this.ledState();
    this.deps.backend.write(
      pin,
      (LED_PATTERNS[this.led][this.tick % 8] as 0 | 1) ^ (this.deps.options.activeLow ? 1 : 0) ? 1 : 0,
    );
    this.tick++;
  }
}
