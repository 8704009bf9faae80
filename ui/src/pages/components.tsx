import { raw } from 'hono/html';
import type { Child, FC } from 'hono/jsx';
import { BUCKET_MS } from '../../../gateway/src/anomaly/activity.ts';
import type { ActivityBucket } from '../../../gateway/src/store/index.ts';

/** "2026-11-25 09:14" in UTC: technicians compare it with the CLI and the journal, which print UTC. */
export function when(iso: string | null | undefined): string {
  if (!iso) return '—';
  return `${iso.slice(0, 10)} ${iso.slice(11, 16)}`;
}

const TONE: Record<string, 'ok' | 'warn' | 'bad' | 'info'> = {
  active: 'ok',
  met: 'ok',
  low: 'ok',
  connected: 'ok',
  enforcing: 'ok',
  applied: 'ok',
  installed: 'ok',
  refused: 'warn',
  tpm2: 'ok',
  pending: 'warn',
  medium: 'warn',
  software: 'warn',
  off: 'warn',
  connecting: 'warn',
  'awaiting-certificate': 'warn',
  configured: 'warn',
  quarantined: 'bad',
  high: 'bad',
  'not met': 'bad',
  failed: 'bad',
  'rolled-back': 'bad',
  disconnected: 'bad',
};

/** A state as text plus colour (the text alone carries the meaning; colour only helps). */
export const Badge: FC<{ value: string }> = ({ value }) => (
  <span class={`badge ${TONE[value] ?? 'info'}`}>{value}</span>
);

/** The session's CSRF token in every state-changing form. */
export const Csrf: FC<{ token: string }> = ({ token }) => <input type="hidden" name="_csrf" value={token} />;

/** Password and a fresh code inside a dangerous action's own form: re-authentication at the point of use. */
export const Reauth: FC<{ idPrefix: string }> = ({ idPrefix }) => (
  <div class="row">
    <div>
      <label for={`${idPrefix}-password`}>Your password</label>
      <input
        id={`${idPrefix}-password`}
        name="password"
        type="password"
        autocomplete="current-password"
        required
      />
    </div>
    <div>
      <label for={`${idPrefix}-code`}>Authenticator code</label>
      <input
        id={`${idPrefix}-code`}
        name="code"
        inputmode="numeric"
        autocomplete="one-time-code"
        required
        maxlength={32}
      />
    </div>
  </div>
);

export const Flash: FC<{ flash?: { kind: 'ok' | 'error'; text: string } | undefined }> = ({ flash }) =>
  flash ? (
    <div class={`flash ${flash.kind}`} role={flash.kind === 'error' ? 'alert' : 'status'}>
      {flash.text}
    </div>
  ) : null;

/** A form that posts to `action` with the CSRF token and one button. */
export const ActionForm: FC<{
  action: string;
  csrf: string;
  label: string;
  confirm?: string;
  danger?: boolean;
  children?: Child;
}> = ({ action, csrf, label, confirm, danger, children }) => (
  <form method="post" action={action} class="inline" data-confirm={confirm}>
    <Csrf token={csrf} />
    {children}
    <button type="submit" class={danger ? 'danger' : undefined}>
      {label}
    </button>
  </form>
);

/**
 * A bar chart as inline SVG (no script, no external resource): one series over the buckets' times, with a
 * text alternative for screen readers.
 */
export const Chart: FC<{
  title: string;
  points: ActivityBucket[];
  value: (b: ActivityBucket) => number;
  unit: string;
  /** The period shown (ms since the epoch): the x axis spans it whatever the data covers. */
  from: number;
  to: number;
  kind?: 'score';
}> = ({ title, points, value, unit, from, to, kind }) => {
  const W = 640;
  const H = 180;
  const pad = { l: 44, r: 8, t: 10, b: 24 };
  if (points.length === 0) return <p class="muted">{title}: no activity recorded in this period.</p>;
  const xs = points.map((p) => Date.parse(p.bucketStart));
  const ys = points.map(value);
  const x0 = Math.floor(from / BUCKET_MS) * BUCKET_MS;
  const x1 = Math.max(x0 + BUCKET_MS, Math.floor(to / BUCKET_MS) * BUCKET_MS);
  const yMax = Math.max(...ys, 1);
  const slots = Math.max(1, Math.round((x1 - x0) / BUCKET_MS) + 1);
  const bw = Math.max(1, (W - pad.l - pad.r) / slots - 1);
  const px = (x: number) => pad.l + (Math.round((x - x0) / BUCKET_MS) * (W - pad.l - pad.r)) / slots;
  const py = (y: number) => H - pad.b - (y / yMax) * (H - pad.t - pad.b);
  const peak = ys.reduce((a, b) => Math.max(a, b), 0);
  const desc = `${title}: ${points.length} points from ${when(points[0]?.bucketStart)} to ${when(points.at(-1)?.bucketStart)}, peak ${peak} ${unit}.`;
  return (
    <figure>
      <svg class="chart" viewBox={`0 0 ${W} ${H}`} role="img" aria-label={desc}>
        <line class="axis" x1={pad.l} y1={H - pad.b} x2={W - pad.r} y2={H - pad.b} />
        <line class="axis" x1={pad.l} y1={pad.t} x2={pad.l} y2={H - pad.b} />
        <text x={4} y={pad.t + 10}>
          {String(Math.round(yMax * 100) / 100)}
        </text>
        <text x={4} y={H - pad.b}>
          0
        </text>
        <text x={pad.l} y={H - 6}>
          {when(new Date(x0).toISOString())}
        </text>
        <text x={W - pad.r - 110} y={H - 6}>
          {when(new Date(x1).toISOString())}
        </text>
        {xs.map((x, i) => (
          <rect
            class={kind === 'score' ? 'bar score' : 'bar'}
            x={px(x).toFixed(1)}
            y={py(ys[i] ?? 0).toFixed(1)}
            width={bw.toFixed(1)}
            height={(H - pad.b - py(ys[i] ?? 0)).toFixed(1)}
          />
        ))}
      </svg>
      <figcaption>
        {title} ({unit}, 15-minute buckets, UTC)
      </figcaption>
    </figure>
  );
};

/** Inline SVG produced by the qrcode library from our own data (no user HTML reaches it). */
export const Qr: FC<{ svg: string; label: string }> = ({ svg, label }) => (
  <div class="qr" role="img" aria-label={label}>
    {raw(svg)}
  </div>
);
