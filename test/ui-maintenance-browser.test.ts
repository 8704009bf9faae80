/**
 * The maintenance page in a real browser (Debian's chromium through playwright-core) at 1280 and 390 px
 * (issue 25 items 13 and 15): a backup made and downloaded, a signed update uploaded with the browser's upload
 * progress and then verified and installed (a tampered one refused with its reason), the downloaded backup
 * restored (a wrong passphrase refused first), a restart confirmed by typing it — through an injected command
 * runner, so nothing restarts — and a technician offered none of it and refused by the API. axe-core (no serious
 * or critical violation) and no sideways scroll on both widths. The UI runs in-process over HTTPS on a manual
 * clock, so every re-authentication gets a fresh TOTP step without waiting 30 s.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { generateSync } from 'otplib';
import { type Browser, chromium, type Page } from 'playwright-core';
import { ManualClock } from '../gateway/src/clock.ts';
import { parseConfig } from '../gateway/src/config/index.ts';
import { Core } from '../gateway/src/core.ts';
import { buildBundle } from '../gateway/src/updates/index.ts';
import { createUiApp } from '../ui/src/app.ts';
import { type RunningServer, startHttpsServer } from '../ui/src/server.ts';
import { selfSignedServerCertificate } from './helpers/pki.ts';

const SHOTS = join(import.meta.dirname, '..', 'test-artifacts', 'screenshots');
const DOC_SHOTS = process.env.PORTCULLIS_DOC_SHOTS
  ? join(import.meta.dirname, '..', 'docs', 'screenshots')
  : '';
const AXE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
const PASSWORD = 'an administrator passphrase';
const BACKUP_PASSPHRASE = 'the site backup passphrase';
const PHONE = { width: 390, height: 844 };
const DESKTOP = { width: 1280, height: 900 };

describe('maintenance page in chromium, at 1280 and 390 px', () => {
  let dir: string;
  let core: Core;
  let clock: ManualClock;
  let server: RunningServer;
  let browser: Browser;
  let base = '';
  const commands: string[][] = [];
  const secrets = new Map<string, string>();
  const bundles: Record<string, string> = {};

  /** A code of a time step not used yet: the manual clock moves on a step first. */
  const code = (user: string) => {
    clock.advance(30_000);
    return generateSync({ secret: secrets.get(user) as string, epoch: Math.floor(clock.now() / 1000) });
  };

  before(async () => {
    const { mkdtempSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    dir = mkdtempSync(join(tmpdir(), 'portcullis-maint-'));
    mkdirSync(SHOTS, { recursive: true });
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    writeFileSync(join(dir, 'release.pub.pem'), publicKey.export({ type: 'spki', format: 'pem' }));
    for (const version of ['0.2.0', '0.3.0']) {
      const src = join(dir, `src-${version}`);
      mkdirSync(join(src, 'bin'), { recursive: true });
      writeFileSync(join(src, 'bin', 'portcullis.js'), `console.log('${version}');\n`);
      // Big enough for the browser to report upload progress more than once.
      writeFileSync(join(src, 'payload.bin'), randomBytes(3 * 1024 * 1024));
      bundles[version] = join(dir, `portcullis-${version}.tar`);
      await buildBundle({
        source: src,
        version,
        minVersion: '0.0.1',
        hardware: ['x64', 'arm64'],
        notes: '',
        privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
        out: bundles[version],
      });
    }
    // 0.3.0 changed after signing: one byte of the bin file.
    const tampered = readFileSync(bundles['0.3.0'] as string);
    tampered.write("console.log('0.3.1')", tampered.indexOf("console.log('0.3.0')"));
    bundles.tampered = join(dir, 'portcullis-0.3.0-tampered.tar');
    writeFileSync(bundles.tampered, tampered);

    clock = new ManualClock(Date.now());
    core = Core.open(
      parseConfig(
        {
          dataDir: join(dir, 'var'),
          updates: {
            publicKeyFile: join(dir, 'release.pub.pem'),
            releasesDir: join(dir, 'releases'),
            currentLink: join(dir, 'current'),
          },
        },
        dir,
      ),
      clock,
    );
    core.identity.addPskDevice(
      { id: 'boiler-1', pskIdentity: 'boiler-1', pskText: 'sixteen-byte-key-1' },
      'test',
    );
    for (const [user, role] of [
      ['admin', 'admin'],
      ['tech', 'technician'],
    ] as const) {
      await core.users.createUser({ username: user, role, password: PASSWORD }, 'test');
      const { secret } = core.users.beginTotpEnrollment(user);
      secrets.set(user, secret);
      core.users.confirmTotpEnrollment(user, code(user));
    }
    const app = createUiApp(core, {
      maintenance: {
        runCommand: async (argv) => {
          commands.push([...argv]);
        },
        powerDelayMs: 0,
      },
    });
    const tls = selfSignedServerCertificate(dir);
    server = await startHttpsServer(app, {
      host: '127.0.0.1',
      port: 0,
      key: readFileSync(tls.key, 'utf8'),
      cert: readFileSync(tls.cert, 'utf8'),
    });
    base = `https://127.0.0.1:${server.address.port}`;
    browser = await chromium.launch({
      executablePath: '/usr/bin/chromium',
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
      ],
    });
  });

  after(async () => {
    await browser?.close();
    await server?.close();
    core?.close();
    const { rmSync } = await import('node:fs');
    rmSync(dir, { recursive: true, force: true });
  });

  const open = async (viewport: { width: number; height: number }, user: string) => {
    const context = await browser.newContext({ viewport, ignoreHTTPSErrors: true, acceptDownloads: true });
    const page = await context.newPage();
    const errors: string[] = [];
    page.on('console', (m) => {
      // The refusals this test asks for are 4xx answers, which chromium logs: anything else is a fault.
      if (m.type() === 'error' && !/status of 4\d\d/.test(m.text())) errors.push(m.text());
    });
    await page.goto(`${base}/login`);
    await page.getByLabel('User name').fill(user);
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Continue' }).click();
    await page.getByLabel(/authenticator app/).fill(code(user));
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.waitForURL(`${base}/`);
    await page.goto(`${base}/maintenance`);
    return { page, errors, close: () => context.close() };
  };

  const axe = async (page: Page, where: string) => {
    await page.evaluate(`${AXE};0`);
    const r = (await page.evaluate(
      '(async () => { const r = await axe.run(document, { resultTypes: ["violations"] }); return r.violations.filter((v) => v.impact === "serious" || v.impact === "critical").map((v) => v.id + ": " + v.help + " " + JSON.stringify(v.nodes.slice(0, 3).map((n) => n.target))); })()',
    )) as string[];
    assert.deepEqual(r, [], where);
  };
  const fits = async (page: Page, where: string) => {
    const overflow = (await page.evaluate(
      'document.documentElement.scrollWidth - document.documentElement.clientWidth',
    )) as number;
    assert.ok(overflow <= 0, `${where} scrolls sideways by ${overflow}px`);
  };
  const shot = async (page: Page, name: string) => {
    await page.screenshot({ path: join(SHOTS, `console-${name}.png`), fullPage: true });
    if (DOC_SHOTS) await page.screenshot({ path: join(DOC_SHOTS, `${name}.png`), fullPage: false });
  };
  /** Fills a form's re-authentication and submits it; resolves with its result text once it matches `done`. */
  const submit = async (page: Page, form: string, done: RegExp) => {
    const f = page.locator(`form[data-maint="${form}"]`);
    await f.getByLabel('Your password').fill(PASSWORD);
    await f.getByLabel('Authenticator code').fill(code('admin'));
    await f.locator('button[type="submit"]').click();
    const text = f.locator('.job-text');
    await text.filter({ hasText: done }).waitFor({ timeout: 30_000 });
    return (await text.textContent()) ?? '';
  };
  /** Every text the form's result line showed (progress included), recorded in the page. */
  const recordTexts = (page: Page, form: string) =>
    page.evaluate(`(() => {
      const el = document.querySelector('form[data-maint="${form}"] .job-text');
      window.__texts = [];
      new MutationObserver(() => window.__texts.push(el.textContent)).observe(el, { childList: true, characterData: true, subtree: true });
    })()`);

  it('at 1280 px: backup downloaded, update installed with upload progress, the backup restored, a restart confirmed', async () => {
    const { page, errors, close } = await open(DESKTOP, 'admin');
    assert.match((await page.locator('.notice').textContent()) ?? '', /cannot move/);
    await axe(page, 'maintenance 1280');
    await fits(page, 'maintenance 1280');
    await shot(page, 'maintenance');

    // Backup: the passphrase twice, then the download.
    const backup = page.locator('form[data-maint="backup"]');
    await backup.getByLabel('Passphrase', { exact: true }).fill(BACKUP_PASSPHRASE);
    await backup.getByLabel('Passphrase again').fill(BACKUP_PASSPHRASE);
    const downloading = page.waitForEvent('download');
    const said = await submit(page, 'backup', /Backup downloaded|\(ERR_/);
    assert.match(said, /Backup downloaded: portcullis-backup-.*\.pcbk/);
    const download = await downloading;
    const archive = join(dir, 'downloaded.pcbk');
    await download.saveAs(archive);
    assert.equal(readFileSync(archive).subarray(0, 18).toString(), 'PORTCULLIS-BACKUP ');

    // Update: the upload's progress, then verification and installation from the job.
    await recordTexts(page, 'update');
    await page
      .locator('form[data-maint="update"]')
      .getByLabel('Update bundle (.tar)')
      .setInputFiles(bundles['0.2.0'] as string);
    const installed = await submit(page, 'update', /Installed|Refused/);
    assert.match(installed, /Installed 0\.2\.0/);
    const texts = (await page.evaluate('window.__texts')) as string[];
    assert.ok(
      texts.some((t) => /Uploading: \d+ %/.test(t)),
      `upload progress shown: ${texts.join(' | ')}`,
    );
    assert.ok(
      texts.some((t) => /Verifying|Installing|Health check/.test(t)),
      texts.join(' | '),
    );
    await shot(page, 'maintenance-update');

    // Restore the backup just made: a wrong passphrase first (refused, with the reason), then the right one.
    const restore = page.locator('form[data-maint="restore"]');
    await restore.getByLabel('Backup archive (.pcbk)').setInputFiles(archive);
    await restore.getByLabel('Its passphrase').fill('not the passphrase');
    await restore.getByLabel(/Keep this gateway/).check();
    assert.match(
      await submit(page, 'restore', /Staged|\(ERR_/),
      /passphrase does not open this archive \(ERR_BACKUP_PASSPHRASE\)/,
    );
    await restore.getByLabel('Its passphrase').fill(BACKUP_PASSPHRASE);
    assert.match(
      await submit(page, 'restore', /Staged|\(ERR_/),
      /Staged: 1 devices, 0 secrets|Staged: 1 devices, \d+ secrets/,
    );

    // Restart: typing the wrong word is refused; "restart" goes through the injected command.
    const power = page.locator('form[data-maint="power"]');
    await power.getByLabel('Type restart or reboot to confirm').fill('reboot');
    assert.match(await submit(page, 'power', /Restarting|\(ERR_/), /ERR_UI_CONFIRM/);
    assert.deepEqual(commands, []);
    await power.getByLabel('Type restart or reboot to confirm').fill('restart');
    assert.match(await submit(page, 'power', /Restarting|\(ERR_/), /Restarting the gateway/);
    await page.waitForTimeout(50);
    assert.deepEqual(commands, [['systemctl', '--no-block', 'restart', 'portcullis-gateway.service']]);
    await axe(page, 'maintenance 1280 after the actions');
    assert.deepEqual(errors, []);
    await close();
    const actions = [...core.audit.entries()].map((e) => `${e.actor} ${e.action}`);
    for (const a of ['backup.create', 'update.install', 'backup.restore.staged', 'gateway.restart']) {
      assert.ok(actions.includes(`ui:admin ${a}`), a);
    }
  });

  it('at 390 px: the page fits, a tampered bundle is refused with its reason; a technician is offered nothing and refused', async () => {
    const { page, errors, close } = await open(PHONE, 'admin');
    await fits(page, 'maintenance 390');
    await axe(page, 'maintenance 390');
    await page
      .locator('form[data-maint="update"]')
      .getByLabel('Update bundle (.tar)')
      .setInputFiles(bundles.tampered as string);
    const refused = await submit(page, 'update', /Installed|Refused/);
    assert.match(refused, /Refused: .*bin\/portcullis\.js.*\(ERR_UPDATE_TAMPERED\)/);
    await fits(page, 'maintenance 390 after a refusal');
    await shot(page, 'maintenance-phone');
    assert.deepEqual(errors, []);
    await close();

    const tech = await open(PHONE, 'tech');
    assert.equal(await tech.page.locator('form[data-maint]').count(), 0);
    assert.match((await tech.page.locator('main').textContent()) ?? '', /for admins/);
    const status = (await tech.page.evaluate(`(async () => {
      const csrf = document.querySelector('input[name="_csrf"]').value;
      const r = await fetch('/api/v1/maintenance/power', { method: 'POST', headers: { 'content-type': 'application/json', 'x-csrf-token': csrf }, body: JSON.stringify({ action: 'reboot', confirm: 'reboot' }) });
      return r.status;
    })()`)) as number;
    assert.equal(status, 403);
    await axe(tech.page, 'maintenance 390 technician');
    await tech.close();
    assert.equal(commands.filter((c) => c.includes('reboot')).length, 0);
  });
});
