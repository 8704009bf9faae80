/**
 * The server-rendered pages, in process: the role × page matrix (an auditor changes nothing), CSRF and
 * cross-site forms, the second factor before any page, session expiry, inline re-authentication of dangerous
 * actions, the PSK shown once, output escaping, no open redirect, the tamper lock, and the live event stream.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PAGE_ROUTES } from '../ui/src/routes/pages.tsx';
import { Browser, PASSWORD, site } from './helpers/ui.ts';

const FOREIGN = { origin: 'https://evil.example', 'sec-fetch-site': 'cross-site' };

describe('UI pages', () => {
  it('sends a visitor without a session to setup (first boot) or login, from every page', async (t) => {
    const { core, app } = site(t);
    const b = new Browser(app);
    assert.equal((await b.page('GET', '/')).location, '/setup');
    await core.users.createUser({ username: 'admin1', role: 'admin', password: PASSWORD }, 'test');
    for (const r of PAGE_ROUTES) {
      const res = await b.page(r.method, r.path.replace(':id', 'x'), r.sample, { csrf: null });
      assert.equal(res.status, 303, `${r.method} ${r.path}`);
      assert.equal(res.location, '/login', `${r.method} ${r.path}`);
    }
  });

  it('lets each role use exactly the pages and forms the table says (an auditor changes nothing)', async (t) => {
    const { core, login } = site(t);
    core.identity.addPskDevice({ id: 'dev-1', pskIdentity: 'dev-1', generate: true }, 'test');
    for (const role of ['admin', 'technician', 'auditor'] as const) {
      const { b } = await login(`${role}1`, role);
      for (const r of PAGE_ROUTES) {
        if (r.path === '/events') continue; // a stream; covered below
        const path = r.path.replace(':id', r.path.startsWith('/alerts') ? '999' : 'dev-1');
        const res = await b.page(r.method, path, r.sample);
        const where = `${role} ${r.method} ${r.path}`;
        if (!r.access.roles.includes(role)) {
          assert.equal(res.status, 403, where);
          assert.match(res.text, /this needs the role/, where);
        } else {
          // The PSK wizard answers a refused device (here: the id another role made already) with the form
          // again, its fields and every problem (400), instead of a redirect; so do the configuration forms, with
          // what was typed: a change this process cannot apply (409: no supervisor here), an unknown zone (400).
          const inPlace: Record<string, number> = {
            '/onboarding/psk': 400,
            '/configuration/apply': 409,
            '/configuration/time': 400,
          };
          const ok = [200, 303, ...(inPlace[r.path] ? [inPlace[r.path] as number] : [])];
          assert.ok(ok.includes(res.status), `${where}: ${res.status}`);
        }
      }
      if (role === 'auditor') {
        for (const path of ['/', '/devices/dev-1', '/onboarding', '/alerts', '/segments', '/audit']) {
          const html = (await b.page('GET', path)).text;
          const forms = html.match(/<form method="post"[^>]*>/g) ?? [];
          assert.deepEqual(forms, ['<form method="post" action="/logout" class="inline">'], path);
        }
      }
    }
    assert.equal(core.store.devices.get('dev-1')?.state, 'active', 'no role changed the device by accident');
    const byAuditor = [...core.store.audit.iterate()].filter((e) => e.actor === 'ui:auditor1');
    assert.deepEqual(
      byAuditor.map((e) => e.action),
      ['user.mfa.enrol', 'user.login', 'audit.export'],
      'an auditor leaves only reads in the log',
    );
  });

  it('refuses a form without the CSRF token, with a wrong one, or sent from another site', async (t) => {
    const { core, login } = site(t);
    core.identity.addPskDevice({ id: 'dev-1', pskIdentity: 'dev-1', generate: true }, 'test');
    const { b } = await login('tech', 'technician');
    const q = { reason: 'forged' };
    assert.equal((await b.page('POST', '/devices/dev-1/quarantine', q, { csrf: null })).status, 403);
    assert.equal((await b.page('POST', '/devices/dev-1/quarantine', q, { csrf: 'wrong' })).status, 403);
    assert.equal((await b.page('POST', '/devices/dev-1/quarantine', q, { headers: FOREIGN })).status, 403);
    assert.equal(
      (await b.page('POST', '/devices/dev-1/quarantine', q, { headers: { origin: 'null' } })).status,
      403,
      'an opaque origin is not ours',
    );
    assert.equal(core.store.devices.get('dev-1')?.state, 'active');
    const ok = await b.page('POST', '/devices/dev-1/quarantine', q, {
      headers: { origin: 'http://localhost', 'sec-fetch-site': 'same-origin' },
    });
    assert.equal(ok.status, 303);
    assert.equal(core.store.devices.get('dev-1')?.state, 'quarantined');
    // Login forms too: a cross-site page cannot log a victim into the attacker's account.
    const anon = new Browser(b.app);
    const cross = await anon.page(
      'POST',
      '/login',
      { username: 'tech', password: PASSWORD },
      { headers: FOREIGN },
    );
    assert.equal(cross.status, 403);
    assert.equal(anon.cookie, '');
  });

  it('refuses an oversized body before reading it, and goes on serving', async (t) => {
    const { login } = site(t);
    const { b } = await login('tech', 'technician');
    const big = await b.page('POST', '/onboarding/psk', {
      id: 'x',
      pskIdentity: 'x',
      name: 'n'.repeat(200_000),
    });
    assert.equal(big.status, 413);
    assert.match(big.text, /ERR_UI_TOO_LARGE/);
    assert.equal((await b.page('GET', '/')).status, 200);
  });

  it('gives a password-only session no page, only the second factor', async (t) => {
    const { core, app } = site(t);
    await core.users.createUser({ username: 'tech', role: 'technician', password: PASSWORD }, 'test');
    core.identity.addPskDevice({ id: 'dev-1', pskIdentity: 'dev-1', generate: true }, 'test');
    const b = new Browser(app);
    const login = await b.page('POST', '/login', { username: 'tech', password: PASSWORD }, { csrf: null });
    assert.equal(login.location, '/login/enroll');
    for (const path of ['/', '/devices/dev-1', '/users']) {
      assert.equal((await b.page('GET', path)).location, '/login/enroll', path);
    }
    const q = await b.page('POST', '/devices/dev-1/quarantine', { reason: 'x' }, { csrf: null });
    assert.equal(q.location, '/login/enroll');
    assert.equal(core.store.devices.get('dev-1')?.state, 'active');
    const enrol = await b.page('GET', '/login/enroll');
    assert.match(enrol.text, /<svg/);
    assert.equal(enrol.headers.get('cache-control'), 'no-store');
  });

  it('makes the login page of an address that keeps failing wait, saying so, and never says an account is locked', async (t) => {
    const { core, app, clock } = site(t);
    await core.users.createUser({ username: 'tech', role: 'technician', password: PASSWORD }, 'test');
    const b = new Browser(app, '192.0.2.66');
    let last = await b.page(
      'POST',
      '/login',
      { username: 'tech', password: 'wrong password' },
      { csrf: null },
    );
    for (let i = 0; i < 5; i++)
      last = await b.page('POST', '/login', { username: 'tech', password: 'wrong password' }, { csrf: null });
    assert.equal(last.status, 429);
    assert.match(last.text, /too many failed attempts from this address/);
    clock.advance(2000);
    const right = await b.page('POST', '/login', { username: 'tech', password: PASSWORD }, { csrf: null });
    assert.equal(right.status, 401, 'the right password from the guessing address does not open the account');
    assert.doesNotMatch(right.text, /locked/);
  });

  it('ends a page session after 15 idle minutes', async (t) => {
    const { login, clock } = site(t);
    const { b } = await login('tech', 'technician');
    assert.equal((await b.page('GET', '/')).status, 200);
    clock.advance(15 * 60_000 + 1000);
    assert.equal((await b.page('GET', '/')).location, '/login');
  });

  it('decommissions only after the password and a fresh code in the same form', async (t) => {
    const { core, login, totp } = site(t);
    core.identity.addPskDevice({ id: 'dev-1', pskIdentity: 'dev-1', generate: true }, 'test');
    const { b, secret } = await login('root', 'admin');
    const wrong = await b.page('POST', '/devices/dev-1/decommission', {
      password: 'not mine',
      code: totp(secret),
    });
    assert.equal(wrong.status, 303);
    assert.equal(wrong.flash?.kind, 'error');
    assert.equal(core.store.devices.get('dev-1')?.state, 'active');
    const right = await b.page('POST', '/devices/dev-1/decommission', {
      password: PASSWORD,
      code: totp(secret),
    });
    assert.equal(right.flash?.kind, 'ok', JSON.stringify(right.flash));
    assert.equal(core.store.devices.get('dev-1')?.state, 'decommissioned');
    const entry = [...core.store.audit.iterate()].find((e) => e.action === 'device.decommission');
    assert.equal(entry?.actor, 'ui:root');
  });

  it('lifts a rate limit only for an admin who re-authenticates in the form (the policy service, audited)', async (t) => {
    const { core, login, totp } = site(t);
    core.identity.addPskDevice({ id: 'dev-1', pskIdentity: 'dev-1', generate: true }, 'test');
    const until = new Date(core.clock.now() + 3_600_000).toISOString();
    core.store.rateLimits.put({ deviceId: 'dev-1', perSecond: 1, until, reason: 'test' }, until);
    const tech = (await login('tech', 'technician')).b;
    assert.doesNotMatch((await tech.page('GET', '/devices/dev-1')).text, /unlimit/);
    const refused = await tech.page('POST', '/devices/dev-1/unlimit', { password: PASSWORD, code: '000000' });
    assert.equal(refused.status, 403, 'a technician cannot lift it');
    const { b, secret } = await login('root', 'admin');
    assert.match((await b.page('GET', '/devices/dev-1')).text, /action="\/devices\/dev-1\/unlimit"/);
    const wrong = await b.page('POST', '/devices/dev-1/unlimit', {
      password: 'not mine',
      code: totp(secret),
    });
    assert.equal(wrong.flash?.kind, 'error');
    assert.ok(core.policy.rateLimit('dev-1'), 'a wrong password lifts nothing');
    const right = await b.page('POST', '/devices/dev-1/unlimit', { password: PASSWORD, code: totp(secret) });
    assert.equal(right.flash?.kind, 'ok', JSON.stringify(right.flash));
    assert.equal(core.policy.rateLimit('dev-1'), undefined);
    const entry = [...core.store.audit.iterate()].find((e) => e.action === 'device.rate-limit.lift');
    assert.equal(entry?.actor, 'ui:root');
    assert.equal(entry?.target, 'dev-1');
  });

  it('shows a generated PSK once, uncached, and nowhere else (not in the flash, the log or the device page)', async (t) => {
    const { core, login } = site(t);
    const { b } = await login('tech', 'technician');
    const res = await b.page('POST', '/onboarding/psk', {
      id: 'boiler-1',
      pskIdentity: 'boiler-1',
      pskHex: '',
    });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('cache-control'), 'no-store');
    const psk = /id="psk-value">\s*([0-9a-f]+)/.exec(res.text)?.[1] as string;
    assert.match(psk, /^[0-9a-f]{32,}$/);
    assert.match(res.text, /<svg/, 'and as a QR code');
    assert.equal(res.flash, undefined);
    assert.doesNotMatch((await b.page('GET', '/devices/boiler-1')).text, new RegExp(psk));
    assert.doesNotMatch(JSON.stringify([...core.store.audit.iterate()]), new RegExp(psk));
    const bad = await b.page('POST', '/onboarding/psk', { id: 'x', pskIdentity: 'x', pskHex: 'zz' });
    assert.equal(bad.status, 400);
    assert.match(bad.text, /Key must be 16 to 64 bytes written as hex/);
    assert.equal(core.store.devices.get('x'), undefined);
    // Every problem at once, the fields kept — but never a typed key sent back.
    const worse = await b.page('POST', '/onboarding/psk', {
      id: '-bad id',
      pskIdentity: '',
      name: 'Boiler room',
      pskHex: 'abcd',
    });
    assert.equal(worse.status, 400);
    assert.match(worse.text, /Device id/);
    assert.match(worse.text, /PSK identity is required/);
    assert.match(worse.text, /Key must be 16 to 64 bytes/);
    assert.match(worse.text, /value="-bad id"/);
    assert.match(worse.text, /value="Boiler room"/);
    assert.doesNotMatch(worse.text, /value="abcd"/);
  });

  it('escapes what devices and people typed, and never redirects to another host', async (t) => {
    const { core, login } = site(t);
    core.identity.addPskDevice(
      { id: 'dev-1', pskIdentity: 'dev-1', generate: true, name: '<script>alert(1)</script>' },
      'test',
    );
    const { b } = await login('tech', 'technician');
    const list = await b.page('GET', '/devices?q=%3Cscript');
    assert.doesNotMatch(list.text, /<script>alert/);
    assert.match(list.text, /&lt;script&gt;alert\(1\)&lt;\/script&gt;/);
    assert.match(list.headers.get('content-security-policy') ?? '', /script-src 'self'/);
    // A failed form returns to the page it came from — if that page is ours.
    const evil = await b.page(
      'POST',
      '/devices/dev-1/approve',
      {},
      {
        headers: { referer: 'https://evil.example/phish' },
      },
    );
    assert.equal(evil.flash?.kind, 'error');
    assert.equal(evil.location, '/');
    const ours = await b.page(
      'POST',
      '/devices/dev-1/approve',
      {},
      {
        headers: { referer: 'http://localhost/devices?q=dev' },
      },
    );
    assert.equal(ours.location, '/devices?q=dev');
  });

  it('accepts nothing but the tamper acknowledgement while the enclosure lock is on', async (t) => {
    const { core, login } = site(t);
    core.identity.addPskDevice({ id: 'dev-1', pskIdentity: 'dev-1', generate: true }, 'test');
    const { alert } = core.store.alerts.raise(
      {
        deviceId: null,
        severity: 'high',
        kind: 'hardware.tamper',
        explanation: 'enclosure opened',
        evidence: { lockUi: true },
        dedupeKey: 'hardware.tamper',
      },
      new Date(core.clock.now()).toISOString(),
    );
    const { b } = await login('tech', 'technician');
    assert.equal((await b.page('POST', '/devices/dev-1/quarantine', { reason: 'x' })).status, 423);
    assert.match((await b.page('GET', '/alerts')).text, /enclosure was opened/);
    assert.equal((await b.page('POST', `/alerts/${alert.id}/ack`)).status, 303);
    assert.equal((await b.page('POST', '/devices/dev-1/quarantine', { reason: 'x' })).status, 303);
  });

  it('streams alert and device changes to open pages, and ends the stream with the session', async (t) => {
    const { core, app, login } = site(t);
    const { b } = await login('tech', 'technician');
    const res = await app.request('/events', { headers: { cookie: b.cookie } });
    assert.equal(res.headers.get('content-type'), 'text/event-stream');
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    const next = async () => new TextDecoder().decode((await reader.read()).value);
    core.store.alerts.raise(
      {
        deviceId: null,
        severity: 'high',
        kind: 'test',
        explanation: 'something happened',
        evidence: {},
        dedupeKey: 'test',
      },
      new Date(core.clock.now()).toISOString(),
    );
    const event = await next();
    assert.match(event, /event: alerts\ndata: \{"openAlerts":1,"highAlerts":1\}/);
    await b.page('POST', '/logout');
    await reader.cancel();
  });
});
