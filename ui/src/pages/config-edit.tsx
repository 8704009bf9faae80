import type { FC } from 'hono/jsx';
import { stringify } from 'yaml';
import type { ConfigApplyStatus } from '../../../gateway/src/config/apply.ts';
import type { HostTime } from '../../../gateway/src/config/host-time.ts';
import type { Config } from '../../../gateway/src/config/index.ts';
import { Badge, Csrf, Reauth, when } from './components.tsx';
import type { Viewer } from './layout.tsx';

const RESULT: Record<ConfigApplyStatus['state'], string> = {
  applying: 'being applied: the gateway restarts with it and must come back healthy; reload this page',
  applied: 'applied: the gateway came back healthy with it',
  'rolled-back': 'rolled back: the gateway did not come back healthy, so the previous file is in force again',
};

/** The last change made from here and what became of it. */
export const ApplyResult: FC<{ status: ConfigApplyStatus | null }> = ({ status }) =>
  status ? (
    <div id="apply-result" role="status" class="card">
      <p>
        <Badge value={status.state} /> Change of <strong>{status.changed.join(', ')}</strong> by{' '}
        {status.actor.replace(/^ui:/, '')} at {when(status.requestedAt)}: {RESULT[status.state]}.
      </p>
      {status.reasons.length > 0 ? (
        <ul aria-label="Why it was rolled back">
          {status.reasons.map((r) => (
            <li>{r}</li>
          ))}
        </ul>
      ) : null}
    </div>
  ) : null;

/** A refused change as typed (never the password or code), shown again in its form with the reason. */
export interface TypedChange {
  form: 'uplink' | 'segments' | 'clock';
  values: Record<string, string>;
  error: string;
}

/** The reason a form's change was refused, inside that form (read out at once). */
const Refused: FC<{ id: string; typed?: TypedChange | undefined; form: TypedChange['form'] }> = ({
  id,
  typed,
  form,
}) =>
  typed?.form === form ? (
    <p id={id} role="alert" class="error">
      Not changed: {typed.error}
    </p>
  ) : null;

/**
 * The forms that change the configuration file (uplink, segments) and the host's clock. Each carries its own
 * re-authentication; a file change is validated by the configuration's schema before anything is written.
 */
export const ConfigEditForms: FC<{
  config: Config;
  viewer: Viewer;
  editable: boolean;
  hostTime: HostTime;
  typed?: TypedChange | undefined;
}> = ({ config, viewer, editable, hostTime, typed }) => {
  const up = config.uplink;
  // What the technician typed, where a change was refused; else what is in force.
  const v = (form: TypedChange['form'], key: string, inForce: string) =>
    typed?.form === form ? (typed.values[key] ?? '') : inForce;

  return (
    <section aria-labelledby="edit-title">
      <h2 id="edit-title">Change the configuration</h2>
      {!editable && typed && typed.form !== 'clock' ? (
        <p id="edit-error" role="alert" class="error">
          Not changed: {typed.error}
        </p>
      ) : null}
      {!editable ? (
        <p>
          Not from here: this gateway runs on its embedded defaults (no configuration file), or was not
          started by <code>portcullis start</code>, which restarts it with a change and rolls back.
        </p>
      ) : (
        <>
          <p>
            Checked by the same rules as the file at start (<code>portcullis config check</code>), then
            written with the file in force kept beside it; the gateway restarts with it and must come back
            healthy (the uplink connected again, if it was) within 30 s, or the previous file is put back.
            Audited by what changed, never the values.
          </p>
          <h3>Uplink</h3>
          <form method="post" action="/configuration/apply">
            <Csrf token={viewer.csrf} />
            <input type="hidden" name="part" value="uplink" />
            <Refused id="up-error" typed={typed} form="uplink" />
            <label for="up-url">Broker URL (mqtts://host:port)</label>
            <input
              id="up-url"
              name="url"
              required
              maxlength={500}
              value={v('uplink', 'url', up?.url ?? '')}
            />
            <label for="up-prefix">Topic prefix</label>
            <input
              id="up-prefix"
              name="topicPrefix"
              required
              maxlength={200}
              value={v('uplink', 'topicPrefix', up?.topicPrefix ?? '')}
            />
            <label for="up-ca">Broker CA certificate (PEM; leave empty to keep the one in force)</label>
            <textarea id="up-ca" name="caPem" rows={4} maxlength={32768}>
              {v('uplink', 'caPem', '')}
            </textarea>
            <Reauth idPrefix="up" />
            <p>
              <button type="submit">Apply the uplink change</button>
            </p>
          </form>
          <h3>Segments</h3>
          <form method="post" action="/configuration/apply">
            <Csrf token={viewer.csrf} />
            <input type="hidden" name="part" value="segments" />
            <Refused id="seg-error" typed={typed} form="segments" />
            <label for="seg-yaml">Segments (YAML, as under segments: in the file)</label>
            <textarea id="seg-yaml" name="segments" rows={10} maxlength={32768} class="code">
              {v('segments', 'segments', config.segments.length ? stringify(config.segments) : '[]\n')}
            </textarea>
            <Reauth idPrefix="seg" />
            <p>
              <button type="submit">Apply the segments</button>
            </p>
          </form>
        </>
      )}
      <h3>Clock</h3>
      <p>
        The appliance's time zone (its logs' local time; the UI shows UTC) and NTP servers
        (systemd-timesyncd). Now: {hostTime.timeZone ?? 'not set (UTC)'}, NTP{' '}
        {hostTime.ntp.length ? hostTime.ntp.join(', ') : 'from DHCP or the image’s defaults'}.
      </p>
      <form method="post" action="/configuration/time">
        <Csrf token={viewer.csrf} />
        <Refused id="clk-error" typed={typed} form="clock" />
        <div class="row">
          <div>
            <label for="tz">Time zone (e.g. Europe/Berlin)</label>
            <input
              id="tz"
              name="timeZone"
              maxlength={64}
              value={v('clock', 'timeZone', hostTime.timeZone ?? '')}
            />
          </div>
          <div>
            <label for="ntp">NTP servers (space-separated)</label>
            <input id="ntp" name="ntp" maxlength={1000} value={v('clock', 'ntp', hostTime.ntp.join(' '))} />
          </div>
        </div>
        <Reauth idPrefix="clk" />
        <p>
          <button type="submit">Set the clock</button>
        </p>
      </form>
    </section>
  );
};
