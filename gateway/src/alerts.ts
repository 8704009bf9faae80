import type { Clock } from './clock.ts';
import type { GatewayEvents } from './events.ts';
import type { Alert, NewAlert, Store } from './store/index.ts';

/** What raising an alert needs: where it is kept, the time, and the event stream (absent in a CLI process). */
export interface AlertDeps {
  store: Store;
  clock: Clock;
  events?: GatewayEvents;
}

/**
 * The one way the gateway raises an alert: stored (a repeat of an open alert with the same dedupe key counts on
 * it), then announced on the event stream that flows and the control API follow — after the commit when raised
 * inside a transaction, so a flow never hears of an alert that was rolled back. `score` is the behaviour score
 * where one exists.
 */
export function raiseAlert(deps: AlertDeps, alert: NewAlert, score: number | null = null): Alert {
  const ts = new Date(deps.clock.now()).toISOString();
  const { alert: stored } = deps.store.alerts.raise(alert, ts);
  const events = deps.events;
  if (events) {
    deps.store.afterCommit(() =>
      events.emit({
        type: 'alert',
        ts,
        alertId: stored.id,
        deviceId: stored.deviceId,
        severity: stored.severity,
        kind: stored.kind,
        explanation: stored.explanation,
        score,
      }),
    );
  }
  return stored;
}
