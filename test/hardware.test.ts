/**
 * The appliance's GPIO through the simulator backend (no GPIO here; the onoff backend is the same interface):
 * the pairing button as proof of presence for first setup, the tamper switch (high alert, UI lock until
 * acknowledged), the status LED's pattern per state.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ManualClock } from '../gateway/src/clock.ts';
import { parseConfig } from '../gateway/src/config/index.ts';
import { Core } from '../gateway/src/core.ts';
import { HardwareService, LED_PATTERNS, SimulatedGpio } from '../gateway/src/hardware/index.ts';
import { createLogger } from '../gateway/src/log.ts';
import { createUiApp } from '../ui/src/app.ts';
import { tempDir } from './helpers/tmp.ts';

const PINS = { pairingButton: 17, tamperSwitch: 27, statusLed: 22 };
const PASSWORD = 'correct horse battery staple';

function appliance(t: Parameters<typeof tempDir>[0], options: { tamperLocksUi?: boolean } = {}) {
  const dir = tempDir(t);
  const clock = new ManualClock(Date.UTC(2026, 10, 25, 9));
  const config = parseConfig(
    {
      dataDir: join(dir, 'var'),
      hardware: { backend: 'simulator', pins: PINS, tamperLocksUi: options.tamperLocksUi ?? false },
    },
    dir,
  );
  const core = Core.open(config, clock);
  t.after(() => core.close());
  const gpio = new SimulatedGpio();
  // Pull-ups: idle inputs read 1; pressing / opening pulls them to 0.
  gpio.set(PINS.pairingButton, 1);
  gpio.set(PINS.tamperSwitch, 1);
  const hw = new HardwareService({
    backend: gpio,
    options: config.hardware,
    store: core.store,
    audit: core.audit,
    clock,
    logger: createLogger('fatal'),
  });
  hw.start();
  t.after(() => hw.stop());
  const app = createUiApp(core, { pairingOpen: () => hw.pairingOpen() });
  const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
    app.request(path, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify(body),
    });
  return { core, clock, gpio, hw, app, post };
}

/** The LED levels over one one-second cycle. */
function cycle(hw: HardwareService, gpio: SimulatedGpio): (0 | 1)[] {
  const before = gpio.written.get(PINS.statusLed)?.length ?? 0;
  for (let i = 0; i < 8; i++) hw.step();
  return (gpio.written.get(PINS.statusLed) ?? []).slice(before);
}
const inverted = (p: readonly (0 | 1)[]) => p.map((v) => (v ? 0 : 1));

describe('appliance GPIO (simulator backend)', () => {
  it('lets first setup go without the code only while the pairing window is open', async (t) => {
    const { core, clock, gpio, post } = appliance(t);
    const setup = () => post('/auth/setup', { username: 'root', password: PASSWORD });
    assert.equal((await setup()).status, 403, 'no code, no button: refused');
    gpio.set(PINS.pairingButton, 0); // pressed
    gpio.set(PINS.pairingButton, 1);
    clock.advance(11 * 60_000);
    assert.equal((await setup()).status, 403, 'the window closed after 10 minutes');
    gpio.set(PINS.pairingButton, 0);
    const ok = await setup();
    assert.equal(ok.status, 201);
    const entry = [...core.store.audit.iterate()].find((e) => e.action === 'user.setup');
    assert.match(entry?.details ?? '', /pairing button/);
    assert.equal(
      [...core.store.audit.iterate()].filter((e) => e.action === 'hardware.pairing.open').length,
      2,
    );
  });

  it('raises a high alert when the enclosure opens and, if configured, locks UI changes until acknowledged', async (t) => {
    const { core, gpio, app, clock } = appliance(t, { tamperLocksUi: true });
    core.identity.addPskDevice({ id: 's1', pskIdentity: 's1', pskHex: '11'.repeat(16) }, 'test');
    gpio.set(PINS.tamperSwitch, 0); // lid off
    const alert = core.store.alerts.list({ open: true }).find((a) => a.kind === 'hardware.tamper');
    assert.equal(alert?.severity, 'high');
    assert.match(alert?.explanation ?? '', /enclosure was opened.*locked/);
    // A technician's session: every change but the acknowledgement is refused.
    await core.users.createUser({ username: 'tech', role: 'technician', password: PASSWORD }, 'test');
    const { generateSync } = await import('otplib');
    const jar: Record<string, string> = {};
    const call = async (method: string, path: string, body?: unknown) => {
      const res = await app.request(path, {
        method,
        headers: {
          'content-type': 'application/json',
          cookie: jar.cookie ?? '',
          'x-csrf-token': jar.csrf ?? '',
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const set = res.headers.get('set-cookie');
      const m = set && /__Host-portcullis=([^;]*)/.exec(set);
      if (m?.[1]) jar.cookie = `__Host-portcullis=${m[1]}`;
      return { status: res.status, data: (await res.json()) as Record<string, unknown> };
    };
    await call('POST', '/auth/login', { username: 'tech', password: PASSWORD });
    const secret = (await call('POST', '/auth/totp/enroll')).data.secret as string;
    const done = await call('POST', '/auth/totp/confirm', {
      code: generateSync({ secret, epoch: Math.floor(clock.now() / 1000) }),
    });
    jar.csrf = done.data.csrf as string;
    const locked = await call('POST', '/api/v1/devices/s1/quarantine', { reason: 'x' });
    assert.equal(locked.status, 423);
    assert.equal((locked.data.error as { code: string }).code, 'ERR_UI_TAMPER_LOCK');
    assert.equal((await call('GET', '/api/v1/devices')).status, 200, 'reading still works');
    assert.equal((await call('POST', `/api/v1/alerts/${alert?.id}/ack`)).status, 200);
    assert.equal(
      (await call('POST', '/api/v1/devices/s1/quarantine', { reason: 'x' })).status,
      200,
      'unlocked',
    );
  });

  it('shows the state on the LED: steady when all is well, then pairing, alert and quarantine patterns', async (t) => {
    const { core, gpio, hw } = appliance(t);
    // Active-low LED: the written levels are the pattern inverted.
    assert.deepEqual(cycle(hw, gpio), inverted(LED_PATTERNS.ok));
    core.identity.addPskDevice({ id: 's1', pskIdentity: 's1', pskHex: '11'.repeat(16) }, 'test');
    core.identity.quarantine('s1', { mode: 'observe', reason: 'x' }, 'test');
    assert.deepEqual(cycle(hw, gpio), inverted(LED_PATTERNS.quarantine));
    gpio.set(PINS.tamperSwitch, 0);
    assert.deepEqual(
      cycle(hw, gpio),
      inverted(LED_PATTERNS.alert),
      'an open high alert outranks a quarantine',
    );
    gpio.set(PINS.pairingButton, 0);
    assert.deepEqual(
      cycle(hw, gpio),
      inverted(LED_PATTERNS.pairing),
      'the person pressing the button sees it',
    );
  });
});
