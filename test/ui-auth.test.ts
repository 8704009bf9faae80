/**
 * The technician UI's security, in process (hono's app.request): first-boot setup without a default password,
 * argon2id login with lockout and per-address rate limit, TOTP with replay protection and recovery codes,
 * sessions (idle and absolute expiry, fixation), CSRF, re-authentication, and the role × route matrix.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { API_ROUTES } from '../ui/src/routes/api.ts';
import { Browser, PASSWORD, site } from './helpers/ui.ts';

describe('UI first-boot setup', () => {
  it('has no default account: setup needs the one-time code from the console, then closes for good', async (t) => {
    const { core, app } = site(t);
    const b = new Browser(app);
    assert.equal((await b.call('GET', '/auth/state')).data.setup, true);
    assert.equal(
      (await b.call('POST', '/auth/login', { username: 'admin', password: 'admin' })).status,
      401,
      'no default password',
    );
    const code = core.users.issueSetupCode() as string;
    const wrong = await b.call('POST', '/auth/setup', {
      code: 'AAAAA-BBBBB',
      username: 'root',
      password: PASSWORD,
    });
    assert.equal(wrong.status, 403);
    assert.equal(wrong.data.error && (wrong.data.error as { code: string }).code, 'ERR_USER_SETUP');
    const weak = await b.call('POST', '/auth/setup', { code, username: 'root', password: 'short' });
    assert.equal(weak.status, 400);
    assert.match(JSON.stringify(weak.data), /at least 12 characters/);
    const ok = await b.call('POST', '/auth/setup', {
      code: code.toLowerCase(),
      username: 'root',
      password: PASSWORD,
    });
    assert.equal(ok.status, 201);
    assert.equal(ok.data.role, 'admin');
    const again = await b.call('POST', '/auth/setup', { code, username: 'second', password: PASSWORD });
    assert.equal(again.status, 403, 'setup is closed once an account exists');
    assert.equal(core.users.issueSetupCode(), null);
    const audit = JSON.stringify([...core.store.audit.iterate()]);
    assert.doesNotMatch(audit, new RegExp(PASSWORD));
    assert.doesNotMatch(audit, new RegExp(code));
  });
});

describe('UI login and second factor', () => {
  it('gives a password-only session nothing but enrolment; the API needs the second factor', async (t) => {
    const { core, app } = site(t);
    await core.users.createUser({ username: 'tech', role: 'technician', password: PASSWORD }, 'test');
    const b = new Browser(app);
    const login = await b.call('POST', '/auth/login', { username: 'tech', password: PASSWORD });
    assert.deepEqual(login.data, { next: 'enroll' });
    assert.match(login.setCookie ?? '', /__Host-portcullis=.*; Path=\/; HttpOnly; Secure; SameSite=Strict/);
    const api = await b.call('GET', '/api/v1/devices');
    assert.equal(api.status, 401);
    assert.equal((api.data.error as { code: string }).code, 'ERR_UI_MFA_REQUIRED');
  });

  it('accepts a TOTP code once (no replay), a recovery code once, and swaps the session token after MFA', async (t) => {
    const { app, login, totp, clock } = site(t);
    const { secret, recoveryCodes } = await login('tech', 'technician');
    assert.equal(recoveryCodes.length, 10);
    const b = new Browser(app);
    await b.call('POST', '/auth/login', { username: 'tech', password: PASSWORD });
    const preMfa = b.cookie;
    const code = totp(secret);
    const ok = await b.call('POST', '/auth/totp', { code });
    assert.equal(ok.status, 200);
    assert.notEqual(b.cookie, preMfa, 'a new session token after the second factor');
    const stale = new Browser(app);
    stale.cookie = preMfa;
    assert.equal((await stale.call('GET', '/api/v1/status')).status, 401, 'the pre-MFA token is dead');
    // The same code again, in another login within its time step: refused.
    const c2 = new Browser(app);
    await c2.call('POST', '/auth/login', { username: 'tech', password: PASSWORD });
    assert.equal((await c2.call('POST', '/auth/totp', { code })).status, 401, 'a TOTP code works once');
    assert.equal((await c2.call('POST', '/auth/totp', { code: recoveryCodes[0] })).status, 200);
    const c3 = new Browser(app);
    await c3.call('POST', '/auth/login', { username: 'tech', password: PASSWORD });
    assert.equal(
      (await c3.call('POST', '/auth/totp', { code: recoveryCodes[0] })).status,
      401,
      'a recovery code works once',
    );
    clock.advance(31_000);
    assert.equal((await c3.call('POST', '/auth/totp', { code: totp(secret) })).status, 200);
    // An enrolled account cannot be re-enrolled from a password-only session (that would bypass MFA).
    const c4 = new Browser(app);
    await c4.call('POST', '/auth/login', { username: 'tech', password: PASSWORD });
    assert.equal((await c4.call('POST', '/auth/totp/enroll')).status, 401);
  });

  it('throttles the failing address, not the account, and audits failures per address per minute without the password', async (t) => {
    const { core, app, clock } = site(t);
    await core.users.createUser({ username: 'tech', role: 'technician', password: PASSWORD }, 'test');
    const b = new Browser(app, '192.0.2.66');
    for (let i = 0; i < 5; i++) {
      assert.equal(
        (await b.call('POST', '/auth/login', { username: 'tech', password: `wrong password ${i}` })).status,
        401,
      );
    }
    const throttled = await b.call('POST', '/auth/login', { username: 'tech', password: PASSWORD });
    assert.equal(throttled.status, 429, 'the guessing address waits');
    assert.equal((throttled.data.error as { code: string }).code, 'ERR_USER_THROTTLED');
    clock.advance(1000);
    const suspect = await b.call('POST', '/auth/login', { username: 'tech', password: PASSWORD });
    assert.equal(suspect.status, 401, 'a locked account stays shut to the address that locked it');
    const unknown = await new Browser(app, '192.0.2.67').call('POST', '/auth/login', {
      username: 'nobody',
      password: PASSWORD,
    });
    assert.deepEqual(
      [unknown.status, unknown.data],
      [suspect.status, suspect.data],
      'unknown names look alike',
    );
    // No second factor enrolled: the password alone opens a locked account for nobody, until the lock lapses.
    const other = new Browser(app, '192.0.2.10');
    assert.equal(
      (await other.call('POST', '/auth/login', { username: 'tech', password: PASSWORD })).status,
      401,
    );
    clock.advance(15 * 60_000 + 1000);
    assert.equal(
      (await other.call('POST', '/auth/login', { username: 'tech', password: PASSWORD })).status,
      200,
    );
    core.users.flushFailureAudit();
    const audit = [...core.store.audit.iterate()];
    const failed = audit.filter((e) => e.action === 'user.login.failed');
    assert.deepEqual(
      failed.map((e) => [e.target, (JSON.parse(e.details) as { count: number }).count]),
      [
        ['192.0.2.66', 6],
        ['192.0.2.67', 1],
        ['192.0.2.10', 1],
      ],
      'one entry per address per minute, with the count',
    );
    assert.equal(audit.filter((e) => e.action === 'user.login.locked').length, 1);
    assert.doesNotMatch(JSON.stringify(audit), /wrong password|nobody|correct horse/);
  });

  it('rate-limits login attempts per client address', async (t) => {
    const { app } = site(t);
    const b = new Browser(app);
    const codes: number[] = [];
    for (let i = 0; i < 12; i++)
      codes.push((await b.call('POST', '/auth/login', { username: `u${i}`, password: 'x' })).status);
    assert.deepEqual(codes.slice(-2), [429, 429]);
  });
});

describe('UI sessions and CSRF', () => {
  it('refuses state changes without the CSRF token or with a wrong one; reads need none', async (t) => {
    const { core, login } = site(t);
    core.identity.addPskDevice({ id: 's1', pskIdentity: 's1', pskHex: '11'.repeat(16) }, 'test');
    const { b } = await login('tech', 'technician');
    assert.equal((await b.call('GET', '/api/v1/devices')).status, 200);
    const none = await b.call('POST', '/api/v1/devices/s1/quarantine', { reason: 'x' }, { csrf: null });
    assert.equal(none.status, 403);
    assert.equal((none.data.error as { code: string }).code, 'ERR_UI_CSRF');
    assert.equal(
      (await b.call('POST', '/api/v1/devices/s1/quarantine', { reason: 'x' }, { csrf: 'forged' })).status,
      403,
    );
    assert.equal(core.store.devices.get('s1')?.state, 'active', 'nothing changed');
    const ok = await b.call('POST', '/api/v1/devices/s1/quarantine', { reason: 'suspicious' });
    assert.equal(ok.status, 200);
    assert.equal(core.store.devices.get('s1')?.state, 'quarantined');
    const entry = [...core.store.audit.iterate()].find((e) => e.action === 'device.quarantine');
    assert.equal(entry?.actor, 'ui:tech', 'audited with the person');
    const bad = await b.call('POST', '/api/v1/devices/s1/release', { reason: 7 });
    assert.equal(bad.status, 400);
  });

  it('expires a session after 15 idle minutes and after 8 hours whatever the activity; logout ends it', async (t) => {
    const { login, clock } = site(t);
    const { b } = await login('tech', 'technician');
    clock.advance(14 * 60_000);
    assert.equal((await b.call('GET', '/api/v1/status')).status, 200);
    clock.advance(16 * 60_000);
    assert.equal((await b.call('GET', '/api/v1/status')).status, 401, 'idle timeout');
    const second = await login('tech', 'technician');
    for (let i = 0; i < 36; i++) {
      clock.advance(14 * 60_000);
      if ((await second.b.call('GET', '/api/v1/status')).status !== 200) break;
    }
    assert.equal((await second.b.call('GET', '/api/v1/status')).status, 401, 'absolute timeout');
    const third = await login('tech', 'technician');
    assert.equal((await third.b.call('POST', '/auth/logout', {})).status, 200);
    assert.equal((await third.b.call('GET', '/api/v1/status')).status, 401, 'logged out');
  });
});

describe('UI authorisation: role × route', () => {
  it('lets each role do exactly what the route table says, and nothing else (an auditor changes nothing)', async (t) => {
    const { login, totp, clock } = site(t);
    for (const role of ['admin', 'technician', 'auditor'] as const) {
      const { b, secret } = await login(`${role}1`, role);
      for (const r of API_ROUTES) {
        if (r.method === 'POST' && r.path === '/api/v1/firewall/apply') continue; // would change this host's firewall
        const path = r.path.replace(':id', r.path.includes('alerts') ? '999' : 'no-such-device');
        const res = await b.call(r.method, path, r.method === 'POST' ? (r.sample ?? {}) : undefined);
        const allowed = r.access.roles.includes(role);
        const where = `${role} ${r.method} ${r.path}`;
        if (!allowed) {
          assert.equal(res.status, 403, where);
          assert.equal((res.data.error as { code: string }).code, 'ERR_UI_FORBIDDEN', where);
        } else if (r.access.reauth) {
          assert.equal(
            (res.data.error as { code: string } | undefined)?.code,
            'ERR_UI_REAUTH_REQUIRED',
            where,
          );
        } else {
          assert.notEqual(res.status, 403, where);
          assert.ok(res.status < 500, `${where}: ${res.status} ${JSON.stringify(res.data)}`);
        }
      }
      if (role === 'admin') {
        // Dangerous actions after re-authentication (password and a fresh code).
        assert.equal(
          (await b.call('POST', '/auth/reauth', { password: PASSWORD, code: totp(secret) })).status,
          200,
        );
        const created = await b.call('POST', '/api/v1/users', {
          username: 'newtech',
          role: 'technician',
          password: 'another long password',
        });
        assert.equal(created.status, 201);
        clock.advance(5 * 60_000 + 1000);
        const late = await b.call('POST', '/api/v1/users', {
          username: 'late',
          role: 'auditor',
          password: 'another long password',
        });
        assert.equal(
          (late.data.error as { code: string }).code,
          'ERR_UI_REAUTH_REQUIRED',
          're-authentication expires',
        );
      }
    }
  });

  it('refuses a wrong password or code at re-authentication', async (t) => {
    const { login } = site(t);
    const { b } = await login('boss', 'admin');
    assert.equal(
      (await b.call('POST', '/auth/reauth', { password: 'not the password!', code: '000000' })).status,
      401,
    );
    assert.equal((await b.call('POST', '/auth/reauth', { password: PASSWORD, code: '000000' })).status, 401);
  });
});

describe('UI API: onboarding and the ruleset review', () => {
  it('creates a PSK device and shows the generated key once, uncached; refuses a bad body whole', async (t) => {
    const { core, login } = site(t);
    const { b } = await login('tech', 'technician');
    const bad = await b.call('POST', '/api/v1/devices', {
      id: 'x',
      pskIdentity: 'x',
      generatePsk: true,
      pskHex: '00'.repeat(16),
    });
    assert.equal(bad.status, 400);
    assert.equal(core.store.devices.get('x'), undefined);
    const res = await b.app.request('/api/v1/devices', {
      method: 'POST',
      headers: { cookie: b.cookie, 'x-csrf-token': b.csrf, 'content-type': 'application/json' },
      body: JSON.stringify({ id: 'boiler-7', pskIdentity: 'boiler-7', generatePsk: true }),
    });
    assert.equal(res.status, 201);
    assert.equal(res.headers.get('cache-control'), 'no-store');
    const json = (await res.json()) as { psk: string; device: { state: string } };
    assert.match(json.psk, /^[0-9a-f]{32}$/);
    assert.equal(json.device.state, 'active');
    assert.doesNotMatch(
      JSON.stringify([...core.store.audit.iterate()]),
      new RegExp(json.psk),
      'the key is in no audit entry',
    );
    assert.equal(
      ((await b.call('GET', '/api/v1/devices/boiler-7')).data as { credentials: { lookup: string }[] })
        .credentials[0]?.lookup,
      'boiler-7',
    );
  });

  it('shows the compiled ruleset and its diff against the one in force before anyone applies it', async (t) => {
    const { login } = site(t);
    const { b } = await login('auditor1', 'auditor');
    const r = await b.call('GET', '/api/v1/firewall/render');
    assert.equal(r.status, 200);
    assert.equal(r.data.inForce, null);
    assert.equal(r.data.changed, true);
    const diff = r.data.diff as { iptables: string[] };
    assert.ok(diff.iptables.includes('+:INPUT DROP [0:0]'), diff.iptables.slice(0, 5).join('\n'));
  });
});

describe('UI API documentation', () => {
  it('documents every route of the role table in docs/openapi.yaml, with the same roles', () => {
    const doc = parse(readFileSync(new URL('../docs/openapi.yaml', import.meta.url), 'utf8')) as {
      paths: Record<string, Record<string, { 'x-roles'?: string[]; 'x-reauth'?: boolean }>>;
    };
    for (const r of API_ROUTES) {
      const op = doc.paths[r.path.replace(':id', '{id}')]?.[r.method.toLowerCase()];
      assert.ok(op, `${r.method} ${r.path} is documented`);
      assert.deepEqual(
        [...(op['x-roles'] ?? [])].sort(),
        [...r.access.roles].sort(),
        `${r.method} ${r.path} roles`,
      );
      assert.equal(Boolean(op['x-reauth']), Boolean(r.access.reauth), `${r.method} ${r.path} re-auth`);
    }
  });
});
