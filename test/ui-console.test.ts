/**
 * The technician console in a real browser (Debian's chromium through playwright-core) against a real gateway
 * process, at 1280 px and at a phone's 390 px (issue 25): forms that keep what was typed and list every
 * problem, a TOTP key that survives a reload and a wrong code, the device page's live "last seen" and charts,
 * quarantine and firewall texts, the health page updating itself, accounts (reset with forced change, session
 * revoke, disable), flow tokens shown once — and on every page axe-core (injected through the DevTools
 * protocol, so the page's CSP stays as it is) reporting no serious or critical violation, no sideways scroll,
 * a compact header on the phone, and every control reachable with the Tab key. Screenshots of the new pages go
 * to test-artifacts/screenshots/console-*.png (docs/screenshots/ holds the ones the docs show).
 */
import assert from 'node:assert/strict';
import { appendFileSync, mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';
import { postMany } from './helpers/coap-sender.ts';
import { TestDtlsClient } from './helpers/dtls-test-client.ts';
import { type E2e, startE2e, stopE2e } from './helpers/e2e.ts';
import { tabReachesEveryControl } from './helpers/keyboard.ts';
import { nextCode } from './helpers/totp.ts';

const SHOTS = join(import.meta.dirname, '..', 'test-artifacts', 'screenshots');
const DOC_SHOTS = process.env.PORTCULLIS_DOC_SHOTS
  ? join(import.meta.dirname, '..', 'docs', 'screenshots')
  : '';
const PASSWORD = 'a technician passphrase';
const AXE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
const PHONE = { width: 390, height: 844 };
const DESKTOP = { width: 1280, height: 900 };

interface AxeResult {
  violations: { id: string; impact: string | null; help: string; nodes: { target: string[] }[] }[];
}

describe('technician console in chromium, at 1280 and 390 px', () => {
  let e2e: E2e;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let base: string;
  let secret = '';
  const consoleErrors: string[] = [];
  /**
   * Login, setup and code forms share a budget of 10 a minute per client address (every browser here is
   * 127.0.0.1): a later burst of logins waits for the first minute's window to close rather than be refused.
   */
  let firstLoginForm = 0;
  const loginBudget = () =>
    new Promise((r) => setTimeout(r, Math.max(0, firstLoginForm + 61_000 - Date.now())));

  const shot = async (name: string, p: Page = page) => {
    await p.screenshot({ path: join(SHOTS, `console-${name}.png`), fullPage: true });
    if (DOC_SHOTS) await p.screenshot({ path: join(DOC_SHOTS, `${name}.png`), fullPage: false });
  };
  const flash = async (p: Page = page) => (await p.locator('.flash').first().textContent())?.trim() ?? '';
  const login = async (p: Page, user: string, password: string, key: string) => {
    await p.goto(`${base}/login`);
    await p.getByLabel('User name').fill(user);
    await p.getByLabel('Password').fill(password);
    await p.getByRole('button', { name: 'Continue' }).click();
    // A code can miss when the step turns between generating and checking it on a loaded machine: one more.
    for (let attempt = 0; attempt < 2; attempt++) {
      await p.getByLabel(/authenticator app/).fill(await nextCode(key));
      await p.getByRole('button', { name: 'Log in' }).click();
      await p.waitForLoadState();
      if (!/\/login\/totp$/.test(p.url())) return;
    }
    assert.fail(`${user} could not pass the second factor: ${await flash(p)}`);
  };

  /** axe-core on the page as it is: no serious or critical violation. */
  const axe = async (p: Page, where: string) => {
    await p.evaluate(`${AXE};0`);
    const r = (await p.evaluate(
      '(async () => { const r = await axe.run(document, { resultTypes: ["violations"] }); return { violations: r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 3).map((n) => ({ target: n.target })) })) }; })()',
    )) as AxeResult;
    const bad = r.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
    assert.deepEqual(
      bad.map((v) => `${v.id} (${v.impact}): ${v.help} at ${JSON.stringify(v.nodes.map((n) => n.target))}`),
      [],
      where,
    );
  };

  /** The phone layout: no sideways scroll, a compact header, tables inside the screen (or scrolling boxes). */
  const phoneLayout = async (p: Page, where: string) => {
    const r = (await p.evaluate(`(() => {
      const root = document.documentElement;
      const header = document.querySelector('header.top');
      const cut = [];
      for (const t of document.querySelectorAll('table')) {
        let box = t;
        for (let e = t.parentElement; e; e = e.parentElement) {
          if (getComputedStyle(e).overflowX === 'auto') { box = e; break; }
        }
        if (box.getBoundingClientRect().right > innerWidth + 1) cut.push(t.querySelector('th')?.textContent ?? 'table');
      }
      return { overflow: root.scrollWidth - root.clientWidth, header: header ? header.getBoundingClientRect().height : 0, cut };
    })()`)) as { overflow: number; header: number; cut: string[] };
    assert.ok(r.overflow <= 0, `${where} scrolls sideways by ${r.overflow}px`);
    assert.ok(r.header <= 120, `${where}: the header is ${r.header}px tall on a phone`);
    assert.deepEqual(r.cut, [], `${where}: tables cut off`);
  };

  before(async () => {
    mkdirSync(SHOTS, { recursive: true });
    e2e = await startE2e('gw-console', async (home) => {
      // One-second behaviour windows: the device page's buckets are written within seconds.
      appendFileSync(home.config, 'anomaly: {learningHours: 0.003, windowSeconds: 1}\n');
    });
    const line = e2e.gw.log.find((l) => l.includes('"gateway started"')) as string;
    base = (JSON.parse(line) as { ui: string }).ui;
    browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
    context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: PHONE });
    page = await context.newPage();
    page.on('dialog', (d) => void d.accept());
    page.on('console', (m) => {
      if (m.type() === 'error') consoleErrors.push(m.text());
    });
  });

  after(async () => {
    await browser?.close();
    await stopE2e(e2e ?? {});
  });

  it('first boot on a phone: setup keeps the name and code after errors and lists every problem', async () => {
    firstLoginForm = Date.now();
    const code = /setup code (\S+)/.exec(e2e.gw.stderr())?.[1] as string;
    await page.goto(`${base}/setup`);
    // The browser's own checks would stop these; the server must report them all the same.
    await page.evaluate('document.querySelector("form[action=\'/setup\']").noValidate = true');
    await page.getByLabel('Setup code').fill('WRONG-CODE');
    await page.getByLabel(/Administrator name/).fill('Alice!');
    await page.getByLabel(/^Password/).fill('short');
    await page.getByRole('button', { name: 'Create administrator' }).click();
    const problems = page.getByRole('list', { name: 'Problems with the form' }).locator('li');
    assert.equal(await problems.count(), 2, 'the name and the password, both reported');
    assert.equal(await page.getByLabel('Setup code').inputValue(), 'WRONG-CODE');
    assert.equal(await page.getByLabel(/Administrator name/).inputValue(), 'Alice!');
    assert.equal(await page.getByLabel(/^Password/).inputValue(), '', 'a password is never sent back');
    await shot('setup-errors');
    await page.getByLabel(/Administrator name/).fill('alice');
    await page.getByLabel(/^Password/).fill(PASSWORD);
    await page.getByRole('button', { name: 'Create administrator' }).click();
    assert.match(await flash(), /code/i);
    assert.equal(await page.getByLabel(/Administrator name/).inputValue(), 'alice');
    await page.getByLabel('Setup code').fill(code);
    await page.getByLabel(/^Password/).fill(PASSWORD);
    await page.getByRole('button', { name: 'Create administrator' }).click();
    await page.waitForURL(/\/login$/);
  });

  it('keeps the user name after a wrong password, and the TOTP key across a reload and a wrong code', async () => {
    await page.getByLabel('User name').fill('alice');
    await page.getByLabel('Password').fill('not the password at all');
    await page.getByRole('button', { name: 'Continue' }).click();
    assert.match(await flash(), /wrong username or password/);
    assert.equal(await page.getByLabel('User name').inputValue(), 'alice');
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Continue' }).click();
    await page.waitForURL(/\/login\/enroll$/);
    secret = ((await page.locator('.secret').textContent()) ?? '').trim();
    await page.reload();
    assert.equal(
      ((await page.locator('.secret').textContent()) ?? '').trim(),
      secret,
      'same key after a reload',
    );
    await page.getByLabel(/6-digit code/).fill('000000');
    await page.getByRole('button', { name: 'Confirm' }).click();
    assert.match(await flash(), /key is unchanged/);
    assert.equal(
      ((await page.locator('.secret').textContent()) ?? '').trim(),
      secret,
      'same key after a wrong code',
    );
    await axe(page, 'enrolment');
    await shot('enrol-wrong-code');
    await page.getByLabel(/6-digit code/).fill(await nextCode(secret));
    await page.getByRole('button', { name: 'Confirm' }).click();
    assert.equal(await page.getByRole('list', { name: 'Recovery codes' }).locator('li').count(), 10);
    await page.getByRole('link', { name: 'Continue to the dashboard' }).click();
  });

  let psk = '';
  it('the PSK wizard on a phone: every problem at once, fields kept, the server’s id rule, the key on one line', async () => {
    await page.goto(`${base}/onboarding`);
    const idPattern = await page.getByLabel('Device id').getAttribute('pattern');
    // Browsers compile `pattern` with the v flag: it must compile there (else it is dropped, with a console
    // error) and say what the server says.
    const verdicts = await page.evaluate(
      `(() => { const re = new RegExp('^(?:' + ${JSON.stringify(idPattern)} + ')$', 'v');
        return ['boiler-7', 'a.b_c-9', '-lead', 'has space', 'x'.repeat(65)].map((s) => re.test(s)); })()`,
    );
    assert.deepEqual(verdicts, [true, true, false, false, false]);
    await page.evaluate('document.querySelector("form[action=\'/onboarding/psk\']").noValidate = true');
    await page.getByLabel('Device id').fill('-bad id');
    await page.getByLabel(/^Name/).fill('Boiler room');
    await page.getByLabel(/^Key \(hex/).fill('abcd');
    await page.getByRole('button', { name: 'Create device' }).click();
    const problems = page.getByRole('list', { name: 'Problems with the form' }).locator('li');
    assert.equal(await problems.count(), 3, (await problems.allTextContents()).join(' | '));
    assert.equal(await page.getByLabel('Device id').inputValue(), '-bad id');
    assert.equal(await page.getByLabel(/^Name/).inputValue(), 'Boiler room');
    assert.equal(await page.getByLabel(/^Key \(hex/).inputValue(), '', 'a typed key is never sent back');
    await shot('psk-wizard-errors');
    await page.getByLabel('Device id').fill('boiler-7');
    await page.getByLabel(/PSK identity/).fill('boiler-7');
    await page.getByRole('button', { name: 'Create device' }).click();
    const key = page.locator('#psk-value');
    psk = ((await key.textContent()) ?? '').trim();
    assert.match(psk, /^[0-9a-f]{32}$/);
    const lines = (await page.evaluate(
      '(() => { const r = document.createRange(); r.selectNodeContents(document.querySelector("#psk-value")); return new Set([...r.getClientRects()].map((x) => Math.round(x.top))).size; })()',
    )) as number;
    assert.equal(lines, 1, 'the key never wraps mid-string');
    await shot('psk-created-phone');
    assert.deepEqual(
      consoleErrors.filter((e) => /pattern/i.test(e)),
      [],
    );
  });

  it('the device page: last seen and charts update live, the axis starts at the data, labels readable on a phone', async () => {
    await page.goto(`${base}/devices/boiler-7`);
    assert.match((await page.locator('#last-seen').textContent()) ?? '', /—/);
    assert.equal(await page.locator('svg.chart').count(), 0);
    const sensor = new TestDtlsClient({
      port: e2e.home.dtlsPort,
      suite: 'TLS_PSK_WITH_AES_128_CCM_8',
      psk: { identity: 'boiler-7', key: Buffer.from(psk, 'hex') },
      timeoutMs: 5000,
    });
    await sensor.connect();
    try {
      // No reload from here on: the event stream and the page's own refresh bring the changes in.
      let id = 1;
      const until = Date.now() + 40_000;
      while (Date.now() < until && (await page.locator('svg.chart').count()) < 2) {
        await postMany(sensor, [`{"t":${id}}`], { firstMessageId: id++ });
        await new Promise((r) => setTimeout(r, 500));
      }
    } finally {
      sensor.close();
    }
    assert.match((await page.locator('#last-seen').textContent()) ?? '', /UTC \(\d+ s ago\)/);
    assert.equal(await page.locator('svg.chart').count(), 2, 'both charts, without a reload');
    // The x axis starts at the first data (an hour at least), not 24 hours back: the bars are not a sliver.
    const x = await page.locator('.chart-x').first().locator('span').allTextContents();
    const minutes = (s: string) => Number(s.slice(0, 2)) * 60 + Number(s.slice(3, 5));
    const span = (minutes(x.at(-1) as string) - minutes(x[0] as string) + 1440) % 1440;
    assert.ok(span <= 120, `the axis spans ${span} min for a device seen for a minute`);
    const fontPx = Number.parseFloat(
      (await page.evaluate('getComputedStyle(document.querySelector(".chart-x span")).fontSize')) as string,
    );
    assert.ok(fontPx >= 11, `chart labels are ${fontPx}px on a phone`);
    await page.locator('#device-charts').scrollIntoViewIfNeeded();
    await shot('device-live-phone');
  });

  it('quarantine says the firewall is off and that observe refuses readings; a decommissioned device has no actions', async () => {
    await page.goto(`${base}/devices/boiler-7`);
    assert.match((await page.locator('#q-note').textContent()) ?? '', /firewall is off/);
    await page.getByLabel('Reason for quarantine').fill('odd readings');
    await page.getByLabel('Mode').selectOption('observe');
    await page.getByRole('button', { name: 'Quarantine' }).click();
    const text = await flash();
    assert.match(text, /readings are refused/);
    assert.match(text, /firewall is off/);
    await page.getByRole('button', { name: 'Release' }).click();
    await e2e.home.cli(['device', 'add', 'old-1', '--psk-identity', 'old-1', '--generate-psk']);
    await page.setViewportSize(DESKTOP);
    await page.goto(`${base}/devices/old-1`);
    await page.locator('summary', { hasText: 'Decommission' }).click();
    await page.getByLabel('Your password').fill(PASSWORD);
    await page.getByLabel('Authenticator code').fill(await nextCode(secret));
    await page.getByRole('button', { name: 'Decommission', exact: true }).click();
    assert.match(await flash(), /decommissioned/);
    assert.equal(await page.getByRole('heading', { name: 'Actions' }).count(), 0);
    // Human names, and times that say their zone.
    const events = (await page.locator('main table').last().textContent()) ?? '';
    assert.match(events, /device decommissioned/);
    assert.doesNotMatch(events, /device\.decommission/);
    assert.match(events, /UTC/);
  });

  it('segments: nothing to apply while enforcement is off, and a forged apply is refused; small fixes hold', async () => {
    await page.goto(`${base}/segments`);
    assert.match((await page.locator('#apply-off').textContent()) ?? '', /Enforcement is off/);
    assert.equal(await page.getByRole('button', { name: /^Apply ruleset/ }).count(), 0);
    assert.match((await page.locator('#segments-empty').textContent()) ?? '', /No segments are configured/);
    const csrf = await page.locator('input[name="_csrf"]').first().getAttribute('value');
    const status = await page.evaluate(async (token) => {
      const r = await fetch('/segments/apply', {
        method: 'POST',
        body: new URLSearchParams({ _csrf: token ?? '', hash: 'x', password: 'x', code: '0' }),
        redirect: 'manual',
      });
      return r.status;
    }, csrf);
    assert.equal(status, 0, 'answered with a redirect back (opaque to fetch), not applied');
    await page.goto(`${base}/segments`);
    assert.match(await flash(), /firewall.enforce is off/);
    const fav = await page.request.get(`${base}/favicon.ico`);
    assert.equal(fav.status(), 200);
    assert.match(fav.headers()['content-type'] ?? '', /image\/svg/);
    await page.goto(`${base}/compliance`);
    assert.doesNotMatch((await page.locator('main').textContent()) ?? '', /\bn\/a\b/);
    const [report] = await Promise.all([
      context.waitForEvent('page'),
      page.getByRole('link', { name: /Printable report/ }).click(),
    ]);
    await report.waitForLoadState();
    assert.match(await report.title(), /compliance/i, 'opens as a page, not a download');
    await report.close();
  });

  it('diagnostics: the uplink TLS test against the real broker, a DNS lookup, a reach test', async () => {
    await page.setViewportSize(DESKTOP);
    await page.goto(`${base}/diagnostics`);
    await page.getByRole('button', { name: 'Test the uplink' }).click();
    const up = (await page.locator('#uplink-result').textContent()) ?? '';
    assert.match(up, /trusted by uplink.caFile/);
    assert.match(up, /TLSv1\.3/);
    assert.match(up, /inside the broker certificate/);
    await page.getByLabel('Host name').fill('localhost');
    await page.getByRole('button', { name: 'Look up' }).click();
    assert.match((await page.locator('#dns-result').textContent()) ?? '', /localhost → /);
    const broker = new URL(e2e.broker.url);
    await page.getByLabel('Host or address').fill(broker.hostname);
    await page.getByLabel('TCP port').fill(broker.port);
    await page.getByRole('button', { name: 'Connect' }).click();
    assert.match((await page.locator('#reach-result').textContent()) ?? '', /reached/);
    await shot('diagnostics');
  });

  it('the health page updates itself, at both widths', async () => {
    await page.setViewportSize(DESKTOP);
    await page.goto(`${base}/health`);
    // No reload: the page refreshes itself (every 5 s) and the CPU share needs two readings.
    const refreshed = async () =>
      (await page.evaluate(
        'document.querySelector("#live-status").textContent.startsWith("Updated") && document.querySelector("#health-cpu").textContent.includes("%")',
      )) as boolean;
    const until = Date.now() + 15_000;
    while (!(await refreshed()) && Date.now() < until) await new Promise((r) => setTimeout(r, 250));
    assert.ok(await refreshed(), 'the health page refreshed itself with a CPU figure');
    for (const part of [
      'Memory',
      'Disk',
      'Temperature',
      'Uptime',
      'Cloud uplink',
      'Network interfaces',
      'Certificates',
    ]) {
      assert.equal(await page.getByRole('heading', { name: part }).count(), 1, part);
    }
    assert.match((await page.locator('main').textContent()) ?? '', /Web UI \(HTTPS\)/);
    await shot('health');
    await page.setViewportSize(PHONE);
    await shot('health-phone');
  });

  it('accounts: an admin resets a password (forced change), ends a session and disables the account', async () => {
    await page.setViewportSize(DESKTOP);
    await page.goto(`${base}/users`);
    await page.getByLabel('User name').fill('tom');
    await page.getByLabel('Role').selectOption('technician');
    await page.getByLabel(/Initial password/).fill(PASSWORD);
    await page.locator('#u-password').fill(PASSWORD);
    await page.locator('#u-code').fill(await nextCode(secret));
    await page.getByRole('button', { name: 'Add user' }).click();
    assert.match(await flash(), /User tom \(technician\) added/);

    await loginBudget();
    const tomCtx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: PHONE });
    const tom = await tomCtx.newPage();
    tom.on('dialog', (d) => void d.accept());
    await tom.goto(`${base}/login`);
    await tom.getByLabel('User name').fill('tom');
    await tom.getByLabel('Password').fill(PASSWORD);
    await tom.getByRole('button', { name: 'Continue' }).click();
    const tomKey = ((await tom.locator('.secret').textContent()) ?? '').trim();
    await tom.getByLabel(/6-digit code/).fill(await nextCode(tomKey));
    await tom.getByRole('button', { name: 'Confirm' }).click();
    await tom.goto(`${base}/account`);
    await shot('account-phone', tom);

    // The admin sets a new password for tom: tom's session ends, and the next login must change it.
    await page.goto(`${base}/users`);
    const card = page.locator('#user-tom');
    await card.locator('summary').click();
    await card.getByLabel(/Set a new password/).check();
    await card.getByLabel(/New password/).fill('a temporary passphrase');
    await card.getByLabel('Your password').fill(PASSWORD);
    await card.getByLabel('Authenticator code').fill(await nextCode(secret));
    await card.getByRole('button', { name: 'Apply to tom' }).click();
    assert.match(await flash(), /must change it at their next login/);
    await tom.goto(`${base}/devices`);
    assert.match(tom.url(), /\/login$/);
    await login(tom, 'tom', 'a temporary passphrase', tomKey);
    await tom.waitForURL(/\/account$/);
    assert.equal(await tom.getByRole('heading', { name: 'Choose a new password' }).count(), 1);
    await axe(tom, 'forced password change');
    await tom.getByLabel('The password you were given').fill('a temporary passphrase');
    await tom.getByLabel(/^New password \(at least/).fill('tom chose this one');
    await tom.getByLabel('New password again').fill('tom chose this one');
    await tom.getByRole('button', { name: 'Change password' }).click();
    assert.match(await flash(tom), /Password changed/);
    await tom.goto(`${base}/devices`);
    assert.match(tom.url(), /\/devices$/);

    // The admin ends tom's session from the users page, then disables the account.
    await page.goto(`${base}/users`);
    await shot('users');
    await page
      .getByRole('button', { name: /^End session / })
      .first()
      .click();
    assert.match(await flash(), /session of tom was ended/);
    await tom.goto(`${base}/devices`);
    assert.match(tom.url(), /\/login$/);
    await page.locator('#user-tom summary').click();
    await page
      .locator('#user-tom')
      .getByLabel(/Disable the account/)
      .check();
    await page.locator('#user-tom').getByLabel('Your password').fill(PASSWORD);
    await page
      .locator('#user-tom')
      .getByLabel('Authenticator code')
      .fill(await nextCode(secret));
    await page.getByRole('button', { name: 'Apply to tom' }).click();
    assert.match(await flash(), /tom disabled/);
    await tom.goto(`${base}/login`);
    await tom.getByLabel('User name').fill('tom');
    await tom.getByLabel('Password').fill('tom chose this one');
    await tom.getByRole('button', { name: 'Continue' }).click();
    assert.match(await flash(tom), /wrong username or password/);
    // Nobody manages their own account here: alice is not offered.
    assert.equal(await page.locator('#user-alice').count(), 0);
    await tomCtx.close();
  });

  it('flow tokens: made with scopes after re-authentication, shown once, revoked', async () => {
    await page.goto(`${base}/tokens`);
    await page.getByLabel(/^Name/).fill('alerts-flow');
    await page.getByLabel(/events:read/).check();
    await page.getByLabel('Your password').fill(PASSWORD);
    await page.getByLabel('Authenticator code').fill(await nextCode(secret));
    await page.getByRole('button', { name: 'Create token' }).click();
    const token = ((await page.locator('#token-value').textContent()) ?? '').trim();
    assert.ok(token.length >= 32);
    await shot('token-created');
    await page.goto(`${base}/tokens`);
    assert.ok(!(await page.content()).includes(token), 'shown once');
    await shot('tokens');
    await page.getByRole('button', { name: 'Revoke alerts-flow' }).click();
    assert.match(await flash(), /revoked/);
    const audit = await e2e.home.cli(['audit', 'export', '--format', 'jsonl']);
    assert.match(audit, /"actor":"ui:alice","action":"control.token.create"/);
    assert.ok(!audit.includes(token));
  });

  it('every page, at 1280 and 390 px: no serious or critical axe violation, every control reachable by Tab', async () => {
    const paths = [
      '/',
      '/devices',
      '/devices/boiler-7',
      '/onboarding',
      '/alerts?all=1',
      '/segments',
      '/audit',
      '/compliance',
      '/health',
      '/logs',
      '/diagnostics',
      '/maintenance',
      '/configuration',
      '/users',
      '/account',
      '/tokens',
    ];
    for (const viewport of [DESKTOP, PHONE]) {
      await page.setViewportSize(viewport);
      for (const path of paths) {
        await page.goto(`${base}${path}`);
        const where = `${path} at ${viewport.width}px`;
        await axe(page, where);
        if (viewport === PHONE) await phoneLayout(page, where);
        if (viewport === DESKTOP) await tabReachesEveryControl(page, where);
      }
    }
    await page.goto(`${base}/`);
    await shot('dashboard-phone');
    // The log page shows the running gateway's own lines, filtered by level.
    await page.setViewportSize(DESKTOP);
    await page.goto(`${base}/logs?level=info&q=started`);
    assert.match((await page.locator('main table').textContent()) ?? '', /gateway started/);
    await shot('logs');
    assert.deepEqual(
      consoleErrors.filter((e) => !/favicon/.test(e) && !/status of 4\d\d/.test(e)),
      [],
      'no console errors',
    );
  });
});
