import type { FC } from 'hono/jsx';
import { Problems } from './auth.tsx';
import { Csrf, when } from './components.tsx';
import type { Viewer } from './layout.tsx';
import { SessionsTable, type SessionView } from './users.tsx';

export const AccountPage: FC<{
  viewer: Viewer;
  enrolledAt: string | null;
  sessions: SessionView[];
  now: number;
  errors?: string[];
}> = ({ viewer, enrolledAt, sessions, now, errors }) => (
  <>
    <h1>Your account</h1>
    <dl class="facts">
      <dt>User</dt>
      <dd>{viewer.username}</dd>
      <dt>Role</dt>
      <dd>{viewer.role}</dd>
      <dt>Second factor</dt>
      <dd>{enrolledAt ? `authenticator app, enrolled ${when(enrolledAt)}` : 'none'}</dd>
    </dl>
    <h2>Change your password</h2>
    <Problems errors={errors} />
    <form method="post" action="/account/password">
      <Csrf token={viewer.csrf} />
      <label for="pw-current">Current password</label>
      <input id="pw-current" name="current" type="password" autocomplete="current-password" required />
      <label for="pw-new">New password (at least 12 characters)</label>
      <input id="pw-new" name="next" type="password" autocomplete="new-password" required minlength={12} />
      <label for="pw-again">New password again</label>
      <input id="pw-again" name="again" type="password" autocomplete="new-password" required minlength={12} />
      <p class="hint">Your other sessions end; this one stays logged in.</p>
      <p>
        <button type="submit">Change password</button>
      </p>
    </form>
    <h2>Your sessions</h2>
    <SessionsTable
      sessions={sessions}
      csrf={viewer.csrf}
      action="/account/sessions/revoke"
      showUser={false}
      now={now}
    />
  </>
);
