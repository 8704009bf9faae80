/**
 * The console's diagnostics and configuration pages in a real browser (Debian's chromium through
 * playwright-core) against a real `portcullis start` process with mosquitto, at 1280 and 390 px (issue 25
 * items 11 and 12):
 * - real DTLS peers (openssl s_client) with a wrong key, an unknown identity and the right key: the device page
 *   and the diagnostics page say what happened and why; ping from the gateway, and `-f` / `;` refused;
 * - a configuration change through the page: an invalid one refused with the schema's words and the file
 *   unchanged; a new topic prefix applied (the gateway restarts itself and comes back healthy); a broker that
 *   does not answer rolled back to the previous file; the clock's zone and NTP servers written under a test
 *   root; axe-core on the pages, no sideways scroll on a phone. Screenshots go to test-artifacts/screenshots
 *   (and docs/screenshots with PORTCULLIS_DOC_SHOTS=1).
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type Browser, chromium, type Page } from 'playwright-core';
import { type E2e, startE2e, stopE2e } from './helpers/e2e.ts';
import { tabReachesEveryControl } from './helpers/keyboard.ts';
import { opensslDtlsArgs, runPeer } from './helpers/peers.ts';
import { nextCode } from './helpers/totp.ts';

const SHOTS = join(import.meta.dirname, '..', 'test-artifacts', 'screenshots');
const DOC_SHOTS = process.env.PORTCULLIS_DOC_SHOTS
  ? join(import.meta.dirname, '..', 'docs', 'screenshots')
  : '';
const PASSWORD = 'an administrator passphrase';
const AXE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
const PHONE = { width: 390, height: 844 };
const DESKTOP = { width: 1280, height: 900 };
const KEY = '00112233445566778899aabbccddeeff';
const WRONG_KEY = 'ffeeddccbbaa99887766554433221100';

async function freeTcpPort(): Promise<number> {
  const s = createServer().listen(0, '127.0.0.1');
  await new Promise((r) => s.once('listening', r));
  const { port } = s.address() as { port: number };
  await new Promise((r) => s.close(r));
  return port;
}

describe('console diagnostics and configuration in chromium, at 1280 and 390 px', () => {
  let e2e: E2e;
  let browser: Browser;
  let page: Page;
  let base = '';
  let secret = '';
  let hostRoot = '';

  const shot = async (name: string) => {
    await page.screenshot({ path: join(SHOTS, `console-${name}.png`), fullPage: true });
    if (DOC_SHOTS) await page.screenshot({ path: join(DOC_SHOTS, `${name}.png`), fullPage: false });
  };
  const flash = async () => (await page.locator('.flash').first().textContent())?.trim() ?? '';
  const axe = async (where: string) => {
    await page.evaluate(`${AXE};0`);
    const r = (await page.evaluate(
      '(async () => { const r = await axe.run(document, { resultTypes: ["violations"] }); return r.violations.filter((v) => v.impact === "serious" || v.impact === "critical").map((v) => v.id + ": " + v.help + " " + JSON.stringify(v.nodes.slice(0, 3).map((n) => n.target))); })()',
    )) as string[];
    assert.deepEqual(r, [], where);
  };
  const fitsPhone = async (where: string) => {
    const overflow = (await page.evaluate(
      'document.documentElement.scrollWidth - document.documentElement.clientWidth',
    )) as number;
    assert.ok(overflow <= 0, `${where} scrolls sideways by ${overflow}px`);
  };
  const reauth = async (prefix: string) => {
    await page.locator(`#${prefix}-password`).fill(PASSWORD);
    await page.locator(`#${prefix}-code`).fill(await nextCode(secret));
  };
  /** The page again once the gateway, restarting in its own process, serves it with a finished result. */
  const resultAfterRestart = async (): Promise<string> => {
    const until = Date.now() + 60_000;
    while (Date.now() < until) {
      await new Promise((r) => setTimeout(r, 1000));
      try {
        await page.goto(`${base}/configuration`);
        const t = (await page.locator('#apply-result').textContent({ timeout: 2000 })) ?? '';
        if (!/being applied/.test(t)) return t;
      } catch {
        // the UI is down while the gateway restarts
      }
    }
    assert.fail('no result within 60 s');
  };

  before(async () => {
    mkdirSync(SHOTS, { recursive: true });
    hostRoot = mkdtempSync(join(tmpdir(), 'portcullis-host-'));
    mkdirSync(join(hostRoot, 'etc', 'systemd', 'timesyncd.conf.d'), { recursive: true });
    mkdirSync(join(hostRoot, 'usr', 'share'), { recursive: true });
    symlinkSync('/usr/share/zoneinfo', join(hostRoot, 'usr', 'share', 'zoneinfo'));
    process.env.PORTCULLIS_HOST_ROOT = hostRoot;
    // A short bound for the tests' rollback (30 s by default).
    process.env.PORTCULLIS_APPLY_HEALTH_SECONDS = '6';
    const uiPort = await freeTcpPort();
    e2e = await startE2e('gw-admin', async (home) => {
      // A fixed port: the gateway restarts itself on a configuration change and must come back where it was.
      writeFileSync(
        home.config,
        readFileSync(home.config, 'utf8').replace('ui: {port: 0}', `ui: {port: ${uiPort}}`),
      );
      await home.cli(['device', 'add', 'boiler-7', '--psk-identity', 'boiler-7', '--psk', KEY]);
    });
    base = `https://127.0.0.1:${uiPort}`;
    browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
    const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: DESKTOP });
    page = await context.newPage();
    // First boot: the setup code from the console, an admin, a second factor.
    const code = /setup code (\S+)/.exec(e2e.gw.stderr())?.[1] as string;
    await page.goto(`${base}/setup`);
    await page.getByLabel('Setup code').fill(code);
    await page.getByLabel(/Administrator name/).fill('alice');
    await page.getByLabel(/^Password/).fill(PASSWORD);
    await page.getByRole('button', { name: 'Create administrator' }).click();
    await page.getByLabel('User name').fill('alice');
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Continue' }).click();
    secret = ((await page.locator('.secret').textContent()) ?? '').trim();
    await page.getByLabel(/6-digit code/).fill(await nextCode(secret));
    await page.getByRole('button', { name: 'Confirm' }).click();
    await page.getByRole('link', { name: 'Continue to the dashboard' }).click();
  });

  after(async () => {
    await browser?.close();
    await stopE2e(e2e ?? {});
    if (hostRoot) rmSync(hostRoot, { recursive: true, force: true });
    delete process.env.PORTCULLIS_HOST_ROOT;
    delete process.env.PORTCULLIS_APPLY_HEALTH_SECONDS;
  });

  it('shows a sensor’s last handshakes and why they failed, from real DTLS peers', async () => {
    const psk = (identity: string, hex: string) => ['-psk', hex, '-psk_identity', identity];
    const cipher = 'PSK-AES128-CCM8';
    const wrong = await runPeer(
      'openssl',
      opensslDtlsArgs(e2e.home.dtlsPort, cipher, ...psk('boiler-7', WRONG_KEY)),
      {
        timeoutMs: 8000,
      },
    );
    assert.notEqual(wrong.code, 0, 'a wrong key does not connect');
    await runPeer('openssl', opensslDtlsArgs(e2e.home.dtlsPort, cipher, ...psk('nobody-here', KEY)), {
      timeoutMs: 8000,
    });
    await runPeer('openssl', opensslDtlsArgs(e2e.home.dtlsPort, cipher, ...psk('boiler-7', KEY)), {
      timeoutMs: 8000,
    });
    await page.goto(`${base}/devices/boiler-7`);
    const table = page.getByRole('table', { name: /Latest DTLS handshakes of boiler-7/ });
    const text = (await table.textContent()) ?? '';
    assert.match(text, /connected/);
    assert.match(text, /TLS_PSK_WITH_AES_128_CCM_8/);
    assert.match(text, /wrong key/);
    assert.match(text, /ERR_DTLS_BAD_RECORD_MAC|ERR_DTLS_BAD_FINISHED/);
    assert.ok(!text.includes(KEY) && !text.includes(WRONG_KEY), 'never a key');
    await axe('device page at 1280px');
    await page.goto(`${base}/diagnostics`);
    const all = (await page.getByRole('table', { name: 'Recent sensor handshakes' }).textContent()) ?? '';
    assert.match(all, /unknown PSK identity/);
    assert.match(all, /psk:nobody-here/);
    await page.getByLabel('Device id').fill('boiler-7');
    await page.getByRole('button', { name: 'Show' }).click();
    const mine = (await page.getByRole('table', { name: 'Recent sensor handshakes' }).textContent()) ?? '';
    assert.doesNotMatch(mine, /nobody-here/);
    await axe('diagnostics at 1280px');
    await tabReachesEveryControl(page, 'diagnostics at 1280px');
    await shot('diagnostics-handshakes');
  });

  it('pings from the gateway, and refuses an injected option or shell syntax', async () => {
    await page.goto(`${base}/diagnostics`);
    await page.getByLabel('Address or name to ping').fill('127.0.0.1');
    await page.getByLabel(/Echoes/).fill('2');
    await page.getByRole('button', { name: 'Ping' }).click();
    assert.match(
      (await page.locator('#ping-result').textContent()) ?? '',
      /2 of 2 answered \(0% loss\), round trip/,
    );
    for (const host of ['-f', '127.0.0.1; reboot']) {
      await page.getByLabel('Address or name to ping').fill(host);
      await page.getByRole('button', { name: 'Ping' }).click();
      assert.match(
        (await page.locator('#ping-result').textContent()) ?? '',
        /Not sent: host: must be a host name/,
        host,
      );
      assert.equal(await page.getByLabel('Address or name to ping').inputValue(), host, 'kept as typed');
    }
    // DNS and reach: refused as typed, in place, however often (a flash back to the result page's own
    // address, /diagnostics/dns, was a 404 from the second refusal on).
    for (const viewport of [DESKTOP, PHONE]) {
      await page.setViewportSize(viewport);
      await page.goto(`${base}/diagnostics`);
      await page.getByLabel('Host name').fill('localhost');
      await page.getByRole('button', { name: 'Look up' }).click();
      assert.match((await page.locator('#dns-result').textContent()) ?? '', /localhost/);
      for (const name of ['-x', 'a b', '$(reboot)']) {
        const r = page.waitForResponse((res) => res.url().endsWith('/diagnostics/dns'));
        await page.getByLabel('Host name').fill(name);
        await page.getByRole('button', { name: 'Look up' }).click();
        assert.equal((await r).status(), 200, name);
        assert.match((await page.locator('#dns-result').textContent()) ?? '', /Not looked up: .*host/, name);
        assert.equal(await page.getByLabel('Host name').inputValue(), name, 'kept as typed');
      }
      for (const [host, port] of [
        ['-p', '443'],
        ['127.0.0.1', '99999'],
      ] as const) {
        const r = page.waitForResponse((res) => res.url().endsWith('/diagnostics/reach'));
        await page.getByLabel('Host or address').fill(host);
        await page.getByLabel('TCP port').fill(port);
        await page.getByRole('button', { name: 'Connect' }).click();
        assert.equal((await r).status(), 200, host);
        assert.match((await page.locator('#reach-result').textContent()) ?? '', /Not tried:/, host);
        assert.equal(await page.getByLabel('Host or address').inputValue(), host);
        assert.equal(await page.getByLabel('TCP port').inputValue(), port);
      }
      await axe(`diagnostics refusals at ${viewport.width}px`);
      assert.equal((await page.goto(`${base}/diagnostics/dns`))?.status(), 200, 'a reload is the page again');
    }
    await page.setViewportSize(PHONE);
    await page.goto(`${base}/diagnostics`);
    await axe('diagnostics at 390px');
    await fitsPhone('diagnostics');
    await page.goto(`${base}/devices/boiler-7`);
    await axe('device page at 390px');
    await fitsPhone('device page');
    await page.getByRole('heading', { name: 'Last handshakes' }).scrollIntoViewIfNeeded();
    await page.screenshot({ path: join(SHOTS, 'console-device-handshakes-phone.png') });
    if (DOC_SHOTS) await page.screenshot({ path: join(DOC_SHOTS, 'device-handshakes-phone.png') });
    await page.setViewportSize(DESKTOP);
    const audit = await e2e.home.cli(['audit', 'export', '--format', 'jsonl']);
    assert.equal(audit.match(/"action":"diagnostics\.ping"/g)?.length, 1, 'refused pings never ran');
    assert.equal(audit.match(/"action":"diagnostics\.dns"/g)?.length, 2, 'refused lookups never ran');
    assert.doesNotMatch(audit, /"action":"diagnostics\.reach"/, 'refused reach tests never ran');
  });

  it('refuses an invalid configuration with the schema’s words, keeps what was typed, and changes nothing', async () => {
    const before = readFileSync(e2e.home.config, 'utf8');
    await page.goto(`${base}/configuration`);
    const typed = '- name: plant\n  subnet: 10.1.0.0/33\n';
    await page.getByLabel(/Segments \(YAML/).fill(typed);
    await page.locator('#seg-password').fill(PASSWORD);
    await page.locator('#seg-code').fill('000000');
    await page.getByRole('button', { name: 'Apply the segments' }).click();
    const msg = (await page.locator('#seg-error').textContent()) ?? '';
    assert.match(msg, /invalid configuration/);
    assert.match(msg, /segments\.0/);
    // The refused change stays in its form to be corrected (never the password or code).
    assert.equal(await page.getByLabel(/Segments \(YAML/).inputValue(), typed);
    assert.equal(await page.locator('#seg-password').inputValue(), '');
    assert.equal(readFileSync(e2e.home.config, 'utf8'), before, 'the file is unchanged');
    await page.getByLabel('Broker URL (mqtts://host:port)').fill('not a url');
    await page.getByLabel('Topic prefix').fill('site-typed');
    await page.locator('#up-password').fill(PASSWORD);
    await page.locator('#up-code').fill('000000');
    await page.getByRole('button', { name: 'Apply the uplink change' }).click();
    assert.match((await page.locator('#up-error').textContent()) ?? '', /uplink\.url/);
    assert.equal(await page.getByLabel('Broker URL (mqtts://host:port)').inputValue(), 'not a url');
    assert.equal(await page.getByLabel('Topic prefix').inputValue(), 'site-typed');
    // The segments form shows the file's again, not the earlier refused text.
    assert.notEqual(await page.getByLabel(/Segments \(YAML/).inputValue(), typed);
    await axe('a refused change at 1280px');
    await page.setViewportSize(PHONE);
    await page.getByLabel('Broker URL (mqtts://host:port)').fill('still not a url');
    await page.locator('#up-password').fill(PASSWORD);
    await page.locator('#up-code').fill('000000');
    await page.getByRole('button', { name: 'Apply the uplink change' }).click();
    assert.match((await page.locator('#up-error').textContent()) ?? '', /uplink\.url/);
    assert.equal(await page.getByLabel('Broker URL (mqtts://host:port)').inputValue(), 'still not a url');
    await axe('a refused change at 390px');
    await fitsPhone('a refused change');
    await page.setViewportSize(DESKTOP);
    // Its address reloaded goes back to the page, not a 404.
    assert.equal((await page.goto(`${base}/configuration/apply`))?.status(), 200);
    assert.equal(new URL(page.url()).pathname, '/configuration');
    assert.equal(readFileSync(e2e.home.config, 'utf8'), before, 'the file is unchanged');
    const audit = await e2e.home.cli(['audit', 'export', '--format', 'jsonl']);
    assert.doesNotMatch(audit, /config\.apply/);
    assert.doesNotMatch(audit, /user\.login\.failed/, 'refused before the password was checked');
  });

  it('applies a new topic prefix: the gateway restarts itself and comes back healthy', async () => {
    await page.goto(`${base}/configuration`);
    await page.getByLabel('Topic prefix').fill('site-2');
    await reauth('up');
    await page.getByRole('button', { name: 'Apply the uplink change' }).click();
    assert.match(await flash(), /Applying uplink\.topicPrefix/);
    const result = await resultAfterRestart();
    assert.match(result, /applied: the gateway came back healthy/, result);
    assert.match(readFileSync(e2e.home.config, 'utf8'), /topicPrefix: site-2/);
    assert.match(readFileSync(`${e2e.home.config}.previous`, 'utf8'), /topicPrefix: site-1/);
    await axe('configuration at 1280px');
    await tabReachesEveryControl(page, 'configuration at 1280px');
    await shot('configuration-applied');
  });

  it('rolls back a broker that does not answer: the previous file is in force again', async () => {
    const before = readFileSync(e2e.home.config, 'utf8');
    const dead = await freeTcpPort();
    await page.goto(`${base}/configuration`);
    await page.getByLabel('Broker URL (mqtts://host:port)').fill(`mqtts://127.0.0.1:${dead}`);
    await reauth('up');
    await page.getByRole('button', { name: 'Apply the uplink change' }).click();
    const result = await resultAfterRestart();
    assert.match(result, /rolled back/, result);
    assert.match(result, /uplink/);
    assert.equal(readFileSync(e2e.home.config, 'utf8'), before, 'the previous file is back');
    const audit = await e2e.home.cli(['audit', 'export', '--format', 'jsonl']);
    const entries = audit
      .split('\n')
      .filter((l) => l.includes('"config.apply"'))
      .map((l) => JSON.parse(l) as { actor: string; details: { changed: string[]; result: string } });
    assert.deepEqual(
      entries.map((e) => [e.actor, e.details.changed.join(','), e.details.result]),
      [
        ['ui:alice', 'uplink.topicPrefix', 'applied'],
        ['ui:alice', 'uplink.url', 'rolled-back'],
      ],
    );
    assert.ok(!audit.includes(`mqtts://127.0.0.1:${dead}`), 'the audit names what changed, not the values');
    await page.setViewportSize(PHONE);
    await page.goto(`${base}/configuration`);
    await axe('configuration at 390px');
    await fitsPhone('configuration');
    await shot('configuration-rolled-back-phone');
    await page.setViewportSize(DESKTOP);
  });

  it('keeps the admin’s menu on one row at 1280 px, and a compact header at 390 px', async () => {
    const header = async () =>
      (await page.evaluate(`(() => {
        const items = [...document.querySelectorAll('header.top nav li')];
        const nav = document.querySelector('header.top nav');
        return {
          items: items.length,
          rows: new Set(items.map((i) => Math.round(i.getBoundingClientRect().top))).size,
          height: document.querySelector('header.top').getBoundingClientRect().height,
          hidden: nav.scrollWidth - nav.clientWidth,
        };
      })()`)) as { items: number; rows: number; height: number; hidden: number };
    await page.goto(`${base}/configuration`);
    const wide = await header();
    assert.equal(wide.items, 15, 'an admin sees every entry');
    assert.equal(wide.rows, 1, `the menu wraps at 1280px: ${JSON.stringify(wide)}`);
    assert.ok(wide.hidden <= 0, `the menu is cut off at 1280px: ${JSON.stringify(wide)}`);
    assert.ok(wide.height <= 130, `header ${wide.height}px`);
    await shot('header-1280');
    await page.setViewportSize(PHONE);
    await page.goto(`${base}/configuration`);
    const narrow = await header();
    assert.equal(narrow.rows, 1, 'one swipeable row on a phone');
    assert.ok(narrow.height <= 120, `header ${narrow.height}px of 844`);
    await fitsPhone('the header');
    await axe('header at 390px');
    await page.setViewportSize(DESKTOP);
  });

  it('sets the clock’s time zone and NTP servers, and refuses a server that reads as an option', async () => {
    await page.goto(`${base}/configuration`);
    await page.getByLabel(/Time zone/).fill('Asia/Tokyo');
    await page.getByLabel(/NTP servers/).fill('-f ntp.example');
    await page.locator('#clk-password').fill(PASSWORD);
    await page.locator('#clk-code').fill('000000');
    await page.getByRole('button', { name: 'Set the clock' }).click();
    assert.match((await page.locator('#clk-error').textContent()) ?? '', /NTP server must be a host name/);
    assert.equal(await page.getByLabel(/NTP servers/).inputValue(), '-f ntp.example', 'kept as typed');
    assert.equal(await page.getByLabel(/Time zone/).inputValue(), 'Asia/Tokyo', 'kept as typed');
    await page.getByLabel(/Time zone/).fill('Europe/Berlin');
    await page.getByLabel(/NTP servers/).fill('ntp1.example.net 192.0.2.123');
    await reauth('clk');
    await page.getByRole('button', { name: 'Set the clock' }).click();
    assert.match(await flash(), /Clock settings changed: timeZone, ntp/);
    assert.equal(readFileSync(join(hostRoot, 'etc', 'timezone'), 'utf8'), 'Europe/Berlin\n');
    assert.match(
      readFileSync(join(hostRoot, 'etc', 'systemd', 'timesyncd.conf.d', '60-portcullis-ui.conf'), 'utf8'),
      /^NTP=ntp1\.example\.net 192\.0\.2\.123$/m,
    );
    assert.match(
      (await page.locator('main').textContent()) ?? '',
      /Now: Europe\/Berlin, NTP ntp1\.example\.net, 192\.0\.2\.123/,
    );
  });
});
