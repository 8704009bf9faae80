import type { FC } from 'hono/jsx';
import type { User } from '../../../gateway/src/store/index.ts';
import { ActionForm, ago, Badge, Csrf, Reauth, when } from './components.tsx';
import type { Viewer } from './layout.tsx';

type UserView = Pick<
  User,
  'username' | 'role' | 'createdAt' | 'disabledAt' | 'totpEnrolledAt' | 'passwordChangeRequired'
>;

/** A session as the pages list it: `id` is a short digest of the token's hash, never the token. */
export interface SessionView {
  id: string;
  username: string;
  createdAt: string;
  lastSeenAt: string;
  address: string | null;
  current: boolean;
}

export const SessionsTable: FC<{
  sessions: SessionView[];
  csrf: string;
  action: string;
  showUser: boolean;
  now: number;
}> = ({ sessions, csrf, action, showUser, now }) =>
  sessions.length === 0 ? (
    <p>No open sessions.</p>
  ) : (
    <div class="scroll">
      <table>
        <thead>
          <tr>
            {showUser ? <th scope="col">User</th> : null}
            <th scope="col">From</th>
            <th scope="col">Logged in</th>
            <th scope="col">Last used</th>
            <th scope="col">End</th>
          </tr>
        </thead>
        <tbody>
          {sessions.map((s) => (
            <tr>
              {showUser ? <td>{s.username}</td> : null}
              <td>{s.address ?? 'unknown'}</td>
              <td>{when(s.createdAt)}</td>
              <td>{ago(s.lastSeenAt, now)}</td>
              <td>
                {s.current ? (
                  'this browser'
                ) : (
                  <ActionForm
                    action={action}
                    csrf={csrf}
                    label={`End session ${s.id}`}
                    confirm="End this session? Whoever uses it is logged out."
                  >
                    <input type="hidden" name="session" value={s.id} />
                  </ActionForm>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );

export const UsersPage: FC<{
  users: UserView[];
  viewer: Viewer;
  sessions: SessionView[];
  now: number;
}> = ({ users, viewer, sessions, now }) => (
  <>
    <h1>Users</h1>
    <div class="scroll">
      <table>
        <thead>
          <tr>
            <th scope="col">User</th>
            <th scope="col">Role</th>
            <th scope="col">Second factor</th>
            <th scope="col">Created</th>
            <th scope="col">Status</th>
          </tr>
        </thead>
        <tbody>
          {users.map((u) => (
            <tr>
              <td>
                <a href={u.username === viewer.username ? '/account' : `#user-${u.username}`}>{u.username}</a>
              </td>
              <td>{u.role}</td>
              <td>{u.totpEnrolledAt ? `enrolled ${when(u.totpEnrolledAt)}` : 'not yet (at first login)'}</td>
              <td>{when(u.createdAt)}</td>
              <td>
                <Badge value={u.disabledAt ? 'disabled' : 'enabled'} />
                {u.disabledAt ? ` since ${when(u.disabledAt)}` : ''}
                {u.passwordChangeRequired ? ' · must change password' : ''}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
    <h2>Manage an account</h2>
    <p>
      Every change here needs your password and a fresh code, and is audited. The last enabled admin cannot be
      disabled or deleted, and nobody changes their own account here (use <a href="/account">Account</a>).
    </p>
    {users
      .filter((u) => u.username !== viewer.username)
      .map((u) => (
        <details class="card" id={`user-${u.username}`}>
          <summary>
            {u.username} ({u.role}
            {u.disabledAt ? ', disabled' : ''})
          </summary>
          <form method="post" action={`/users/${encodeURIComponent(u.username)}/manage`}>
            <Csrf token={viewer.csrf} />
            <fieldset>
              <legend>Action for {u.username}</legend>
              <label>
                <input type="radio" name="op" value="reset-password" required /> Set a new password (they must
                change it at their next login)
              </label>
              <label>
                <input type="radio" name="op" value="reset-mfa" /> Reset the second factor (they enrol again
                at their next login)
              </label>
              <label>
                <input type="radio" name="op" value={u.disabledAt ? 'enable' : 'disable'} />{' '}
                {u.disabledAt ? 'Enable the account' : 'Disable the account (ends its sessions)'}
              </label>
              <label>
                <input type="radio" name="op" value="delete" /> Delete the account (its audit entries stay)
              </label>
            </fieldset>
            <label for={`m-${u.username}-pw`}>New password (only for "set a new password")</label>
            <input
              id={`m-${u.username}-pw`}
              name="newPassword"
              type="password"
              minlength={12}
              autocomplete="new-password"
            />
            <Reauth idPrefix={`m-${u.username}`} />
            <p>
              <button type="submit" class="danger">
                Apply to {u.username}
              </button>
            </p>
          </form>
        </details>
      ))}
    <h2>Open sessions</h2>
    <SessionsTable
      sessions={sessions}
      csrf={viewer.csrf}
      action="/users/sessions/revoke"
      showUser
      now={now}
    />
    <h2>Add a user</h2>
    <p>
      The new user enrols an authenticator at their first login. Roles: <strong>technician</strong> operates
      devices and alerts; <strong>auditor</strong> reads everything and changes nothing;{' '}
      <strong>admin</strong> also manages users, the firewall and decommissioning.
    </p>
    <form method="post" action="/users">
      <Csrf token={viewer.csrf} />
      <div class="row">
        <div>
          <label for="u-name">User name</label>
          <input
            id="u-name"
            name="username"
            required
            maxlength={32}
            pattern="[a-z][a-z0-9._\-]{1,31}"
            autocomplete="off"
          />
        </div>
        <div>
          <label for="u-role">Role</label>
          <select id="u-role" name="role">
            <option value="technician">technician</option>
            <option value="auditor">auditor</option>
            <option value="admin">admin</option>
          </select>
        </div>
        <div>
          <label for="u-new-password">Initial password (at least 12 characters)</label>
          <input
            id="u-new-password"
            name="newPassword"
            type="password"
            required
            minlength={12}
            autocomplete="new-password"
          />
        </div>
      </div>
      <h3>Confirm it is you</h3>
      <Reauth idPrefix="u" />
      <p>
        <button type="submit">Add user</button>
      </p>
    </form>
  </>
);
