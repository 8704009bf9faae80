import type { FC } from 'hono/jsx';
import type { FleetPageView, FleetRuntimeStatus } from '../../../gateway/src/fleet/view.ts';
import { Badge, when } from './components.tsx';

/**
 * The fleet plane seen from this gateway (docs/fleet.md), read-only for every role: which operator key signs,
 * what the applied documents changed, what was refused and why, and whether presence and state get out. The
 * fleet lock stays a console command (`portcullis fleet lock`): a technician on site sets it.
 */

/** The non-empty changes of an applied document, as short phrases. */
function changeList(changes: Record<string, unknown> | undefined): string[] {
  if (!changes) return [];
  const out: string[] = [];
  const list = (key: string, label: string) => {
    const v = changes[key];
    if (Array.isArray(v) && v.length > 0) out.push(`${label}: ${v.join(', ')}`);
  };
  list('added', 'devices added');
  list('decommissioned', 'decommissioned');
  list('quarantined', 'quarantined');
  list('released', 'released');
  list('profilesDefined', 'profiles defined');
  list('policy', 'policy assigned');
  list('allowLists', 'allow-lists (MUD)');
  list('campaigns', 'firmware campaigns');
  const update = changes.update as { version?: string } | null | undefined;
  if (update?.version) out.push(`gateway update: ${update.version}`);
  if (typeof changes.rotatedTo === 'string') out.push(`operator key rotated to ${changes.rotatedTo}`);
  const labels = Object.entries((changes.labels as Record<string, string> | undefined) ?? {});
  if (labels.length > 0) out.push(`labels: ${labels.map(([k, v]) => `${k}=${v}`).join(', ')}`);
  return out;
}

const Runtime: FC<{ runtime: FleetRuntimeStatus | undefined }> = ({ runtime }) =>
  runtime ? (
    <dl class="facts">
      <dt>Topic prefix</dt>
      <dd>
        <code>{runtime.prefix}</code>
      </dd>
      <dt>Broker</dt>
      <dd>
        <Badge value={runtime.connected ? 'connected' : 'disconnected'} />
      </dd>
      <dt>Presence</dt>
      <dd>
        {runtime.presence
          ? `${runtime.presence.online ? 'online' : 'offline'} published ${when(runtime.presence.at)}`
          : 'not published yet'}
      </dd>
      <dt>Reported state</dt>
      <dd>
        {runtime.state
          ? `published ${when(runtime.state.at)} (${runtime.state.bytes} bytes)`
          : 'not published yet'}
      </dd>
      <dt>Following</dt>
      <dd>
        {runtime.subscriptions.map((t) => (
          <>
            <code>{t}</code>{' '}
          </>
        ))}
      </dd>
      {runtime.lastError ? (
        <>
          <dt>Last failed publication</dt>
          <dd>
            <code>{runtime.lastError.topic}</code>: {runtime.lastError.message} ({when(runtime.lastError.at)})
          </dd>
        </>
      ) : null}
    </dl>
  ) : (
    <p>No uplink is configured: the fleet plane rides on the uplink's broker (uplink.url).</p>
  );

export const FleetPage: FC<{ view: FleetPageView; runtime: FleetRuntimeStatus | undefined }> = ({
  view,
  runtime,
}) => (
  <>
    <h1>Fleet</h1>
    <h2>Operator key</h2>
    <dl class="facts">
      <dt>Pinned</dt>
      <dd>
        {view.pinned
          ? view.pinned.keyId
            ? `${view.pinned.keyId} (${view.pinned.file})`
            : `unreadable: ${view.pinned.problem ?? ''} (${view.pinned.file})`
          : 'none (fleet.operatorKeyFile): every document is refused'}
      </dd>
      <dt>Signs now</dt>
      <dd>
        {view.inForce
          ? `${view.inForce.keyId}, rotated from ${view.inForce.rotatedFrom} ${when(view.inForce.since)}`
          : (view.pinned?.keyId ?? '—')}
      </dd>
      <dt>Groups</dt>
      <dd>{view.groups.length > 0 ? view.groups.join(', ') : 'none'}</dd>
      <dt>Fleet lock</dt>
      <dd>
        {view.lock.locked
          ? `SET by ${view.lock.by} ${when(view.lock.since)}: remote documents are refused`
          : 'not set (portcullis fleet lock refuses remote changes)'}
      </dd>
    </dl>
    <h2>Publication</h2>
    <Runtime runtime={runtime} />
    <h2>Applied documents</h2>
    {view.applied.length === 0 ? (
      <p>No document has been applied.</p>
    ) : (
      // The last document per scope, newest first; lists rather than tables, so a phone reads them whole.
      view.applied.map((a) => {
        const changes = changeList(a.changes);
        return (
          <section aria-label={`Applied in ${a.scope}`}>
            <h3>
              {a.scope}: version {a.version}
            </h3>
            <dl class="facts">
              <dt>Signed by</dt>
              <dd>
                <code>{a.keyId}</code>
              </dd>
              <dt>Applied</dt>
              <dd>{when(a.appliedAt)}</dd>
              <dt>Changed</dt>
              <dd>
                {changes.length === 0 ? (
                  'nothing'
                ) : (
                  <ul>
                    {changes.map((c) => (
                      <li>{c}</li>
                    ))}
                  </ul>
                )}
              </dd>
            </dl>
          </section>
        );
      })
    )}
    <h2>Refused documents</h2>
    {view.refusals.length === 0 ? (
      <p>None refused.</p>
    ) : (
      <>
        <p class="hint">The newest {view.refusals.length}; each is also in the audit log (fleet.refuse).</p>
        <ol aria-label="Refused documents, newest first">
          {view.refusals.map((r) => (
            <li>
              <Badge value="refused" /> <code>{r.code}</code> {when(r.at)}, {r.scope}
              {r.version !== null ? ` version ${r.version}` : ''}
              {r.claimedKeyId ? (
                <>
                  , claimed key <code>{r.claimedKeyId}</code>
                </>
              ) : null}
              : {r.reason}
            </li>
          ))}
        </ol>
      </>
    )}
    <h2>Profiles defined by documents</h2>
    {view.profiles.length === 0 ? (
      <p>None: the device profiles are the configuration's (policy.profiles).</p>
    ) : (
      <ul>
        {view.profiles.map((p) => (
          <li>
            <strong>{p.name}</strong> ({p.fields.join(', ')}) by <code>{p.keyId}</code> {when(p.definedAt)}
          </li>
        ))}
      </ul>
    )}
  </>
);
