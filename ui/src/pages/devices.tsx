import type { FC } from 'hono/jsx';
import type { BehaviourStatus } from '../../../gateway/src/anomaly/index.ts';
import type { HandshakeRecord } from '../../../gateway/src/datapath/handshake-log.ts';
import type { CredentialView } from '../../../gateway/src/identity/index.ts';
import type { EffectivePolicy } from '../../../gateway/src/policy/engine.ts';
import type { RefusalCounts } from '../../../gateway/src/policy/service.ts';
import type {
  ActivityBucket,
  Alert,
  AuditRow,
  Device,
  DeviceState,
  Segment,
} from '../../../gateway/src/store/index.ts';
import { ActionForm, ago, Badge, Chart, Csrf, Reauth, when } from './components.tsx';
import { HandshakeTable } from './handshakes.tsx';
import { actionLabel } from './labels.ts';
import type { Viewer } from './layout.tsx';

export const PAGE_SIZE = 100;
const STATES: DeviceState[] = ['pending', 'active', 'quarantined', 'decommissioned'];

export interface DeviceFilter {
  q: string;
  state: DeviceState | '';
  segment: string;
  page: number;
}

export const DeviceList: FC<{
  devices: Device[];
  total: number;
  filter: DeviceFilter;
  segments: Segment[];
}> = ({ devices, total, filter, segments }) => {
  const pages = Math.max(1, Math.ceil(total / PAGE_SIZE));
  const link = (page: number) =>
    `/devices?${new URLSearchParams({ q: filter.q, state: filter.state, segment: filter.segment, page: String(page) })}`;
  return (
    <>
      <h1>Devices</h1>
      <form method="get" action="/devices" class="row">
        <div>
          <label for="f-q">Search</label>
          <input id="f-q" name="q" value={filter.q} placeholder="id, name, type or address" />
        </div>
        <div>
          <label for="f-state">State</label>
          <select id="f-state" name="state">
            <option value="">any</option>
            {STATES.map((s) => (
              <option value={s} selected={filter.state === s}>
                {s}
              </option>
            ))}
          </select>
        </div>
        <div>
          <label for="f-segment">Segment</label>
          <select id="f-segment" name="segment">
            <option value="">any</option>
            {segments.map((s) => (
              <option value={s.name} selected={filter.segment === s.name}>
                {s.name}
              </option>
            ))}
          </select>
        </div>
        <div>
          <button type="submit">Filter</button>
        </div>
      </form>
      <div id="device-list" data-live="devices">
        <p aria-live="polite">
          {total} device{total === 1 ? '' : 's'}
          {pages > 1 ? `, page ${filter.page} of ${pages}` : ''}
        </p>
        <div class="scroll">
          <table>
            <thead>
              <tr>
                <th scope="col">Device</th>
                <th scope="col">State</th>
                <th scope="col">Type</th>
                <th scope="col">Segment</th>
                <th scope="col" class="hide-narrow">
                  Credential
                </th>
                <th scope="col" class="hide-narrow">
                  Firmware
                </th>
                <th scope="col">Last seen</th>
              </tr>
            </thead>
            <tbody>
              {devices.map((d) => (
                <tr>
                  <td>
                    <a href={`/devices/${encodeURIComponent(d.id)}`}>{d.id}</a>
                    {d.name ? <div class="muted">{d.name}</div> : null}
                  </td>
                  <td>
                    <Badge value={d.state} />
                  </td>
                  <td>{d.type ?? '—'}</td>
                  <td>{d.segment ?? '—'}</td>
                  <td class="hide-narrow">{d.credentialKind}</td>
                  <td class="hide-narrow">{d.firmwareVersion ?? '—'}</td>
                  <td>{when(d.lastSeen)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
        {pages > 1 ? (
          <nav aria-label="Pages" class="row">
            {filter.page > 1 ? <a href={link(filter.page - 1)}>Previous page</a> : null}
            {filter.page < pages ? <a href={link(filter.page + 1)}>Next page</a> : null}
          </nav>
        ) : null}
      </div>
    </>
  );
};

export interface DeviceDetailData {
  device: Device;
  credentials: CredentialView[];
  activity: ActivityBucket[];
  range: '24h' | '7d';
  /** The period charted, ms since the epoch. */
  from: number;
  to: number;
  alerts: Alert[];
  events: AuditRow[];
  rateLimit: { perSecond: number; until: string } | undefined;
  /** The behaviour model's state (absent: monitoring off, or the caller did not ask). */
  behaviour?: BehaviourStatus | undefined;
  /** The device's policy profile and the messages it refused since the gateway started (docs/policy.md). */
  policy?: {
    effective: EffectivePolicy;
    refusals: RefusalCounts;
    profiles: string[];
    defaultProfile: string | null;
  };
  /** Whether `firewall.enforce` is on: without it a quarantine acts in the gateway only (said beside it). */
  firewallEnforced?: boolean;
  /** Its latest DTLS handshakes and why they failed (null: this process keeps none; absent: not shown). */
  handshakes?: HandshakeRecord[] | null;
}

export const DeviceDetail: FC<{ data: DeviceDetailData; viewer: Viewer; canOperate: boolean }> = ({
  data,
  viewer,
  canOperate,
}) => {
  const { device: d } = data;
  const base = `/devices/${encodeURIComponent(d.id)}`;
  return (
    <>
      <h1>
        Device {d.id} <Badge value={d.state} />
      </h1>
      <div id="device-facts" data-live="devices alerts activity">
        <dl class="facts">
          <dt>Name</dt>
          <dd>{d.name ?? '—'}</dd>
          <dt>Type</dt>
          <dd>{d.type ?? '—'}</dd>
          <dt>Credential</dt>
          <dd>
            {d.credentialKind}
            {data.credentials.some((c) => c.weak && !c.revokedAt) ? (
              <strong class="weak-key"> — weak key (under 128 bits)</strong>
            ) : null}
          </dd>
          <dt>Segment</dt>
          <dd>{d.segment ?? '—'}</dd>
          <dt>Address</dt>
          <dd>{d.address ?? '—'}</dd>
          <dt>Firmware</dt>
          <dd>{d.firmwareVersion ?? 'not reported'}</dd>
          <dt>First seen</dt>
          <dd>{when(d.firstSeen)}</dd>
          <dt>Last seen</dt>
          <dd id="last-seen">
            {when(d.lastSeen)}
            {d.lastSeen ? ` (${ago(d.lastSeen, data.to)})` : ''}
          </dd>
          {d.quarantine ? (
            <>
              <dt>Quarantine</dt>
              <dd>
                {d.quarantine.mode} since {when(d.quarantine.since)}: {d.quarantine.reason}
              </dd>
            </>
          ) : null}
          {data.policy ? (
            <>
              <dt>Policy profile</dt>
              <dd id="policy-profile">
                {data.policy.effective.profile ?? 'none (known and active only)'}
                {data.policy.effective.profileFrom === 'default' ? ' (the default)' : ''}
                {Object.values(data.policy.effective.sources).includes('device')
                  ? ', with device overrides'
                  : ''}
                {data.policy.effective.broken ? (
                  <strong> — every message refused: {data.policy.effective.broken}</strong>
                ) : null}
              </dd>
              <dt>Refused messages</dt>
              <dd id="policy-refusals">
                {data.policy.refusals.total === 0
                  ? 'none since the gateway started'
                  : `${data.policy.refusals.total} since the gateway started (${Object.entries(
                      data.policy.refusals.byRule,
                    )
                      .map(([r, n]) => `${r} ${n}`)
                      .join(', ')}); last ${when(data.policy.refusals.last?.ts ?? null)}: ${
                      data.policy.refusals.last?.reason ?? ''
                    }`}
              </dd>
            </>
          ) : null}
          {data.rateLimit ? (
            <>
              <dt>Rate limit</dt>
              <dd>
                {data.rateLimit.perSecond}/s until {when(data.rateLimit.until)}
              </dd>
            </>
          ) : null}
          {data.behaviour && data.behaviour.state !== 'unknown' ? (
            <>
              <dt>Behaviour</dt>
              <dd id="behaviour">
                {data.behaviour.state === 'learning'
                  ? `learning its normal until ${when(new Date(data.behaviour.until ?? 0).toISOString())}: nothing is scored yet`
                  : data.behaviour.state === 're-learning'
                    ? `re-learning after ${data.behaviour.because} until ${when(new Date(data.behaviour.until ?? 0).toISOString())}: a change is expected, only blatant findings alert`
                    : `monitored (${data.behaviour.messageKinds} message kind${data.behaviour.messageKinds === 1 ? '' : 's'} learned)`}
              </dd>
            </>
          ) : null}
        </dl>
        {data.rateLimit && viewer.role === 'admin' ? (
          <details>
            <summary>Lift the rate limit now</summary>
            <form method="post" action={`${base}/unlimit`} aria-label="Lift the rate limit">
              <Csrf token={viewer.csrf} />
              <Reauth idPrefix="u" />
              <p>
                <button type="submit">Lift rate limit</button>
              </p>
            </form>
          </details>
        ) : null}
        {canOperate && d.state !== 'decommissioned' && data.policy && data.policy.profiles.length > 0 ? (
          <form method="post" action={`${base}/profile`} class="row" aria-label="Policy profile">
            <Csrf token={viewer.csrf} />
            <div>
              <label for="p-profile">Policy profile</label>
              <select id="p-profile" name="profile">
                <option value="" selected={data.policy.effective.profileFrom !== 'device'}>
                  {data.policy.defaultProfile
                    ? `the default (${data.policy.defaultProfile})`
                    : 'none (known and active only)'}
                </option>
                {data.policy.profiles.map((p) => (
                  <option
                    value={p}
                    selected={
                      data.policy?.effective.profileFrom === 'device' && data.policy.effective.profile === p
                    }
                  >
                    {p}
                  </option>
                ))}
              </select>
            </div>
            <div>
              <button type="submit">Set profile</button>
            </div>
          </form>
        ) : null}
        {canOperate && d.state !== 'decommissioned' ? (
          <DeviceActions
            d={d}
            viewer={viewer}
            base={base}
            isAdmin={viewer.role === 'admin'}
            firewallEnforced={data.firewallEnforced ?? true}
          />
        ) : null}
        <h2>Credentials</h2>
        <div class="scroll">
          <table>
            <thead>
              <tr>
                <th scope="col">Kind</th>
                <th scope="col">Identity or fingerprint</th>
                <th scope="col">Created</th>
                <th scope="col">Status</th>
              </tr>
            </thead>
            <tbody>
              {data.credentials.map((c) => (
                <tr>
                  <td>{c.kind}</td>
                  <td>
                    <code>{c.lookup}</code>
                  </td>
                  <td>{when(c.createdAt)}</td>
                  <td>
                    {c.revokedAt ? `revoked ${when(c.revokedAt)}${c.erased ? ', erased' : ''}` : 'in use'}
                    {c.weak ? (
                      <>
                        {' '}
                        <strong class="weak-key" title="a legacy key admitted with --allow-weak-psk">
                          weak key (under 128 bits)
                        </strong>
                      </>
                    ) : null}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
        {data.handshakes !== undefined ? (
          <>
            <h2>Last handshakes</h2>
            <HandshakeTable records={data.handshakes} caption={`Latest DTLS handshakes of ${d.id}`} />
          </>
        ) : null}
        <h2>Open alerts</h2>
        {data.alerts.length === 0 ? (
          <p>None.</p>
        ) : (
          <ul>
            {data.alerts.map((a) => (
              <li>
                <Badge value={a.severity} /> <a href={`/alerts#alert-${a.id}`}>{a.explanation}</a> (
                {when(a.lastSeenAt)})
              </li>
            ))}
          </ul>
        )}
      </div>
      <h2>Traffic and behaviour</h2>
      <p>
        Period:{' '}
        <a href={`${base}?range=24h`} aria-current={data.range === '24h' ? 'true' : undefined}>
          last 24 hours
        </a>{' '}
        ·{' '}
        <a href={`${base}?range=7d`} aria-current={data.range === '7d' ? 'true' : undefined}>
          last 7 days
        </a>
      </p>
      <div id="device-charts" data-live="activity">
        <Chart
          title="Messages"
          points={data.activity}
          value={(b) => b.messages}
          unit="messages"
          from={data.from}
          to={data.to}
        />
        <Chart
          title="Anomaly score"
          points={data.activity}
          value={(b) => b.maxScore}
          unit="score"
          kind="score"
          from={data.from}
          to={data.to}
        />
      </div>
      <h2>Recent events</h2>
      {data.events.length === 0 ? (
        <p>No audited events.</p>
      ) : (
        <div class="scroll">
          <table>
            <thead>
              <tr>
                <th scope="col">When</th>
                <th scope="col">Who</th>
                <th scope="col">What</th>
              </tr>
            </thead>
            <tbody>
              {data.events.map((e) => (
                <tr>
                  <td>{when(e.ts)}</td>
                  <td>{e.actor}</td>
                  <td>{actionLabel(e.action)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </>
  );
};

const DeviceActions: FC<{
  d: Device;
  viewer: Viewer;
  base: string;
  isAdmin: boolean;
  firewallEnforced: boolean;
}> = ({ d, viewer, base, isAdmin, firewallEnforced }) => (
  <section aria-label="Actions">
    <h2>Actions</h2>
    {d.state === 'pending' ? (
      <p class="row">
        <ActionForm action={`${base}/approve`} csrf={viewer.csrf} label="Approve" />
        <ActionForm
          action={`${base}/reject`}
          csrf={viewer.csrf}
          label="Reject"
          danger
          confirm={`Reject ${d.id}? Its credential is erased.`}
        />
      </p>
    ) : null}
    {d.state === 'active' ? (
      <form method="post" action={`${base}/quarantine`} data-confirm={`Quarantine ${d.id}?`}>
        <Csrf token={viewer.csrf} />
        <div class="row">
          <div>
            <label for="q-reason">Reason for quarantine</label>
            <input id="q-reason" name="reason" required maxlength={500} />
          </div>
          <div>
            <label for="q-mode">Mode</label>
            <select id="q-mode" name="mode">
              <option value="observe">observe: connected, readings refused</option>
              <option value="isolate">isolate: cut off</option>
            </select>
          </div>
          <div>
            <button type="submit" class="danger">
              Quarantine
            </button>
          </div>
        </div>
        <p class="hint" id="q-note">
          Either way nothing it sends reaches the cloud.{' '}
          {firewallEnforced
            ? 'The firewall also moves its address into the quarantine set.'
            : 'The firewall is off (firewall.enforce), so this acts in the gateway only: the network does not block the device.'}
        </p>
      </form>
    ) : null}
    {d.state === 'quarantined' ? (
      <form method="post" action={`${base}/release`}>
        <Csrf token={viewer.csrf} />
        <div class="row">
          <div>
            <label for="r-reason">Reason for release (optional)</label>
            <input id="r-reason" name="reason" maxlength={500} />
          </div>
          <div>
            <button type="submit">Release</button>
          </div>
        </div>
      </form>
    ) : null}
    {isAdmin && d.state !== 'decommissioned' ? (
      <details>
        <summary>Decommission (erases its credentials; cannot be undone)</summary>
        <form method="post" action={`${base}/decommission`} data-confirm={`Decommission ${d.id} for good?`}>
          <Csrf token={viewer.csrf} />
          <label for="d-reason">Reason</label>
          <input id="d-reason" name="reason" maxlength={500} />
          <Reauth idPrefix="d" />
          <p>
            <button type="submit" class="danger">
              Decommission
            </button>
          </p>
        </form>
      </details>
    ) : null}
  </section>
);
