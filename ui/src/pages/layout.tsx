import { raw } from 'hono/html';
import type { Child, FC } from 'hono/jsx';
import type { Role } from '../../../gateway/src/store/index.ts';
import { Csrf, Flash } from './components.tsx';

export interface Viewer {
  username: string;
  role: Role;
  csrf: string;
}

export type FlashMessage = { kind: 'ok' | 'error'; text: string };

const NAV: { href: string; label: string; roles?: readonly Role[] }[] = [
  { href: '/', label: 'Dashboard' },
  { href: '/devices', label: 'Devices' },
  { href: '/onboarding', label: 'Onboarding' },
  { href: '/alerts', label: 'Alerts' },
  { href: '/segments', label: 'Segments' },
  { href: '/audit', label: 'Audit log' },
  { href: '/compliance', label: 'Compliance' },
  { href: '/health', label: 'Health' },
  { href: '/logs', label: 'Log' },
  { href: '/diagnostics', label: 'Diagnostics', roles: ['admin'] },
  { href: '/maintenance', label: 'Maintenance' },
  { href: '/fleet', label: 'Fleet' },
  { href: '/configuration', label: 'Config', roles: ['admin'] },
  { href: '/tokens', label: 'Tokens', roles: ['admin'] },
  { href: '/users', label: 'Users', roles: ['admin'] },
];

export const Layout: FC<{
  title: string;
  path?: string;
  viewer?: Viewer | undefined;
  flash?: FlashMessage | undefined;
  /** Subscribe to live updates (alerts, device states). */
  live?: boolean;
  children?: Child;
}> = ({ title, path, viewer, flash, live, children }) => {
  const current = (href: string) =>
    href === '/' ? path === '/' : path === href || path?.startsWith(`${href}/`);
  return (
    <>
      {raw('<!doctype html>')}
      <html lang="en">
        <head>
          <meta charset="utf-8" />
          <meta name="viewport" content="width=device-width, initial-scale=1" />
          <title>{`${title} · Portcullis`}</title>
          <link rel="icon" href="/static/favicon.svg" type="image/svg+xml" />
          <link rel="stylesheet" href="/static/app.css" />
          <script src="/static/app.js" defer />
        </head>
        <body data-events={live && viewer ? '1' : undefined}>
          <a class="skip" href="#main">
            Skip to content
          </a>
          <header class="top">
            <a class="brand" href="/">
              Portcullis
            </a>
            {viewer ? (
              <nav aria-label="Main">
                <ul>
                  {NAV.filter((n) => !n.roles || n.roles.includes(viewer.role)).map((n) => (
                    <li>
                      <a href={n.href} aria-current={current(n.href) ? 'page' : undefined}>
                        {n.label}
                      </a>
                    </li>
                  ))}
                </ul>
              </nav>
            ) : null}
            {viewer ? (
              <div class="who">
                {/* One's own account (password, sessions) sits with one's name, not in the menu. */}
                <a class="who-name" href="/account" aria-current={path === '/account' ? 'page' : undefined}>
                  {viewer.username} ({viewer.role})
                </a>
                <form method="post" action="/logout" class="inline">
                  <Csrf token={viewer.csrf} />
                  <button type="submit">Log out</button>
                </form>
              </div>
            ) : null}
          </header>
          <main id="main" tabindex={-1}>
            <Flash flash={flash} />
            {children}
          </main>
        </body>
      </html>
    </>
  );
};
