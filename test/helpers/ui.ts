/** In-process technician UI sessions for tests: a site (core + UI app on a manual clock) and a cookie jar. */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { generateSync } from 'otplib';
import { ManualClock } from '../../gateway/src/clock.ts';
import { parseConfig } from '../../gateway/src/config/index.ts';
import { Core } from '../../gateway/src/core.ts';
import type { Role } from '../../gateway/src/store/index.ts';
import { createUiApp } from '../../ui/src/app.ts';
import { tempDir } from './tmp.ts';

export const PASSWORD = 'correct horse battery staple';

/**
 * A browser: keeps the session cookie, sends JSON and (once known) the CSRF token. `address` is the client
 * address the UI sees (as the socket's remote address would be); without it requests come from "local".
 */
export class Browser {
  cookie = '';
  csrf = '';
  constructor(
    readonly app: ReturnType<typeof createUiApp>,
    readonly address?: string,
  ) {}

  private get env() {
    return this.address ? { incoming: { socket: { remoteAddress: this.address } } } : undefined;
  }

  async call(method: string, path: string, json?: unknown, opts: { csrf?: string | null } = {}) {
    const headers: Record<string, string> = {};
    if (this.cookie) headers.cookie = this.cookie;
    const csrf = opts.csrf === undefined ? this.csrf : opts.csrf;
    if (csrf) headers['x-csrf-token'] = csrf;
    if (json !== undefined) headers['content-type'] = 'application/json';
    const res = await this.app.request(
      path,
      { method, headers, body: json === undefined ? undefined : JSON.stringify(json) },
      this.env,
    );
    const set = res.headers.get('set-cookie');
    if (set) {
      const m = /__Host-portcullis=([^;]*)/.exec(set);
      this.cookie = m?.[1] ? `__Host-portcullis=${m[1]}` : '';
    }
    const text = await res.text();
    let data: Record<string, unknown> = {};
    try {
      data = JSON.parse(text) as Record<string, unknown>;
    } catch {
      // not JSON
    }
    return { status: res.status, data, setCookie: set };
  }

  /**
   * A page request as a browser sends it: form-encoded fields with the session's CSRF token (unless
   * `csrf: null`), the session cookie, and any extra headers (Origin, Sec-Fetch-Site, Referer).
   */
  async page(
    method: 'GET' | 'POST',
    path: string,
    fields?: Record<string, string>,
    opts: { csrf?: string | null; headers?: Record<string, string> } = {},
  ) {
    const headers: Record<string, string> = { ...opts.headers };
    if (this.cookie) headers.cookie = this.cookie;
    let body: string | undefined;
    if (method === 'POST') {
      headers['content-type'] = 'application/x-www-form-urlencoded';
      const csrf = opts.csrf === undefined ? this.csrf : opts.csrf;
      body = new URLSearchParams({ ...(csrf ? { _csrf: csrf } : {}), ...fields }).toString();
    }
    const res = await this.app.request(path, { method, headers, body }, this.env);
    const cookies = res.headers.getSetCookie();
    const session = cookies.map((c) => /^__Host-portcullis=([^;]*)/.exec(c)).find(Boolean);
    if (session) this.cookie = session[1] ? `__Host-portcullis=${session[1]}` : '';
    const flash = cookies.map((c) => /^__Host-portcullis-flash=([^;]+)/.exec(c)).find(Boolean);
    return {
      status: res.status,
      location: res.headers.get('location'),
      headers: res.headers,
      text: await res.text(),
      flash: flash?.[1]
        ? (JSON.parse(decodeURIComponent(flash[1])) as { kind: string; text: string })
        : undefined,
    };
  }
}

export function site(t: Parameters<typeof tempDir>[0], config: Record<string, unknown> = {}) {
  const dir = tempDir(t);
  const clock = new ManualClock(Date.UTC(2026, 10, 25, 9));
  const core = Core.open(parseConfig({ dataDir: join(dir, 'var'), ...config }, dir), clock);
  t.after(() => core.close());
  const app = createUiApp(core);
  const totp = (secret: string, offsetSeconds = 0) =>
    generateSync({ secret, epoch: Math.floor(clock.now() / 1000) + offsetSeconds });
  const secrets = new Map<string, string>();
  /** A user of `role`, enrolled (the first time), logged in through the HTTP flow. */
  const login = async (username: string, role: Role) => {
    if (!core.users.get(username))
      await core.users.createUser({ username, role, password: PASSWORD }, 'test');
    const b = new Browser(app);
    assert.equal((await b.call('POST', '/auth/login', { username, password: PASSWORD })).status, 200);
    let recoveryCodes: string[] = [];
    let secret = secrets.get(username);
    let done: Awaited<ReturnType<Browser['call']>>;
    if (secret) {
      done = await b.call('POST', '/auth/totp', { code: totp(secret) });
    } else {
      secret = (await b.call('POST', '/auth/totp/enroll')).data.secret as string;
      secrets.set(username, secret);
      done = await b.call('POST', '/auth/totp/confirm', { code: totp(secret) });
      recoveryCodes = done.data.recoveryCodes as string[];
    }
    assert.equal(done.status, 200, JSON.stringify(done.data));
    b.csrf = done.data.csrf as string;
    clock.advance(31_000); // the next code is a new time step
    return { b, secret, recoveryCodes };
  };
  return { core, app, clock, totp, login };
}
