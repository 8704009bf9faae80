import type { FC } from 'hono/jsx';
import type { ControlToken } from '../../../gateway/src/users/index.ts';
import { ActionForm, Badge, Csrf, Reauth, when } from './components.tsx';
import type { Viewer } from './layout.tsx';

const SCOPE_TEXT: Record<string, string> = {
  'events:read': 'read the event stream (readings, alerts, device changes)',
  'device:read': 'read device records',
  'device:quarantine': 'quarantine and release devices',
  'uplink:publish': 'publish to the cloud uplink',
  'audit:write': 'write audit entries',
};

export const TokensPage: FC<{ tokens: ControlToken[]; scopes: readonly string[]; viewer: Viewer }> = ({
  tokens,
  scopes,
  viewer,
}) => (
  <>
    <h1>Flow tokens</h1>
    <p>
      Node-RED flows reach the gateway only through its control socket, each with a token that grants named
      scopes and nothing else. A token is shown once, when it is made; the gateway keeps only its hash.
    </p>
    {tokens.length === 0 ? (
      <p>No tokens yet: flows cannot reach the gateway until one is made here or with the CLI.</p>
    ) : (
      <div class="scroll">
        <table>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Scopes</th>
              <th scope="col">Created</th>
              <th scope="col">Status</th>
            </tr>
          </thead>
          <tbody>
            {tokens.map((t) => (
              <tr>
                <td>{t.name}</td>
                <td>{t.scopes.join(', ')}</td>
                <td>
                  {when(t.createdAt)} by {t.createdBy}
                </td>
                <td>
                  {t.revokedAt ? (
                    <>
                      <Badge value="revoked" /> {when(t.revokedAt)}
                    </>
                  ) : (
                    <ActionForm
                      action={`/tokens/${encodeURIComponent(t.name)}/revoke`}
                      csrf={viewer.csrf}
                      label={`Revoke ${t.name}`}
                      danger
                      confirm={`Revoke ${t.name}? Flows using it stop at once.`}
                    />
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    )}
    <h2>New token</h2>
    <form method="post" action="/tokens">
      <Csrf token={viewer.csrf} />
      <label for="t-name">Name (what the flow is for)</label>
      <input id="t-name" name="name" required maxlength={32} pattern="[a-z][a-z0-9._\-]{0,31}" />
      <fieldset>
        <legend>Scopes (grant only what the flow needs)</legend>
        {scopes.map((s) => (
          <label>
            <input type="checkbox" name="scopes" value={s} /> <code>{s}</code>: {SCOPE_TEXT[s] ?? s}
          </label>
        ))}
      </fieldset>
      <Reauth idPrefix="t" />
      <p>
        <button type="submit">Create token</button>
      </p>
    </form>
  </>
);

export const TokenCreated: FC<{ name: string; token: string; scopes: string[] }> = ({
  name,
  token,
  scopes,
}) => (
  <>
    <h1>Token {name} created</h1>
    <p role="alert">
      This is the only time the token is shown. Put it into the flow's configuration node now; the gateway
      keeps only its hash.
    </p>
    <dl class="facts">
      <dt>Scopes</dt>
      <dd>{scopes.join(', ')}</dd>
      <dt>Token</dt>
      <dd>
        <code class="secret psk" id="token-value">
          {token}
        </code>
      </dd>
    </dl>
    <p>
      <a class="button" href="/tokens">
        Back to the tokens
      </a>
    </p>
  </>
);
