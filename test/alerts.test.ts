/**
 * One way to raise an alert (gateway/src/alerts.ts): stored, then announced on the event stream that flows
 * follow — only once committed, never when the transaction that raised it rolls back — including the alerts
 * raised outside the detector (the tamper switch here).
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { raiseAlert } from '../gateway/src/alerts.ts';
import { ManualClock } from '../gateway/src/clock.ts';
import { parseConfig } from '../gateway/src/config/index.ts';
import { Core } from '../gateway/src/core.ts';
import type { GatewayEvent } from '../gateway/src/events.ts';
import { HardwareService, SimulatedGpio } from '../gateway/src/hardware/index.ts';
import { createLogger } from '../gateway/src/log.ts';
import type { NewAlert } from '../gateway/src/store/index.ts';
import { tempDir } from './helpers/tmp.ts';

function gateway(t: Parameters<typeof tempDir>[0], hardware?: object) {
  const dir = tempDir(t);
  const clock = new ManualClock(Date.UTC(2026, 11, 6, 9));
  const config = parseConfig({ dataDir: join(dir, 'var'), ...(hardware ? { hardware } : {}) }, dir);
  const core = Core.open(config, clock);
  t.after(() => core.close());
  const heard: GatewayEvent[] = [];
  core.events.on((e) => heard.push(e));
  return { core, clock, config, heard };
}

const ALERT: NewAlert = {
  deviceId: null,
  severity: 'high',
  kind: 'test.kind',
  explanation: 'a test alert',
  evidence: {},
  dedupeKey: 'test.kind',
};

describe('raising an alert', () => {
  it('stores it and announces it with its stored id', (t) => {
    const { core, heard } = gateway(t);
    const alert = raiseAlert(core, ALERT, 0.5);
    assert.equal(heard.length, 1);
    const e = heard[0];
    assert.equal(e?.type, 'alert');
    assert.ok(e?.type === 'alert' && e.alertId === alert.id && e.kind === 'test.kind' && e.score === 0.5);
    assert.equal(core.alerts().length, 1);
  });

  it('announces an alert raised inside a transaction only once it is committed', (t) => {
    const { core, heard } = gateway(t);
    core.store.transaction(() => {
      core.store.transaction(() => raiseAlert(core, ALERT));
      assert.equal(heard.length, 0, 'not before the outermost commit');
    });
    assert.equal(heard.length, 1);
  });

  it('never announces an alert whose transaction rolled back', (t) => {
    const { core, heard } = gateway(t);
    assert.throws(() =>
      core.store.transaction(() => {
        raiseAlert(core, ALERT);
        throw new Error('later step failed');
      }),
    );
    assert.equal(heard.length, 0);
    assert.equal(core.alerts().length, 0, 'and nothing was stored');
    // An inner part that rolled back drops only its own announcement.
    core.store.transaction(() => {
      raiseAlert(core, { ...ALERT, kind: 'kept', dedupeKey: 'kept' });
      try {
        core.store.transaction(() => {
          raiseAlert(core, { ...ALERT, kind: 'dropped', dedupeKey: 'dropped' });
          throw new Error('inner step failed');
        });
      } catch {
        // the outer part goes on
      }
    });
    assert.deepEqual(
      heard.map((e) => (e.type === 'alert' ? e.kind : e.type)),
      ['kept'],
    );
  });

  it('announces the tamper alert to flows, which it did not before', (t) => {
    const pins = { pairingButton: 17, tamperSwitch: 27, statusLed: 22 };
    const { core, clock, config, heard } = gateway(t, { backend: 'simulator', pins });
    const gpio = new SimulatedGpio();
    gpio.set(pins.pairingButton, 1);
    gpio.set(pins.tamperSwitch, 1);
    const hw = new HardwareService({
      backend: gpio,
      options: config.hardware,
      store: core.store,
      audit: core.audit,
      clock,
      logger: createLogger('fatal'),
      events: core.events,
    });
    hw.start();
    t.after(() => hw.stop());
    gpio.set(pins.tamperSwitch, 0);
    const alerts = heard.filter((e) => e.type === 'alert');
    assert.equal(alerts.length, 1);
    assert.ok(alerts[0]?.type === 'alert' && alerts[0].severity === 'high');
  });
});
