import type { FC } from 'hono/jsx';
import type { CredentialView } from '../../../gateway/src/identity/index.ts';
import type { Device, Segment } from '../../../gateway/src/store/index.ts';
import { type Kept, Problems } from './auth.tsx';
import { ActionForm, Csrf, Qr, when } from './components.tsx';
import type { Viewer } from './layout.tsx';

export const Onboarding: FC<{
  pending: { device: Device; credentials: CredentialView[] }[];
  segments: Segment[];
  viewer: Viewer;
  canOperate: boolean;
  /** The wizard's fields and every problem with them, after a refused submission. */
  kept?: Kept;
}> = ({ pending, segments, viewer, canOperate, kept }) => (
  <>
    <h1>Onboarding</h1>
    <h2>Pending devices</h2>
    <div id="pending" data-live="devices">
      {pending.length === 0 ? (
        <p>
          No device is waiting. A certificate device that handshakes with a trusted chain appears here (trust
          its CA with <code>portcullis identity trust add</code>); PSK devices are made below and are active
          at once.
        </p>
      ) : (
        <div class="scroll">
          <table>
            <thead>
              <tr>
                <th scope="col">Device</th>
                <th scope="col">Fingerprint (SHA-256)</th>
                <th scope="col">First seen</th>
                {canOperate ? <th scope="col">Decision</th> : null}
              </tr>
            </thead>
            <tbody>
              {pending.map(({ device: d, credentials }) => (
                <tr>
                  <td>
                    <a href={`/devices/${encodeURIComponent(d.id)}`}>{d.id}</a>
                    <div class="muted">{d.credentialKind}</div>
                  </td>
                  <td>
                    {credentials.map((c) => (
                      <div>
                        <code>{c.lookup}</code>
                      </div>
                    ))}
                  </td>
                  <td>{when(d.firstSeen ?? d.createdAt)}</td>
                  {canOperate ? (
                    <td class="row">
                      <ActionForm
                        action={`/devices/${encodeURIComponent(d.id)}/approve`}
                        csrf={viewer.csrf}
                        label={`Approve ${d.id}`}
                      />
                      <ActionForm
                        action={`/devices/${encodeURIComponent(d.id)}/reject`}
                        csrf={viewer.csrf}
                        label={`Reject ${d.id}`}
                        danger
                        confirm={`Reject ${d.id}? Its credential is erased.`}
                      />
                    </td>
                  ) : null}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </div>
    {canOperate ? (
      <>
        <h2 id="psk-wizard">New PSK device</h2>
        <Problems errors={kept?.errors} />
        <form method="post" action="/onboarding/psk">
          <Csrf token={viewer.csrf} />
          <div class="row">
            <div>
              <label for="psk-id">Device id</label>
              {/* The server's rule (deviceIdSchema); escaped for the `v` flag browsers compile patterns with. */}
              <input
                id="psk-id"
                name="id"
                required
                maxlength={64}
                pattern="[A-Za-z0-9][A-Za-z0-9._\-]{0,63}"
                title="letters, digits, '.', '_' or '-', starting with a letter or digit"
                value={kept?.values?.id}
              />
            </div>
            <div>
              <label for="psk-identity">PSK identity (what the sensor sends)</label>
              <input
                id="psk-identity"
                name="pskIdentity"
                required
                maxlength={128}
                value={kept?.values?.pskIdentity}
              />
            </div>
          </div>
          <div class="row">
            <div>
              <label for="psk-name">Name (optional)</label>
              <input id="psk-name" name="name" maxlength={128} value={kept?.values?.name} />
            </div>
            <div>
              <label for="psk-type">Type (optional)</label>
              <input id="psk-type" name="type" maxlength={64} value={kept?.values?.type} />
            </div>
            <div>
              <label for="psk-segment">Segment</label>
              <select id="psk-segment" name="segment">
                <option value="">none yet</option>
                {segments.map((s) => (
                  <option value={s.name} selected={kept?.values?.segment === s.name}>
                    {s.name}
                  </option>
                ))}
              </select>
            </div>
          </div>
          <label for="psk-hex">Key (hex, 16–64 bytes) — leave empty to generate one</label>
          {/* A key typed in is never sent back in a page, not even after an error: it is typed again. */}
          <input id="psk-hex" name="pskHex" autocomplete="off" maxlength={128} />
          <p>
            <button type="submit">Create device</button>
          </p>
        </form>
      </>
    ) : null}
  </>
);

export const PskCreated: FC<{
  device: Device;
  identity: string;
  pskHex: string | null;
  qrSvg: string | null;
}> = ({ device, identity, pskHex, qrSvg }) => (
  <>
    <h1>Device {device.id} created</h1>
    {pskHex ? (
      <>
        <p role="alert">
          This is the only time the key is shown. Put it into the sensor now; the gateway keeps it encrypted
          and never displays it again.
        </p>
        <dl class="facts">
          <dt>PSK identity</dt>
          <dd>
            <code>{identity}</code>
          </dd>
          <dt>Key (hex)</dt>
          <dd>
            <span class="secret psk" id="psk-value">
              {pskHex}
            </span>
          </dd>
        </dl>
        {qrSvg ? (
          <Qr svg={qrSvg} label="QR code of the PSK identity and key for the sensor's provisioning tool" />
        ) : null}
      </>
    ) : (
      <p>The key you entered is stored encrypted.</p>
    )}
    <p>
      <a class="button" href={`/devices/${encodeURIComponent(device.id)}`}>
        Open the device
      </a>{' '}
      <a href="/onboarding">Onboard another</a>
    </p>
  </>
);
