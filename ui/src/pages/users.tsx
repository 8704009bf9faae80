import type { FC } from 'hono/jsx';
import type { User } from '../../../gateway/src/store/index.ts';
import { Csrf, Reauth, when } from './components.tsx';
import type { Viewer } from './layout.tsx';

type UserView = Pick<User, 'username' | 'role' | 'createdAt' | 'disabledAt' | 'totpEnrolledAt'>;

export const UsersPage: FC<{ users: UserView[]; viewer: Viewer }> = ({ users, viewer }) => (
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
              <td>{u.username}</td>
              <td>{u.role}</td>
              <td>{u.totpEnrolledAt ? `enrolled ${when(u.totpEnrolledAt)}` : 'not yet (at first login)'}</td>
              <td>{when(u.createdAt)}</td>
              <td>{u.disabledAt ? `disabled ${when(u.disabledAt)}` : 'enabled'}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
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
          <input id="u-name" name="username" required maxlength={64} autocomplete="off" />
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
