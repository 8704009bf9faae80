/**
 * The UI's one access table (ui/src/access.ts): every route the app registers has its row, a route registered
 * around the table is refused at request time (fail closed), CSRF follows from each row, and a technician or an
 * auditor is refused every admin page and admin API route — by the same row.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { lookupRoute, signedInRule, UI_ROUTES } from '../ui/src/access.ts';
import { site } from './helpers/ui.ts';

describe('UI access table', () => {
  it('has a row for every route the app registers, and every signed-in row is registered', (t) => {
    const { app } = site(t);
    const registered = app.routes.filter((r) => r.method !== 'ALL');
    assert.ok(registered.length > 50, `${registered.length} routes`);
    const missing = registered
      .filter((r) => !lookupRoute(r.method, r.path))
      .map((r) => `${r.method} ${r.path}`);
    assert.deepEqual(missing, []);
    const known = new Set(registered.map((r) => `${r.method} ${r.path}`));
    const unregistered = UI_ROUTES.filter((r) => r.access && !known.has(`${r.method} ${r.path}`)).map(
      (r) => `${r.method} ${r.path}`,
    );
    assert.deepEqual(unregistered, [], 'a row for a route that does not exist is a typo');
  });

  it('refuses a route registered without a row, and will not register a page or API route missing from it', async (t) => {
    const { app } = site(t);
    app.get('/around-the-table', (c) => c.text('should never be served'));
    const res = await app.request('/around-the-table');
    assert.equal(res.status, 403);
    assert.match(await res.text(), /ERR_UI_FORBIDDEN/);
    assert.equal((await app.request('/no-such-page')).status, 404, 'unknown paths stay 404');
    assert.throws(
      () => signedInRule('page', 'POST', '/devices/:id/format-disk'),
      /missing from the UI's access table/,
    );
    assert.throws(
      () => signedInRule('api', 'GET', '/login'),
      /missing/,
      'a public route is not a signed-in one',
    );
  });

  it('states CSRF for every row: none only for reads, the form token for pages, the header for the API', () => {
    for (const r of UI_ROUTES) {
      const where = `${r.method} ${r.path}`;
      if (r.method === 'GET') assert.equal(r.csrf, 'none', where);
      else assert.notEqual(r.csrf, 'none', where);
      if (r.surface === 'page' && r.method === 'POST') assert.equal(r.csrf, 'form', where);
      if (r.surface === 'api' && r.method === 'POST') assert.equal(r.csrf, 'header', where);
      if (r.access?.reauth)
        assert.deepEqual(r.access.roles, ['admin'], `${where}: re-auth rows are admin rows`);
    }
  });

  it('refuses a technician and an auditor every admin page and API route, from the same row', async (t) => {
    const { login } = site(t);
    const adminOnly = UI_ROUTES.filter((r) => r.access && !r.access.roles.includes('technician'));
    assert.ok(adminOnly.some((r) => r.surface === 'page') && adminOnly.some((r) => r.surface === 'api'));
    for (const role of ['technician', 'auditor'] as const) {
      const { b } = await login(`${role}1`, role);
      for (const r of adminOnly) {
        const path = r.path.replace(':id', 'x');
        const where = `${role} ${r.method} ${r.path}`;
        const res =
          r.surface === 'page'
            ? await b.page(r.method, path, (r.sample as Record<string, string> | undefined) ?? {})
            : await b.call(r.method, path, r.method === 'POST' ? (r.sample ?? {}) : undefined);
        assert.equal(res.status, 403, where);
        const text = 'text' in res ? res.text : JSON.stringify(res.data);
        assert.match(text, /this needs the role admin/, where);
      }
    }
  });
});
