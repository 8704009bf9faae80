import { raw } from 'hono/html';
import type { Child, FC } from 'hono/jsx';
import { BUCKET_MS } from '../../../gateway/src/anomaly/activity.ts';
import type { ActivityBucket } from '../../../gateway/src/store/index.ts';

/**
 * "2026-11-25 09:14 UTC": technicians compare it with the CLI and the journal, which print UTC, and the zone
 * is written so nobody reads it as local time.
 */
export function when(iso: string | null | undefined): string {
  if (!iso) return '—';
  return `${iso.slice(0, 10)} ${iso.slice(11, 16)} UTC`;
}

/** "3 min ago", "2 h ago": beside a time where freshness matters (last seen). */
export function ago(iso: string | null | undefined, now: number): string {
  if (!iso) return '';
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (s < 90) return `${s} s ago`;
  if (s < 90 * 60) return `${Math.round(s / 60)} min ago`;
  if (s < 48 * 3600) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} days ago`;
}

const TONE: Record<string, 'ok' | 'warn' | 'bad' | 'info'> = {
  active: 'ok',
  met: 'ok',
  low: 'ok',
  connected: 'ok',
  enforcing: 'ok',
  applied: 'ok',
  applying: 'warn',
  installed: 'ok',
  refused: 'warn',
  tpm2: 'ok',
  ok: 'ok',
  valid: 'ok',
  enabled: 'ok',
  degraded: 'bad',
  expired: 'bad',
  disabled: 'bad',
  revoked: 'bad',
  unset: 'warn',
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

/** A round upper bound for a y axis (1, 2, 5 × 10^n), so its label is a number people read at a glance. */
function niceMax(v: number): number {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

/** Time labels: hours and minutes within a day, the date too beyond. */
function tick(ms: number, long: boolean): string {
  const iso = new Date(ms).toISOString();
  return long ? `${iso.slice(5, 10)} ${iso.slice(11, 16)}` : iso.slice(11, 16);
}

/**
 * A bar chart as inline SVG (no script, no external resource): one series over the buckets' times, with a
 * text alternative for screen readers. The axis labels are HTML beside the drawing, not SVG text, so they keep
 * the page's font size however narrow the screen scales the drawing. The x axis starts at the first data (at
 * least an hour back), not at the start of an empty period, so a new device's first bars are not a sliver at
 * the right edge.
 */
export const Chart: FC<{
  title: string;
  points: ActivityBucket[];
  value: (b: ActivityBucket) => number;
  unit: string;
  /** The period asked for (ms since the epoch): the x axis spans no more than it. */
  from: number;
  to: number;
  kind?: 'score';
}> = ({ title, points, value, unit, from, to, kind }) => {
  const W = 640;
  const H = 160;
  if (points.length === 0) return <p class="muted">{title}: no activity recorded in this period.</p>;
  const xs = points.map((p) => Date.parse(p.bucketStart));
  const ys = points.map(value);
  const last = Math.max(Math.floor(to / BUCKET_MS) * BUCKET_MS, xs.at(-1) ?? 0);
  const first = Math.min(xs[0] ?? last, last - 4 * BUCKET_MS);
  const x0 = Math.max(Math.floor(from / BUCKET_MS) * BUCKET_MS, first);
  const x1 = last;
  const slots = Math.max(1, Math.round((x1 - x0) / BUCKET_MS) + 1);
  const peak = ys.reduce((a, b) => Math.max(a, b), 0);
  const yMax = niceMax(peak);
  const slotW = W / slots;
  const bw = Math.max(1, slotW - (slotW > 4 ? 1 : 0));
  const px = (x: number) => Math.round((x - x0) / BUCKET_MS) * slotW;
  const py = (y: number) => H - (y / yMax) * H;
  const long = x1 - x0 > 86_400_000;
  const ticks = [0, 1, 2, 3, 4].map((i) => x0 + ((x1 + BUCKET_MS - x0) * i) / 4);
  const desc = `${title}: ${points.length} points from ${when(points[0]?.bucketStart)} to ${when(points.at(-1)?.bucketStart)}, peak ${peak} ${unit}.`;
  return (
    <figure class="chart">
      <div class="chart-y" aria-hidden="true">
        <span>{String(yMax)}</span>
        <span>0</span>
      </div>
      <svg class="chart" viewBox={`0 0 ${W} ${H}`} preserveAspectRatio="none" role="img" aria-label={desc}>
        <line class="axis" x1={0} y1={H / 2} x2={W} y2={H / 2} />
        {xs.map((x, i) => (
          <rect
            class={kind === 'score' ? 'bar score' : 'bar'}
            x={px(x).toFixed(1)}
            y={py(ys[i] ?? 0).toFixed(1)}
            width={bw.toFixed(1)}
            height={(H - py(ys[i] ?? 0)).toFixed(1)}
          />
        ))}
      </svg>
      <div class="chart-x" aria-hidden="true">
        {ticks.map((t) => (
          <span>{tick(t, long)}</span>
        ))}
      </div>
      <figcaption>
        {title} ({unit} per 15 minutes, times in UTC; peak {String(peak)})
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
