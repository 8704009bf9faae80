import type { FC } from 'hono/jsx';
import { when } from './components.tsx';

export const LEVELS: Record<string, number> = {
  trace: 10,
  debug: 20,
  info: 30,
  warn: 40,
  error: 50,
  fatal: 60,
};
const NAMES: Record<number, string> = Object.fromEntries(Object.entries(LEVELS).map(([k, v]) => [v, k]));

export interface LogLine {
  time: string;
  level: number;
  msg: string;
  /** Every other field (pino's own and the service's left out), as `key=value`. */
  fields: string;
  deviceId: string | null;
}

const SKIP = new Set(['time', 'level', 'msg', 'pid', 'hostname', 'service']);

/** One pino JSON line as the page shows it; anything that is not such a line is shown as its text. */
export function parseLogLine(raw: string): LogLine {
  try {
    const o = JSON.parse(raw) as Record<string, unknown>;
    const time = typeof o.time === 'string' ? o.time : new Date(Number(o.time) || 0).toISOString();
    const fields = Object.entries(o)
      .filter(([k]) => !SKIP.has(k))
      .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
      .join(' ');
    return {
      time,
      level: typeof o.level === 'number' ? o.level : 30,
      msg: typeof o.msg === 'string' ? o.msg : '',
      fields,
      deviceId: typeof o.deviceId === 'string' ? o.deviceId : null,
    };
  } catch {
    return { time: '', level: 30, msg: raw.slice(0, 500), fields: '', deviceId: null };
  }
}

export interface LogFilter {
  level: string;
  q: string;
  device: string;
}

export const LogsPage: FC<{ lines: LogLine[] | null; total: number; filter: LogFilter; shown: number }> = ({
  lines,
  total,
  filter,
  shown,
}) => (
  <>
    <h1>Gateway log</h1>
    {lines === null ? (
      <p>
        This gateway was started without an in-memory log (a test or an embedded start). The log goes to the
        journal: <code>journalctl -u portcullis-gateway</code>.
      </p>
    ) : (
      <>
        <p>
          The most recent lines the gateway logged since it started ({total} kept, newest first), as written
          to the journal, secrets already redacted.
        </p>
        <form method="get" action="/logs" class="row">
          <div>
            <label for="l-level">At least level</label>
            <select id="l-level" name="level">
              {Object.keys(LEVELS).map((l) => (
                <option value={l} selected={filter.level === l}>
                  {l}
                </option>
              ))}
            </select>
          </div>
          <div>
            <label for="l-q">Text (message or fields)</label>
            <input id="l-q" name="q" value={filter.q} maxlength={100} />
          </div>
          <div>
            <label for="l-device">Device</label>
            <input id="l-device" name="device" value={filter.device} maxlength={64} />
          </div>
          <div>
            <button type="submit">Filter</button>
          </div>
        </form>
        <p>
          <a href={`/logs/download?${new URLSearchParams({ ...filter })}`}>
            Download these lines (JSON lines)
          </a>
        </p>
        {lines.length === 0 ? (
          <p>No line matches.</p>
        ) : (
          <div class="scroll">
            <table>
              <thead>
                <tr>
                  <th scope="col">When</th>
                  <th scope="col">Level</th>
                  <th scope="col">Message</th>
                  <th scope="col">Details</th>
                </tr>
              </thead>
              <tbody>
                {lines.slice(0, shown).map((l) => (
                  <tr>
                    <td>{when(l.time)}</td>
                    <td>
                      <span class={`badge ${l.level >= 50 ? 'bad' : l.level >= 40 ? 'warn' : 'info'}`}>
                        {NAMES[l.level] ?? String(l.level)}
                      </span>
                    </td>
                    <td>{l.msg}</td>
                    <td>
                      <code>{l.fields.length > 300 ? `${l.fields.slice(0, 300)}…` : l.fields}</code>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
        {lines.length > shown ? (
          <p>
            {shown} of {lines.length} matching lines shown; the download has them all.
          </p>
        ) : null}
      </>
    )}
  </>
);
