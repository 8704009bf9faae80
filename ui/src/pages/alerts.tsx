import type { FC } from 'hono/jsx';
import type { Alert } from '../../../gateway/src/store/index.ts';
import { ActionForm, Badge, when } from './components.tsx';
import { alertKindLabel } from './labels.ts';
import type { Viewer } from './layout.tsx';

interface Reason {
  text?: string;
  feature?: string;
}

/** The detector's per-feature explanations, when the alert carries them. */
function reasonsOf(a: Alert): string[] {
  const ev = a.evidence as { reasons?: Reason[] } | null;
  return Array.isArray(ev?.reasons) ? ev.reasons.flatMap((r) => (r.text ? [r.text] : [])) : [];
}

export const Alerts: FC<{
  alerts: Alert[];
  all: boolean;
  viewer: Viewer;
  canOperate: boolean;
  locked: boolean;
}> = ({ alerts, all, viewer, canOperate, locked }) => (
  <>
    <h1>Alerts</h1>
    {locked ? (
      <p class="flash error" role="alert">
        The enclosure was opened: the UI accepts no changes until the tamper alert is acknowledged.
      </p>
    ) : null}
    <p>
      {all ? (
        <a href="/alerts">Show open alerts only</a>
      ) : (
        <a href="/alerts?all=1">Show acknowledged alerts too</a>
      )}
    </p>
    <div id="alert-list" data-live="alerts">
      {alerts.length === 0 ? (
        <p>No {all ? '' : 'open '}alerts.</p>
      ) : (
        alerts.map((a) => {
          const reasons = reasonsOf(a);
          return (
            <article class="card" id={`alert-${a.id}`} aria-labelledby={`alert-${a.id}-title`}>
              <h2 id={`alert-${a.id}-title`}>
                <Badge value={a.severity} /> {alertKindLabel(a.kind)}
                {a.deviceId ? (
                  <>
                    {' '}
                    on <a href={`/devices/${encodeURIComponent(a.deviceId)}`}>{a.deviceId}</a>
                  </>
                ) : null}
              </h2>
              <p>{a.explanation}</p>
              {reasons.length > 1 ? (
                <ul>
                  {reasons.map((r) => (
                    <li>{r}</li>
                  ))}
                </ul>
              ) : null}
              <p class="muted">
                First {when(a.createdAt)}, last {when(a.lastSeenAt)}, seen {a.count} time
                {a.count === 1 ? '' : 's'}
                {a.acknowledgedAt ? `; acknowledged by ${a.acknowledgedBy} at ${when(a.acknowledgedAt)}` : ''}
              </p>
              {canOperate && !a.acknowledgedAt ? (
                <ActionForm
                  action={`/alerts/${a.id}/ack`}
                  csrf={viewer.csrf}
                  label={`Acknowledge alert ${a.id}`}
                />
              ) : null}
            </article>
          );
        })
      )}
    </div>
  </>
);
