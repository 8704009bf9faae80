/**
 * The technician UI in a real browser (Debian's chromium driven by playwright-core) against a real gateway
 * process, as a technician would use it: first-boot setup with the console's setup code, MFA enrolment, login,
 * approving a certificate sensor that really handshook over DTLS, creating a PSK device and using the shown
 * key from a real DTLS client, quarantine and release, and reading an alert that arrives live. Every page is
 * saved as a screenshot in test-artifacts/screenshots/.
 */
import assert from 'node:assert/strict';
import { appendFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { generateSync } from 'otplib';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';
import { postMany } from './helpers/coap-sender.ts';
import { TestDtlsClient } from './helpers/dtls-test-client.ts';
import { type E2e, startE2e, stopE2e } from './helpers/e2e.ts';
import { runPeer } from './helpers/peers.ts';
import { nextCode as totpCode } from './helpers/totp.ts';

/** The little of the DOM the page-side functions use (the project's types have no DOM library). */
interface BrowserElement {
  id: string;
  textContent: string | null;
  labels?: { length: number } | null;
  getAttribute(name: string): string | null;
}
interface BrowserGlobals {
  document: {
    documentElement: { scrollWidth: number; clientWidth: number };
    activeElement: BrowserElement | null;
    querySelectorAll(selector: string): ArrayLike<BrowserElement>;
  };
}

const SHOTS = join(import.meta.dirname, '..', 'test-artifacts', 'screenshots');
const PASSWORD = 'a technician passphrase';

describe('technician UI in chromium', () => {
  let e2e: E2e;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let base: string;
  let secret = '';
  const nextCode = (key = secret) => totpCode(key);
  const shot = async (name: string) => {
    await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
  };
  const flash = async () => (await page.locator('.flash').first().textContent())?.trim() ?? '';

  before(async () => {
    mkdirSync(SHOTS, { recursive: true });
    e2e = await startE2e('gw-ui', async (home) => {
      // Behaviour learning in ~11 s with one-second windows (same code as 24 h with one-minute windows).
      appendFileSync(home.config, 'anomaly: {learningHours: 0.003, windowSeconds: 1}\n');
    });
    const line = e2e.gw.log.find((l) => l.includes('"gateway started"')) as string;
    base = (JSON.parse(line) as { ui: string }).ui;
    browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
    // The UI certificate is issued by the gateway's own identity CA, which this browser profile does not trust.
    context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 900 } });
    page = await context.newPage();
    page.on('dialog', (d) => void d.accept());
  });

  after(async () => {
    await browser?.close();
    await stopE2e(e2e ?? {});
  });

  it('first boot: offers only setup, which needs the one-time code from the console', async () => {
    const code = /setup code (\S+)/.exec(e2e.gw.stderr())?.[1];
    assert.ok(code, 'the gateway printed a setup code to its console');
    await page.goto(`${base}/`);
    assert.match(page.url(), /\/setup$/);
    await shot('01-setup');
    await page.getByLabel('Setup code').fill('WRONG-CODE');
    await page.getByLabel('Administrator name').fill('alice');
    await page.getByLabel(/^Password/).fill(PASSWORD);
    await page.getByRole('button', { name: 'Create administrator' }).click();
    assert.match(await flash(), /code/i);
    await page.getByLabel('Setup code').fill(code);
    await page.getByLabel('Administrator name').fill('alice');
    await page.getByLabel(/^Password/).fill(PASSWORD);
    await page.getByRole('button', { name: 'Create administrator' }).click();
    await page.waitForURL(/\/login$/);
    assert.match(await flash(), /Administrator alice created/);
  });

  it('enrols an authenticator at the first login, shows recovery codes once, then logs in with a code', async () => {
    await shot('02-login');
    await page.getByLabel('User name').fill('alice');
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Continue' }).click();
    await page.waitForURL(/\/login\/enroll$/);
    assert.equal(await page.locator('.qr svg').count(), 1, 'a QR code to scan');
    secret = ((await page.locator('.secret').textContent()) ?? '').trim();
    await shot('02-login-enrol');
    await page.getByLabel(/6-digit code/).fill(await nextCode());
    await page.getByRole('button', { name: 'Confirm' }).click();
    assert.equal(await page.getByRole('list', { name: 'Recovery codes' }).locator('li').count(), 10);
    await shot('03-recovery-codes');
    await page.getByRole('link', { name: 'Continue to the dashboard' }).click();
    await page.getByRole('button', { name: 'Log out' }).click();
    await page.waitForURL(/\/login$/);
    await page.getByLabel('User name').fill('alice');
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Continue' }).click();
    await page.waitForURL(/\/login\/totp$/);
    await shot('03-login-second-factor');
    await page.getByLabel(/authenticator app/).fill('000000');
    await page.getByRole('button', { name: 'Log in' }).click();
    assert.match(await flash(), /wrong code/);
    await page.getByLabel(/authenticator app/).fill(await nextCode());
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.waitForURL(`${base}/`);
    assert.equal(await page.getByRole('heading', { level: 1 }).textContent(), 'Dashboard');
  });

  it('approves a certificate sensor that handshook over DTLS; its data then reaches the cloud', async () => {
    const { pki, home, sub } = e2e;
    await home.cli(['identity', 'trust', 'add', '--name', 'acme', '--ca', pki.caPath]);
    const post = (payload: string) =>
      runPeer('coap-client-gnutls', [
        '-c',
        pki.client.certPath,
        '-j',
        pki.client.keyPath,
        '-C',
        join(home.dir, 'var', 'tls', 'identity-ca.pem'),
        '-m',
        'post',
        '-e',
        payload,
        '-B',
        '5',
        `coaps://127.0.0.1:${home.dtlsPort}/telemetry`,
      ]);
    await page.goto(`${base}/onboarding`);
    // The gateway picks the new anchor up within a second; the first attempts may simply be refused.
    const approve = page.getByRole('button', { name: /^Approve / });
    const deadline = Date.now() + 15_000;
    while ((await approve.count()) === 0 && Date.now() < deadline) {
      await post('knock');
      await page.reload();
    }
    assert.equal(await approve.count(), 1, 'the sensor is pending, with its fingerprint shown');
    assert.match((await page.locator('#pending code').first().textContent()) ?? '', /^[0-9a-f:]{64,}$/i);
    await shot('04-onboarding-pending');
    await approve.click();
    assert.match(await flash(), /approved/);
    await post('after approval');
    const until = Date.now() + 10_000;
    while (!sub.messages.some((m) => m.payload.toString() === 'after approval') && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.ok(sub.messages.some((m) => m.payload.toString() === 'after approval'));
    assert.ok(
      !sub.messages.some((m) => m.payload.toString() === 'knock'),
      'nothing got through while pending',
    );
  });

  let psk = '';
  /** The PSK device the wizard made, as a DTLS client holding the key the page showed. */
  const boilerSensor = async () => {
    const c = new TestDtlsClient({
      port: e2e.home.dtlsPort,
      suite: 'TLS_PSK_WITH_AES_128_CCM_8',
      psk: { identity: 'boiler-7', key: Buffer.from(psk, 'hex') },
      timeoutMs: 5000,
    });
    await c.connect();
    return c;
  };
  it('creates a PSK device with the wizard, shows the key once, and the key works from a real client', async () => {
    await page.goto(`${base}/onboarding`);
    await page.getByLabel('Device id').fill('boiler-7');
    await page.getByLabel(/PSK identity/).fill('boiler-7');
    await page.getByLabel(/^Type/).fill('boiler');
    await page.getByRole('button', { name: 'Create device' }).click();
    psk = ((await page.locator('#psk-value').textContent()) ?? '').trim();
    assert.match(psk, /^[0-9a-f]{32,}$/);
    assert.equal(await page.locator('.qr svg').count(), 1, 'the key as a QR code for the provisioning tool');
    await shot('05-psk-created');
    // The key as shown works: a DTLS client with it gets its reading acknowledged and delivered.
    const sensor = await boilerSensor();
    try {
      assert.deepEqual(await postMany(sensor, ['psk reading'], { firstMessageId: 9000 }), ['psk reading']);
    } finally {
      sensor.close();
    }
    const until = Date.now() + 10_000;
    while (!e2e.sub.messages.some((m) => m.payload.toString() === 'psk reading') && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.ok(e2e.sub.messages.some((m) => m.payload.toString() === 'psk reading'));
    // Shown once: the device page never shows the key again.
    await page.goto(`${base}/devices/boiler-7`);
    assert.ok(!(await page.content()).includes(psk));
  });

  it('quarantines and releases a device from its page, with the reason recorded', async () => {
    await page.goto(`${base}/devices/boiler-7`);
    await page.getByLabel('Reason for quarantine').fill('suspicious firmware');
    await page.getByLabel('Mode').selectOption('observe');
    await page.getByRole('button', { name: 'Quarantine' }).click();
    assert.match(await flash(), /quarantined/);
    assert.equal(await page.locator('h1 .badge').textContent(), 'quarantined');
    assert.match((await page.locator('dl.facts').textContent()) ?? '', /suspicious firmware/);
    await shot('06-device-quarantined');
    await page.getByRole('button', { name: 'Release' }).click();
    assert.match(await flash(), /released/);
    assert.equal(await page.locator('h1 .badge').textContent(), 'active');
    const audit = await e2e.home.cli(['audit', 'export', '--format', 'jsonl']);
    assert.match(audit, /"actor":"ui:alice","action":"device.quarantine"/);
    assert.match(audit, /"actor":"ui:alice","action":"device.release"/);
  });

  it('shows a behaviour alert live, with its explanation, and acknowledges it', async () => {
    const sensor = await boilerSensor();
    try {
      await page.goto(`${base}/alerts`);
      assert.match((await page.locator('#alert-list').textContent()) ?? '', /No open alerts/);
      // Learning: two readings a second for 13 s; then a flood.
      let id = 1;
      const started = Date.now();
      while (Date.now() - started < 13_000) {
        await postMany(sensor, [`{"t":${id}}`], { firstMessageId: id++ });
        await new Promise((r) => setTimeout(r, 500));
      }
      await postMany(
        sensor,
        Array.from({ length: 400 }, (_, i) => `{"f":${i}}`),
        { window: 16, firstMessageId: 1000 },
      );
      // No reload: the page's event stream brings the alert in.
      const alert = page.locator('#alert-list article').first();
      await alert.waitFor({ timeout: 15_000 });
      assert.match((await alert.textContent()) ?? '', /message flood: \d+ messages in 1 s, expected/);
      await shot('07-alerts');
      await alert.getByRole('button', { name: /^Acknowledge alert/ }).click();
      assert.match(await flash(), /acknowledged/);
      // The charts' buckets are written every few windows.
      const charted = Date.now() + 15_000;
      do {
        await page.goto(`${base}/devices/boiler-7`);
      } while ((await page.locator('svg.chart').count()) < 2 && Date.now() < charted);
      assert.equal(await page.locator('svg.chart').count(), 2, 'traffic and score charts');
    } finally {
      sensor.close();
    }
  });

  it('renders every page, usable at tablet width, with a skip link first in the keyboard order', async () => {
    await page.setViewportSize({ width: 768, height: 1024 });
    for (const [name, path] of [
      ['08-dashboard', '/'],
      ['09-devices', '/devices'],
      ['10-device', '/devices/boiler-7'],
      ['11-segments', '/segments'],
      ['12-audit', '/audit?verify=1'],
      ['13-compliance', '/compliance'],
      ['14-users', '/users'],
    ] as const) {
      await page.goto(`${base}${path}`);
      const overflow = await page.evaluate(() => {
        const root = (globalThis as unknown as BrowserGlobals).document.documentElement;
        return root.scrollWidth - root.clientWidth;
      });
      assert.ok(overflow <= 0, `${path} scrolls sideways by ${overflow}px at tablet width`);
      // Every control has a label a screen reader announces, and label targets are unambiguous.
      const problems = await page.evaluate(() => {
        const doc = (globalThis as unknown as BrowserGlobals).document;
        const ids = Array.from(doc.querySelectorAll('[id]'), (e) => e.id);
        const dupes = ids.filter((id, i) => ids.indexOf(id) !== i).map((id) => `duplicate id ${id}`);
        const unlabelled = Array.from(doc.querySelectorAll('input:not([type=hidden]), select, textarea'))
          .filter((e) => (e.labels?.length ?? 0) === 0 && !e.getAttribute('aria-label'))
          .map((e) => `unlabelled ${e.getAttribute('name')}`);
        return [...dupes, ...unlabelled];
      });
      assert.deepEqual(problems, [], path);
      await shot(name);
    }
    await page.goto(`${base}/audit?verify=1`);
    assert.match(await flash(), /Chain intact/);
    await page.keyboard.press('Tab');
    assert.equal(
      await page.evaluate(() =>
        (globalThis as unknown as BrowserGlobals).document.activeElement?.textContent?.trim(),
      ),
      'Skip to content',
    );
  });

  it('adds an auditor (re-authenticated) who sees the pages but can change nothing, even with a forged form', async () => {
    await page.setViewportSize({ width: 1280, height: 900 });
    await page.goto(`${base}/users`);
    const code = await nextCode();
    await page.getByLabel('User name').fill('audrey');
    await page.getByLabel('Role').selectOption('auditor');
    await page.getByLabel(/Initial password/).fill(PASSWORD);
    await page.getByLabel('Your password').fill(PASSWORD);
    await page.getByLabel('Authenticator code').fill(code);
    await page.getByRole('button', { name: 'Add user' }).click();
    await shot('15-user-added');
    assert.match(await flash(), /User audrey \(auditor\) added/);

    const auditor = await (await browser.newContext({ ignoreHTTPSErrors: true })).newPage();
    await auditor.goto(`${base}/login`);
    await auditor.getByLabel('User name').fill('audrey');
    await auditor.getByLabel('Password').fill(PASSWORD);
    await auditor.getByRole('button', { name: 'Continue' }).click();
    const key = ((await auditor.locator('.secret').textContent()) ?? '').trim();
    await auditor.getByLabel(/6-digit code/).fill(generateSync({ secret: key }));
    await auditor.getByRole('button', { name: 'Confirm' }).click();
    for (const path of ['/', '/devices/boiler-7', '/onboarding', '/alerts?all=1', '/segments']) {
      await auditor.goto(`${base}${path}`);
      // The only form an auditor is offered is logging out.
      assert.deepEqual(
        await auditor.locator('main form[method="post"]').count(),
        0,
        `${path} offers an auditor a form`,
      );
    }
    assert.equal(await auditor.getByRole('link', { name: 'Users' }).count(), 0);
    // Forged: the auditor's own session and CSRF token, a hand-made POST. The server refuses it all the same.
    const csrf = await auditor.locator('input[name="_csrf"]').first().getAttribute('value');
    const status = await auditor.evaluate(async (token) => {
      const r = await fetch('/devices/boiler-7/quarantine', {
        method: 'POST',
        body: new URLSearchParams({ _csrf: token ?? '', reason: 'forged' }),
        redirect: 'manual',
      });
      return r.status;
    }, csrf);
    assert.equal(status, 403);
    assert.equal(
      JSON.parse(await e2e.home.cli(['device', 'show', 'boiler-7', '--json'])).device.state,
      'active',
    );
  });
});
