import type { FC } from 'hono/jsx';
import type { ConfigApplyStatus } from '../../../gateway/src/config/apply.ts';
import type { HostTime } from '../../../gateway/src/config/host-time.ts';
import type { Config } from '../../../gateway/src/config/index.ts';
import { Csrf, Reauth } from './components.tsx';
import { ApplyResult, ConfigEditForms, type TypedChange } from './config-edit.tsx';
import type { Viewer } from './layout.tsx';

/**
 * The configuration in force (it holds paths and addresses, never a key), the uplink's certificate request,
 * and the forms that change the file (uplink, segments; applied with automatic rollback) and the host's clock.
 */
export const ConfigurationPage: FC<{
  config: Config;
  viewer: Viewer;
  edit?: {
    editable: boolean;
    status: ConfigApplyStatus | null;
    hostTime: HostTime;
    typed?: TypedChange | undefined;
  };
}> = ({ config, viewer, edit }) => {
  const up = config.uplink;
  const anomaly = config.anomaly as { timeZone?: string; utcOffsetMinutes?: number };
  return (
    <>
      <h1>Configuration</h1>
      {edit ? <ApplyResult status={edit.status} /> : null}
      <p>
        What the gateway runs with, as validated at start. Change the uplink, the segments and the clock
        below, or the rest in the configuration file (check it with <code>portcullis config check</code>, then
        restart the gateway).
      </p>
      <h2>Cloud uplink</h2>
      {up ? (
        <dl class="facts">
          <dt>Broker</dt>
          <dd>
            <code>{up.url}</code>
          </dd>
          <dt>CA file</dt>
          <dd>
            <code>{up.caFile}</code>
          </dd>
          <dt>Client certificate</dt>
          <dd>
            <code>{up.certFile ?? 'not set (the uplink waits for one)'}</code>
          </dd>
          <dt>Topic prefix</dt>
          <dd>
            <code>{up.topicPrefix}</code>
          </dd>
          <dt>Client id</dt>
          <dd>
            <code>{up.clientId ?? '(from the certificate)'}</code>
          </dd>
          <dt>Queue</dt>
          <dd>
            up to {up.queue.maxMessages} readings, {up.queue.maxAgeHours} h; when full, new ones are refused
            (retry in {up.queue.retryAfterSeconds} s)
          </dd>
        </dl>
      ) : (
        <p>No uplink is configured: readings stay in the durable queue.</p>
      )}
      <h3>Certificate request</h3>
      <p>
        A PKCS #10 request for the uplink's client key (made in the keystore — the TPM on the appliance — the
        first time, then reused), for the cloud's CA to sign. Put the signed certificate where{' '}
        <code>uplink.certFile</code> points.
      </p>
      <form method="post" action="/configuration/uplink-csr" class="row">
        <Csrf token={viewer.csrf} />
        <div>
          <label for="csr-subject">Subject</label>
          <input
            id="csr-subject"
            name="subject"
            required
            maxlength={200}
            value={`CN=${up?.clientId ?? 'portcullis-gateway'}`}
          />
        </div>
        <div>
          <button type="submit">Download the request</button>
        </div>
      </form>
      <h3>Signed certificate</h3>
      <form method="post" action="/configuration/uplink-certificate">
        <Csrf token={viewer.csrf} />
        <label for="cert-pem">The certificate the cloud's CA signed (PEM)</label>
        <textarea id="cert-pem" name="certificate" rows={6} required maxlength={16384} />
        <p class="hint">
          Checked before it is written: one certificate, valid now, for this gateway's uplink key. A waiting
          uplink connects with it at once; one that replaces another is used from the next start.
        </p>
        <Reauth idPrefix="cert" />
        <p>
          <button type="submit">Install the certificate</button>
        </p>
      </form>
      <h2>Site</h2>
      <dl class="facts">
        <dt>Time zone</dt>
        <dd>
          {anomaly.timeZone ?? `UTC${anomaly.utcOffsetMinutes ? ` ${anomaly.utcOffsetMinutes / 60} h` : ''}`}{' '}
          (times in the UI are UTC)
        </dd>
        <dt>Segments</dt>
        <dd>{config.segments.length === 0 ? 'none' : config.segments.map((s) => s.name).join(', ')}</dd>
        <dt>Firewall</dt>
        <dd>
          {config.firewall.enforce ? 'enforced by the gateway' : 'not managed (firewall.enforce is off)'}
        </dd>
        <dt>Web UI</dt>
        <dd>
          <code>
            {config.ui.host}:{config.ui.port}
          </code>
        </dd>
        <dt>Sensors (DTLS)</dt>
        <dd>
          <code>
            {config.dtls.host}:{config.dtls.port}
          </code>
        </dd>
      </dl>
      {edit ? (
        <ConfigEditForms
          config={config}
          viewer={viewer}
          editable={edit.editable}
          hostTime={edit.hostTime}
          typed={edit.typed}
        />
      ) : null}
    </>
  );
};
