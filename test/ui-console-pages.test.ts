/**
 * The technician console's new controls in process (issue 25): accounts (own password, an admin's reset with a
 * forced change, MFA reset, disable/enable/delete, sessions and their revocation), flow tokens, the health page,
 * the firewall apply refused while enforcement is off, a stable TOTP enrolment key — each with the attack that
 * must fail beside it: the wrong role, a missing CSRF token, a wrong re-authentication, the last admin, another
 * account's session. The browser side (layouts, axe, live updates) is in ui-console.test.ts.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { createLogger, LogRing } from '../gateway/src/log.ts';
import { createUiApp } from '../ui/src/app.ts';
import { makePki } from './helpers/pki.ts';
import { Browser, PASSWORD, site } from './helpers/ui.ts';

const NEW_PASSWORD = 'a brand new passphrase';

describe('UI console: accounts', () => {
  it('changes one’s own password: the current one proves it, other sessions end, a wrong one is a failed login', async (t) => {
    const { core, login } = site(t);
    const { b } = await login('tech', 'technician');
    const { b: other } = await login('tech', 'technician');
    const mismatch = await b.page('POST', '/account/password', {
      current: PASSWORD,
      next: NEW_PASSWORD,
      again: 'something else entirely',
    });
    assert.equal(mismatch.flash?.kind, 'error');
    assert.match(mismatch.flash?.text ?? '', /differ/);
    const short = await b.page('POST', '/account/password', { current: PASSWORD, next: 'short', again: 'x' });
    assert.match(short.flash?.text ?? '', /at least 12 characters; the two new passwords differ/);
    const wrong = await b.page('POST', '/account/password', {
      current: 'not my password',
      next: NEW_PASSWORD,
      again: NEW_PASSWORD,
    });
    assert.match(wrong.flash?.text ?? '', /current password is wrong/);
    assert.equal(core.users.get('tech')?.failedLogins, 1, 'counted like a failed login');
    const noCsrf = await b.page(
      'POST',
      '/account/password',
      { current: PASSWORD, next: NEW_PASSWORD, again: NEW_PASSWORD },
      { csrf: null },
    );
    assert.equal(noCsrf.status, 403);
    const ok = await b.page('POST', '/account/password', {
      current: PASSWORD,
      next: NEW_PASSWORD,
      again: NEW_PASSWORD,
    });
    assert.equal(ok.flash?.kind, 'ok', JSON.stringify(ok.flash));
    assert.equal((await b.page('GET', '/account')).status, 200, 'this session stays');
    assert.equal((await other.page('GET', '/')).location, '/login', 'the other session ended');
    await core.users.authenticate('tech', NEW_PASSWORD);
    const entry = [...core.store.audit.iterate()].find((e) => e.action === 'user.password.change');
    assert.ok(entry);
    assert.doesNotMatch(JSON.stringify(entry), /passphrase|correct horse/);
  });

  it('lets an admin reset a password (forced change at the next login) only with a fresh re-authentication', async (t) => {
    const { core, clock, login, totp } = site(t);
    const { b: tech } = await login('tech', 'technician');
    const { b: admin, secret } = await login('root', 'admin');
    const wrongCode = await admin.page('POST', '/users/tech/manage', {
      op: 'reset-password',
      newPassword: NEW_PASSWORD,
      password: PASSWORD,
      code: '000000',
    });
    assert.equal(wrongCode.flash?.kind, 'error');
    await core.users.authenticate('tech', PASSWORD); // unchanged
    const noCsrf = await admin.page(
      'POST',
      '/users/tech/manage',
      { op: 'reset-password', newPassword: NEW_PASSWORD, password: PASSWORD, code: totp(secret) },
      { csrf: null },
    );
    assert.equal(noCsrf.status, 403);
    const weak = await admin.page('POST', '/users/tech/manage', {
      op: 'reset-password',
      newPassword: 'short',
      password: PASSWORD,
      code: totp(secret),
    });
    assert.match(weak.flash?.text ?? '', /at least 12/);
    const ok = await admin.page('POST', '/users/tech/manage', {
      op: 'reset-password',
      newPassword: NEW_PASSWORD,
      password: PASSWORD,
      code: totp(secret),
    });
    assert.equal(ok.flash?.kind, 'ok', JSON.stringify(ok.flash));
    assert.equal((await tech.page('GET', '/')).location, '/login', 'their sessions ended');
    // The technician logs in with the given password and is held on the account page until they change it.
    const fresh = new Browser(admin.app);
    await fresh.page('POST', '/login', { username: 'tech', password: NEW_PASSWORD }, { csrf: null });
    clock.advance(31_000);
    const secretOf = core.users.get('tech');
    assert.ok(secretOf?.passwordChangeRequired);
    // A technician enrolled already (login() did): the second factor, then the forced page.
    const code = (await import('otplib')).generateSync({
      secret: core.keystore
        ?.unwrap(secretOf.totpSecretWrapped as Buffer, 'user:totp:tech')
        .toString() as string,
      epoch: Math.floor(clock.now() / 1000),
    });
    assert.equal((await fresh.page('POST', '/login/totp', { code }, { csrf: null })).location, '/');
    assert.equal((await fresh.page('GET', '/devices')).location, '/account');
    const forced = await fresh.page('GET', '/account');
    assert.match(forced.text, /Choose a new password/);
    fresh.csrf = /name="_csrf" value="([^"]+)"/.exec(forced.text)?.[1] as string;
    assert.equal((await fresh.page('POST', '/alerts/1/ack')).status, 403, 'no other form either');
    const api = await fresh.call('GET', '/api/v1/status');
    assert.equal(api.status, 403);
    const changed = await fresh.page('POST', '/account/password', {
      current: NEW_PASSWORD,
      next: 'the technician’s own phrase',
      again: 'the technician’s own phrase',
    });
    assert.equal(changed.flash?.kind, 'ok', JSON.stringify(changed.flash));
    assert.equal((await fresh.page('GET', '/devices')).status, 200);
    const actions = [...core.store.audit.iterate()].map((e) => `${e.actor} ${e.action}`);
    assert.ok(actions.includes('ui:root user.password.reset'));
    assert.ok(actions.includes('ui:tech user.password.change'));
  });

  it('resets MFA, disables, enables and deletes accounts — never the last admin, never one’s own', async (t) => {
    const { core, clock, login, totp } = site(t);
    await login('tech', 'technician');
    const { b: admin, secret } = await login('root', 'admin');
    const act = async (user: string, op: string) => {
      clock.advance(31_000);
      return admin.page('POST', `/users/${user}/manage`, { op, password: PASSWORD, code: totp(secret) });
    };
    assert.equal((await act('tech', 'reset-mfa')).flash?.kind, 'ok');
    assert.equal(core.users.isEnrolled('tech'), false);
    assert.equal((await act('tech', 'disable')).flash?.kind, 'ok');
    await assert.rejects(core.users.authenticate('tech', PASSWORD), { code: 'ERR_USER_CREDENTIALS' });
    assert.match((await act('tech', 'disable')).flash?.text ?? '', /already disabled/);
    assert.equal((await act('tech', 'enable')).flash?.kind, 'ok');
    await core.users.authenticate('tech', PASSWORD);
    // Oneself: refused (another admin must), whatever the form says.
    for (const op of ['disable', 'delete', 'reset-mfa']) {
      const r = await act('root', op);
      assert.equal(r.flash?.kind, 'error', op);
      assert.match(r.flash?.text ?? '', /not on your own account/);
    }
    // The last enabled admin: a second admin cannot remove the first once the second is disabled.
    await core.users.createUser({ username: 'second', role: 'admin', password: PASSWORD }, 'test');
    assert.equal((await act('second', 'disable')).flash?.kind, 'ok');
    assert.throws(() => core.users.deleteUser('root', 'ui:second'), { code: 'ERR_USER_STATE' });
    assert.throws(() => core.users.setEnabled('root', false, 'ui:second'), /last enabled admin/);
    assert.equal((await act('tech', 'delete')).flash?.kind, 'ok');
    assert.equal(core.users.get('tech'), undefined);
    assert.equal((await act('nobody', 'delete')).status, 303);
    const actions = [...core.store.audit.iterate()].filter((e) => e.actor === 'ui:root').map((e) => e.action);
    for (const a of ['user.mfa.reset', 'user.disable', 'user.enable', 'user.delete']) {
      assert.ok(actions.includes(a), a);
    }
  });

  it('lists sessions and revokes them: an admin any, a person only their own', async (t) => {
    const { core, login } = site(t);
    const { b: tech } = await login('tech', 'technician');
    const { b: tech2 } = await login('tech', 'technician');
    const { b: admin } = await login('root', 'admin');
    await login('root', 'admin'); // a second admin session, for the technician to aim at
    const ids = (html: string) =>
      [...html.matchAll(/name="session" value="([0-9a-f]+)"/g)].map((m) => m[1] as string);
    const mine = ids((await tech.page('GET', '/account')).text);
    assert.equal(mine.length, 1, 'the other session of tech (this one is "this browser")');
    assert.equal(ids((await admin.page('GET', '/users')).text).length, 3);
    // A technician naming an admin's session: not found (only one's own are in reach).
    const rootOther = ids((await admin.page('GET', '/account')).text);
    assert.equal(rootOther.length, 1);
    const forged = await tech.page('POST', '/account/sessions/revoke', { session: rootOther[0] as string });
    assert.equal(forged.flash?.kind, 'error');
    assert.match(forged.flash?.text ?? '', /no such session/);
    assert.equal(ids((await admin.page('GET', '/account')).text).length, 1, 'still there');
    const own = { session: mine[0] as string };
    assert.equal((await tech.page('POST', '/users/sessions/revoke', own)).status, 403, 'not an admin');
    assert.equal((await tech.page('POST', '/account/sessions/revoke', own, { csrf: null })).status, 403);
    assert.equal((await tech.page('POST', '/account/sessions/revoke', own)).flash?.kind, 'ok');
    assert.equal((await tech2.page('GET', '/')).location, '/login');
    assert.equal((await tech.page('GET', '/')).status, 200);
    // The admin ends the technician's remaining session.
    const left = ids((await admin.page('GET', '/users')).text).filter((i) => !rootOther.includes(i));
    assert.equal(left.length, 1);
    const ended = await admin.page('POST', '/users/sessions/revoke', { session: left[0] as string });
    assert.equal(ended.flash?.kind, 'ok');
    assert.equal((await tech.page('GET', '/')).location, '/login');
    const revokes = [...core.store.audit.iterate()].filter((e) => e.action === 'user.session.revoke');
    assert.deepEqual(
      revokes.map((e) => e.actor),
      ['ui:tech', 'ui:root'],
    );
    assert.doesNotMatch(JSON.stringify(revokes), /token/i);
  });
});

describe('UI console: enrolment, tokens, health, firewall', () => {
  it('keeps the TOTP enrolment key across reloads and wrong codes; a new one only on request', async (t) => {
    const { core, app } = site(t);
    await core.users.createUser({ username: 'tech', role: 'technician', password: PASSWORD }, 'test');
    const b = new Browser(app);
    await b.page('POST', '/login', { username: 'tech', password: PASSWORD }, { csrf: null });
    const key = (html: string) => /class="secret">([A-Z2-7]+)</.exec(html)?.[1];
    const first = key((await b.page('GET', '/login/enroll')).text);
    assert.ok(first);
    assert.equal(key((await b.page('GET', '/login/enroll')).text), first, 'a reload keeps it');
    const wrong = await b.page('POST', '/login/enroll', { code: '000000' }, { csrf: null });
    assert.equal(wrong.status, 400);
    assert.equal(key(wrong.text), first, 'a wrong code keeps it');
    assert.match(wrong.text, /key is unchanged/);
    const cross = await b.page(
      'POST',
      '/login/enroll/new-key',
      {},
      {
        csrf: null,
        headers: { origin: 'https://evil.example', 'sec-fetch-site': 'cross-site' },
      },
    );
    assert.equal(cross.status, 403);
    const renewed = await b.page('POST', '/login/enroll/new-key', {}, { csrf: null });
    assert.notEqual(key(renewed.text), first);
    assert.match(renewed.text, /This is a new key/);
  });

  it('creates flow tokens with scopes (admin, re-authenticated, shown once) and revokes them', async (t) => {
    const { core, clock, login, totp } = site(t);
    const { b: tech } = await login('tech', 'technician');
    assert.equal((await tech.page('GET', '/tokens')).status, 403);
    const { b: admin, secret } = await login('root', 'admin');
    const form = (extra: Record<string, string>) =>
      new URLSearchParams({ _csrf: admin.csrf, name: 'alerts-flow', ...extra });
    const post = async (body: URLSearchParams) => {
      const res = await admin.app.request('/tokens', {
        method: 'POST',
        headers: { cookie: admin.cookie, 'content-type': 'application/x-www-form-urlencoded' },
        body: body.toString(),
      });
      return { status: res.status, text: await res.text(), cc: res.headers.get('cache-control') };
    };
    const noScope = await admin.page('POST', '/tokens', {
      name: 'x',
      password: PASSWORD,
      code: totp(secret),
    });
    assert.equal(noScope.flash?.kind, 'error');
    const bad = form({ password: PASSWORD, code: '000000' });
    bad.append('scopes', 'events:read');
    assert.equal((await post(bad)).status, 303, 'a wrong code: refused');
    const unknown = form({ password: PASSWORD, code: totp(secret) });
    unknown.append('scopes', 'root:everything');
    assert.equal((await post(unknown)).status, 303);
    assert.equal(core.store.controlTokens.list().length, 0);
    clock.advance(31_000);
    const good = form({ password: PASSWORD, code: totp(secret) });
    good.append('scopes', 'events:read');
    good.append('scopes', 'device:read');
    const created = await post(good);
    assert.equal(created.status, 200);
    assert.equal(created.cc, 'no-store');
    const token = /id="token-value">\s*([^<\s]+)/.exec(created.text)?.[1] as string;
    assert.ok(token && token.length >= 32);
    const list = await admin.page('GET', '/tokens');
    assert.match(list.text, /alerts-flow/);
    assert.match(list.text, /device:read, events:read/);
    assert.ok(!list.text.includes(token), 'never shown again');
    assert.ok(!JSON.stringify([...core.store.audit.iterate()]).includes(token));
    assert.equal((await tech.page('POST', '/tokens/alerts-flow/revoke')).status, 403);
    assert.equal((await admin.page('POST', '/tokens/alerts-flow/revoke', {}, { csrf: null })).status, 403);
    assert.equal((await admin.page('POST', '/tokens/alerts-flow/revoke')).flash?.kind, 'ok');
    assert.match((await admin.page('GET', '/tokens')).text, /revoked/);
  });

  it('shows the health page to every role, with the figures and the uplink hint', async (t) => {
    const { login } = site(t);
    const { b } = await login('audrey', 'auditor');
    const h = await b.page('GET', '/health');
    assert.equal(h.status, 200);
    for (const part of [/CPU/, /Memory/, /Disk/, /Temperature/, /Uptime/, /Load/, /Network interfaces/]) {
      assert.match(h.text, part);
    }
    assert.match(h.text, /id="health-queue">0</);
    assert.match(h.text, /No broker is configured/);
    assert.match(h.text, /Identity CA|No certificate has been issued yet/);
    assert.match((await b.page('GET', '/')).text, /id="uplink-hint"/);
    const m = await b.page('GET', '/maintenance');
    assert.match(m.text, /not installed from a bundle/);
    assert.match(m.text, /No update has been applied yet/);
    assert.match(m.text, /no bundle can be installed/);
  });

  it('neither offers nor accepts a firewall apply while enforcement is off (page and API)', async (t) => {
    const { core, login, totp, clock } = site(t);
    const { b, secret } = await login('root', 'admin');
    const seg = await b.page('GET', '/segments');
    assert.match(seg.text, /Enforcement is off/);
    assert.doesNotMatch(seg.text, /action="\/segments\/apply"/);
    const hash = (await core.segmentation.render()).hash;
    const page = await b.page('POST', '/segments/apply', { hash, password: PASSWORD, code: totp(secret) });
    assert.equal(page.flash?.kind, 'error');
    assert.match(page.flash?.text ?? '', /firewall.enforce is off/);
    clock.advance(31_000);
    assert.equal(
      (await b.call('POST', '/auth/reauth', { password: PASSWORD, code: totp(secret) })).status,
      200,
    );
    const api = await b.call('POST', '/api/v1/firewall/apply', {});
    assert.equal(api.status, 409);
    assert.equal((api.data.error as { code: string }).code, 'ERR_FIREWALL_NOT_ENFORCED');
    assert.equal(core.store.rulesets.latest(), undefined, 'nothing was even tried');
  });

  it('shows the recent log with level, text and device filters, downloads it, and never shows a secret', async (t) => {
    const { core, login } = site(t);
    const ring = new LogRing({ write: () => true }, 100);
    const logger = createLogger('debug', ring);
    logger.info({ deviceId: 'boiler-1' }, 'session opened');
    for (let i = 0; i < 150; i++) logger.info({ n: i }, 'filler');
    logger.warn({ deviceId: 'boiler-2', psk: 'deadbeefdeadbeefdeadbeefdeadbeef' }, 'odd handshake');
    logger.error({ err: 'broker refused' }, 'uplink failed');
    logger.debug('chatter');
    const { b } = await login('audrey', 'auditor');
    const app = createUiApp(core, { logs: ring });
    const viewer = new Browser(app);
    viewer.cookie = b.cookie;
    const all = await viewer.page('GET', '/logs?level=debug');
    assert.equal(all.status, 200);
    assert.match(all.text, /100 kept/, 'bounded');
    assert.doesNotMatch(all.text, /session opened/, 'the oldest lines were dropped');
    const warn = await viewer.page('GET', '/logs?level=warn');
    assert.match(warn.text, /uplink failed/);
    assert.doesNotMatch(warn.text, /filler/);
    assert.doesNotMatch(warn.text, /deadbeef/, 'redacted before it was kept');
    const ring2 = new LogRing({ write: () => true });
    const logger2 = createLogger('info', ring2);
    logger2.info({ deviceId: 'boiler-1' }, 'session opened');
    logger2.warn({ deviceId: 'boiler-2' }, 'odd handshake');
    const app2 = createUiApp(core, { logs: ring2 });
    const v2 = new Browser(app2);
    v2.cookie = b.cookie;
    const dev = await v2.page('GET', '/logs?device=boiler-2');
    assert.match(dev.text, /odd handshake/);
    assert.doesNotMatch(dev.text, /session opened/);
    const text = await v2.page('GET', '/logs?q=SESSION');
    assert.match(text.text, /session opened/);
    const dl = await v2.page('GET', '/logs/download?level=info');
    assert.match(dl.headers.get('content-disposition') ?? '', /attachment/);
    assert.deepEqual(
      dl.text
        .trim()
        .split('\n')
        .map((l) => (JSON.parse(l) as { msg: string }).msg),
      ['session opened', 'odd handshake'],
    );
    // Without a kept log (an embedded start): the page says where the log is.
    assert.match((await b.page('GET', '/logs')).text, /journalctl/);
    assert.equal((await b.page('GET', '/logs/download')).location, '/logs');
    assert.equal((await new Browser(app2).page('GET', '/logs')).location, '/login');
  });

  it('runs diagnostics for admins only, with validated arguments, every run audited', async (t) => {
    const { core, login } = site(t);
    const { b: tech } = await login('tech', 'technician');
    assert.equal((await tech.page('GET', '/diagnostics')).status, 403);
    assert.equal((await tech.page('POST', '/diagnostics/dns', { name: 'localhost' })).status, 403);
    const { b } = await login('root', 'admin');
    assert.equal(
      (await b.page('POST', '/diagnostics/dns', { name: 'localhost' }, { csrf: null })).status,
      403,
    );
    const server = createServer((s) => s.end());
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    t.after(() => server.close());
    const port = (server.address() as { port: number }).port;
    const reach = await b.page('POST', '/diagnostics/reach', { host: '127.0.0.1', port: String(port) });
    assert.match(reach.text, new RegExp(`127.0.0.1:${port} reached`));
    const dns = await b.page('POST', '/diagnostics/dns', { name: 'localhost' });
    assert.match(dns.text, /localhost → /);
    const up = await b.page('POST', '/diagnostics/uplink', {});
    assert.match(up.text, /No uplink is configured/);
    const before = [...core.store.audit.iterate()].filter((e) => e.action.startsWith('diagnostics.')).length;
    assert.equal(before, 3);
    // Arguments that could read as options, paths or shell: refused before anything is sent, not audited.
    for (const fields of [
      { host: '-c1', port: '80' },
      { host: 'a b', port: '80' },
      { host: 'x;reboot', port: '80' },
      { host: '127.0.0.1', port: '0' },
      { host: '127.0.0.1', port: '70000' },
    ]) {
      // Answered in place with the form as typed (a flash back to the Referer could land on a 404).
      const r = await b.page('POST', '/diagnostics/reach', fields);
      assert.equal(r.status, 200, JSON.stringify(fields));
      assert.match(r.text, /Not tried: /, JSON.stringify(fields));
    }
    const badName = await b.page('POST', '/diagnostics/dns', { name: '../../etc/passwd' });
    assert.match(badName.text, /Not looked up: /);
    assert.match(badName.text, /value="\.\.\/\.\.\/etc\/passwd"/, 'kept as typed');
    assert.equal(
      [...core.store.audit.iterate()].filter((e) => e.action.startsWith('diagnostics.')).length,
      before,
    );
  });

  it('shows the configuration to admins and hands out the uplink certificate request, its subject validated', async (t) => {
    const { core, login } = site(t);
    const { b: tech } = await login('tech', 'technician');
    assert.equal((await tech.page('GET', '/configuration')).status, 403);
    assert.equal((await tech.page('POST', '/configuration/uplink-csr', { subject: 'CN=x' })).status, 403);
    const { b } = await login('root', 'admin');
    const page = await b.page('GET', '/configuration');
    assert.match(page.text, /No uplink is configured/);
    assert.equal(
      (await b.page('POST', '/configuration/uplink-csr', { subject: 'CN=gw-1' }, { csrf: null })).status,
      403,
    );
    const bad = await b.page('POST', '/configuration/uplink-csr', { subject: 'CN=gw-1\nO=evil' });
    assert.equal(bad.flash?.kind, 'error');
    const csr = await b.page('POST', '/configuration/uplink-csr', { subject: 'CN=gw-1,O=Example' });
    assert.equal(csr.status, 200);
    assert.match(csr.text, /^-----BEGIN CERTIFICATE REQUEST-----/);
    assert.match(csr.headers.get('content-disposition') ?? '', /attachment/);
    // The same key the next time: a second request must not replace the key a signed certificate belongs to.
    const again = await b.page('POST', '/configuration/uplink-csr', { subject: 'CN=gw-1,O=Example' });
    const pubkey = (pem: string) =>
      execFileSync('openssl', ['req', '-pubkey', '-noout'], { input: pem }).toString();
    assert.match(pubkey(csr.text), /BEGIN PUBLIC KEY/);
    assert.equal(pubkey(csr.text), pubkey(again.text));
    assert.ok(core.store.audit.search({ action: 'uplink.csr', limit: 10 }).length >= 2);
  });

  it('installs the signed uplink certificate only for this gateway’s key, valid now, after re-authentication', async (t) => {
    const pki = makePki();
    t.after(() => pki.dispose());
    const certFile = join(pki.dir, 'uplink-cert.pem');
    const { core, clock, login, totp } = site(t, {
      uplink: { url: 'mqtts://127.0.0.1:1', caFile: pki.caPath, certFile },
    });
    // The test CA signs from the real now; the site's clock starts in 2026-11: bring it to now first.
    clock.set(Date.now() + 60_000);
    const { b, secret } = await login('root', 'admin');
    const csr = await b.page('POST', '/configuration/uplink-csr', { subject: 'CN=gw-1' });
    const signed = readFileSync(pki.signCsr(csr.text, 'gw-1'), 'utf8');
    const other = readFileSync(pki.client.certPath, 'utf8');
    const post = (certificate: string, code: string) =>
      b.page('POST', '/configuration/uplink-certificate', { certificate, password: PASSWORD, code });
    const wrongKey = await post(other, totp(secret));
    assert.match(wrongKey.flash?.text ?? '', /another key/);
    clock.advance(31_000);
    assert.match((await post('garbage', totp(secret))).flash?.text ?? '', /exactly one PEM certificate/);
    clock.advance(31_000);
    assert.equal((await post(signed, '000000')).flash?.kind, 'error', 'a wrong code');
    assert.equal(existsSync(certFile), false, 'nothing written');
    clock.advance(31_000);
    const ok = await post(signed, totp(secret));
    assert.equal(ok.flash?.kind, 'ok', JSON.stringify(ok.flash));
    assert.equal(readFileSync(certFile, 'utf8').trim(), signed.trim());
    const entry = core.store.audit.search({ action: 'uplink.certificate', limit: 1 })[0];
    assert.match(entry?.details ?? '', /sha256/);
  });
});
