import type { FC } from 'hono/jsx';
import type { Config } from '../../../gateway/src/config/index.ts';
import { Badge, Csrf, Reauth, when } from './components.tsx';
import type { Viewer } from './layout.tsx';

export interface FirewallView {
  enforce: boolean;
  inForce: { hash: string; createdAt: string; actor: string } | null;
  latest: { hash: string; status: string; createdAt: string; error: string | null } | null;
  rendered: { hash: string; changed: boolean; warnings: string[]; diff: string[] } | { error: string };
}

export const Segments: FC<{
  segments: Config['segments'];
  members: Map<string, number>;
  firewall: FirewallView;
  viewer: Viewer;
}> = ({ segments, members, firewall, viewer }) => {
  const r = firewall.rendered;
  return (
    <>
      <h1>Segments</h1>
      {segments.length === 0 ? (
        <p id="segments-empty">
          No segments are configured: every device is in one flat network and the firewall has nothing to
          separate. Segments (sensor VLANs, a management network) are set under <code>segments</code> in the
          configuration file; see docs/segmentation.md.
        </p>
      ) : (
        <div class="scroll">
          <table>
            <thead>
              <tr>
                <th scope="col">Segment</th>
                <th scope="col">Role</th>
                <th scope="col">Network</th>
                <th scope="col">Interface</th>
                <th scope="col">Default</th>
                <th scope="col">Members</th>
              </tr>
            </thead>
            <tbody>
              {segments.map((s) => (
                <tr>
                  <td>
                    <a href={`/devices?segment=${encodeURIComponent(s.name)}`}>{s.name}</a>
                  </td>
                  <td>{s.role}</td>
                  <td>{s.subnet}</td>
                  <td>
                    {s.interface ?? (s.vlanId !== undefined ? `${s.parentInterface}.${s.vlanId}` : '—')}
                  </td>
                  <td>{s.defaultPolicy}</td>
                  <td>{members.get(s.name) ?? 0}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <h2>Firewall</h2>
      <dl class="facts">
        <dt>Enforcement</dt>
        <dd>
          <Badge value={firewall.enforce ? 'enforcing' : 'off'} />
        </dd>
        <dt>In force</dt>
        <dd>
          {firewall.inForce
            ? `${firewall.inForce.hash.slice(0, 12)} (applied ${when(firewall.inForce.createdAt)} by ${firewall.inForce.actor})`
            : 'nothing applied yet'}
        </dd>
        {firewall.latest && firewall.latest.status !== 'applied' ? (
          <>
            <dt>Last attempt</dt>
            <dd>
              <Badge value={firewall.latest.status} /> {when(firewall.latest.createdAt)}{' '}
              {firewall.latest.error ?? ''}
            </dd>
          </>
        ) : null}
      </dl>
      <h2>Rendered ruleset</h2>
      {!firewall.enforce ? (
        <p class="hint" id="apply-off">
          Enforcement is off (<code>firewall.enforce: false</code>): the gateway leaves this host's firewall
          alone, so there is nothing to apply. Review the ruleset here; turn enforcement on in the
          configuration to have the gateway load it.
        </p>
      ) : null}
      {'error' in r ? (
        <p class="flash error" role="alert">
          The ruleset cannot be compiled: {r.error}
        </p>
      ) : (
        <>
          <p>
            Rendered {r.hash.slice(0, 12)}:{' '}
            {r.changed ? 'differs from the one in force' : 'same as the one in force'}.
          </p>
          {r.warnings.length > 0 ? (
            <ul>
              {r.warnings.map((w) => (
                <li>{w}</li>
              ))}
            </ul>
          ) : null}
          {r.changed ? <h3>Differences from the ruleset in force</h3> : null}
          {r.changed ? (
            <pre class="diff">
              {r.diff.map((l) => (
                <span class={l.startsWith('+') ? 'add' : 'del'}>{`${l}\n`}</span>
              ))}
            </pre>
          ) : null}
          {viewer.role === 'admin' && r.changed && firewall.enforce ? (
            <form
              method="post"
              action="/segments/apply"
              data-confirm="Apply this ruleset to the gateway's firewall now?"
            >
              <Csrf token={viewer.csrf} />
              <input type="hidden" name="hash" value={r.hash} />
              <p>
                Applying replaces the firewall rules atomically; a failure leaves the previous rules in force.
              </p>
              <Reauth idPrefix="fw" />
              <p>
                <button type="submit" class="danger">
                  Apply ruleset {r.hash.slice(0, 12)}
                </button>
              </p>
            </form>
          ) : null}
        </>
      )}
    </>
  );
};
