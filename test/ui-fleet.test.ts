/**
 * The fleet page in a real browser (Debian's chromium through playwright-core) against a real gateway process on
 * mosquitto with mutual TLS, after the operator's real `portcullis fleet` command published one document that
 * applied and one that was refused: the pinned key, what the applied document changed, the refusal and its
 * reason, and the presence/state publication — at 1280 and 390 px, with axe-core reporting no serious or
 * critical violation and no sideways scroll on the phone. An auditor sees it too, with no form on it.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { generateSync } from 'otplib';
import { type Browser, chromium, type Page } from 'playwright-core';
import { runCli } from './helpers/cli.ts';
import { type GatewayHome, makeGatewayHome, type RunningGateway } from './helpers/gateway.ts';
import { type Broker, startBroker } from './helpers/mosquitto.ts';
import { makePki, type TestPki } from './helpers/pki.ts';
import { site } from './helpers/ui.ts';

const SHOTS = join(import.meta.dirname, '..', 'test-artifacts', 'screenshots');
const AXE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
const PASSWORD = 'a technician passphrase';

describe('fleet page in chromium, at 1280 and 390 px', () => {
  let pki: TestPki;
  let broker: Broker;
  let dir: string;
  let home: GatewayHome;
  let gw: RunningGateway;
  let browser: Browser;
  let page: Page;
  let base: string;
  let keyId = '';

  const fleet = (...args: string[]) => runCli(['fleet', ...args], { cwd: dir });
  const brokerArgs = () => [
    ...['--broker', broker.url, '--ca', pki.caPath],
    ...['--cert', pki.client.certPath, '--key', pki.client.keyPath],
  ];
  async function signAndPublish(name: string, yaml: string, version: number, key = 'keys/operator.key') {
    writeFileSync(join(dir, `${name}.yaml`), yaml);
    const out = join(dir, `${name}.signed`);
    const s = await fleet(
      ...['sign', `${name}.yaml`, '--key', key, '--doc-version', String(version), '--expires', '1h'],
      ...['--out', out],
    );
    assert.equal(s.code, 0, s.stderr);
    const p = await fleet('publish', ...brokerArgs(), '--gateway', 'ui-fl', out);
    assert.equal(p.code, 0, p.stderr);
  }

  const axe = async (where: string) => {
    await page.evaluate(`${AXE};0`);
    const r = (await page.evaluate(
      '(async () => { const r = await axe.run(document, { resultTypes: ["violations"] }); return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help })); })()',
    )) as Array<{ id: string; impact: string | null; help: string }>;
    const bad = r.filter((v) => v.impact === 'serious' || v.impact === 'critical');
    assert.deepEqual(
      bad.map((v) => `${v.id} (${v.impact}): ${v.help}`),
      [],
      where,
    );
  };

  before(async () => {
    mkdirSync(SHOTS, { recursive: true });
    pki = makePki();
    broker = await startBroker({ caPath: pki.caPath, server: pki.broker });
    dir = mkdtempSync(join(tmpdir(), 'portcullis-uifleet-'));
    assert.equal((await fleet('keygen', 'keys')).code, 0);
    assert.equal((await fleet('keygen', 'other')).code, 0);
    home = await makeGatewayHome(pki, broker, 'gw-ui-fleet', {
      topicPrefix: 'ui-fl',
      extraConfig: [
        'fleet:',
        `  operatorKeyFile: ${join(dir, 'keys', 'operator.pub')}`,
        '  groups: [cold]',
        '  stateDebounceSeconds: 0.2',
      ],
    });
    await home.cli(['device', 'add', 'old-1', '--psk-identity', 'old-1', '--generate-psk']);
    gw = await home.start();
    base = (JSON.parse(gw.log.find((l) => l.includes('"gateway started"')) as string) as { ui: string }).ui;
    await signAndPublish(
      'good',
      'target: {gateway: ui-fl}\nspec:\n  labels: {profile: cold-chain-v2}\n  profiles:\n    freezer: {maxPayloadBytes: 256}\n  devices:\n    quarantine: [{id: old-1, reason: replaced}]\n',
      1,
    );
    await signAndPublish('wrong', 'target: {gateway: ui-fl}\nspec: {}\n', 2, 'other/operator.key');
    // Both answered: the refusal is the last thing the gateway does with them.
    const deadline = Date.now() + 20_000;
    for (;;) {
      const shown = JSON.parse(await home.cli(['fleet', 'show', '--json'])) as { applied: unknown[] };
      const refused = gw.log.some((l) => l.includes('fleet document refused'));
      if (shown.applied.length === 1 && refused) break;
      if (Date.now() > deadline) throw new Error('the documents were not answered');
      await new Promise((r) => setTimeout(r, 100));
    }
    keyId = readFileSync(join(dir, 'good.signed'), 'utf8').match(/"keyId":"([0-9a-f]{16})"/)?.[1] as string;
    browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
    const context = await browser.newContext({
      ignoreHTTPSErrors: true,
      viewport: { width: 1280, height: 900 },
    });
    page = await context.newPage();
    // First boot: the administrator, then the second factor, as a technician does it.
    const code = /setup code (\S+)/.exec(gw.stderr())?.[1] as string;
    await page.goto(`${base}/setup`);
    await page.getByLabel('Setup code').fill(code);
    await page.getByLabel(/Administrator name/).fill('alice');
    await page.getByLabel(/^Password/).fill(PASSWORD);
    await page.getByRole('button', { name: 'Create administrator' }).click();
    await page.waitForURL(/\/login$/);
    await page.getByLabel('User name').fill('alice');
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Continue' }).click();
    await page.waitForURL(/\/login\/enroll$/);
    const secret = ((await page.locator('.secret').textContent()) ?? '').trim();
    await page.getByLabel(/6-digit code/).fill(generateSync({ secret }));
    await page.getByRole('button', { name: 'Confirm' }).click();
    await page.getByRole('link', { name: 'Continue to the dashboard' }).click();
  });

  after(async () => {
    await browser?.close();
    await gw?.stop();
    await broker?.dispose();
    home?.dispose();
    pki?.dispose();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('shows the pinned key, the applied document and what it changed, the refusal and why, and the publications (1280 px)', async () => {
    await page.getByRole('link', { name: 'Fleet' }).click();
    await page.waitForURL(/\/fleet$/);
    const text = (await page.locator('main').textContent()) ?? '';
    assert.match(text, new RegExp(`Pinned\\s*${keyId}`));
    const applied = page.getByRole('region', { name: 'Applied in gateway' });
    const facts = (await applied.textContent()) ?? '';
    assert.match(facts, new RegExp(`gateway: version 1\\s*Signed by\\s*${keyId}`));
    const changes = await applied.locator('li').allTextContents();
    assert.deepEqual(changes, [
      'quarantined: old-1',
      'profiles defined: freezer',
      'labels: profile=cold-chain-v2',
    ]);
    const refused = page
      .getByRole('list', { name: /Refused documents/ })
      .locator('li')
      .first();
    assert.match(
      (await refused.textContent()) ?? '',
      /refused ERR_FLEET_UNKNOWN_KEY .*, gateway, claimed key [0-9a-f]{16}: document is signed by key .* not by the pinned operator key/,
    );
    assert.match(text, /Broker\s*connected/);
    assert.match(text, /Presence\s*online published/);
    assert.match(text, /Reported state\s*published .*\(\d+ bytes\)/);
    assert.match(text, /ui-fl\/gateway\/desired/);
    assert.match(text, /freezer\s*\(maxPayloadBytes\)/);
    await axe('fleet page at 1280 px');
    await page.screenshot({ path: join(SHOTS, 'console-fleet.png'), fullPage: true });
  });

  it('fits a phone (390 px): no sideways scroll, a compact header, axe clean', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    await page.reload();
    const r = (await page.evaluate(`(() => {
      const cut = [];
      for (const t of document.querySelectorAll('table')) {
        let box = t;
        for (let e = t.parentElement; e; e = e.parentElement) {
          if (getComputedStyle(e).overflowX === 'auto') { box = e; break; }
        }
        if (box.getBoundingClientRect().right > innerWidth + 1) cut.push(t.querySelector('th')?.textContent ?? 'table');
      }
      const header = document.querySelector('header.top').getBoundingClientRect().height;
      return { overflow: document.documentElement.scrollWidth - document.documentElement.clientWidth, cut, header };
    })()`)) as { overflow: number; cut: string[]; header: number };
    assert.ok(r.overflow <= 0, `scrolls sideways by ${r.overflow}px`);
    assert.deepEqual(r.cut, []);
    assert.ok(r.header <= 120, `the header is ${r.header}px tall on a phone`);
    await axe('fleet page at 390 px');
    await page.screenshot({ path: join(SHOTS, 'console-fleet-phone.png'), fullPage: true });
  });

  it('is read-only: an auditor sees it with no form but logging out', async (t) => {
    const { login } = site(t);
    const { b } = await login('aud', 'auditor');
    const res = await b.page('GET', '/fleet');
    assert.equal(res.status, 200);
    assert.match(res.text, /No uplink is configured/);
    assert.deepEqual(res.text.match(/<form method="post"[^>]*>/g), [
      '<form method="post" action="/logout" class="inline">',
    ]);
  });
});
