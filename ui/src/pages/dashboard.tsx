import type { FC } from 'hono/jsx';
import type { GatewayStatus } from '../../../gateway/src/core.ts';
import type { Alert } from '../../../gateway/src/store/index.ts';
import type { UpdateStatusView } from '../../../gateway/src/updates/index.ts';
import type { UplinkStatus } from '../../../gateway/src/uplink/uplink.ts';
import { Badge, when } from './components.tsx';

export const Dashboard: FC<{
  status: GatewayStatus;
  uplink: UplinkStatus | undefined;
  alerts: Alert[];
  updates: UpdateStatusView;
}> = ({ status, uplink, alerts, updates }) => {
  const lastUpdate = updates.history[0];
  const d = status.devices;
  return (
    <>
      <h1>Dashboard</h1>
      <p class="live-note" id="live-status" aria-live="polite">
        Live: updates as devices and alerts change.
      </p>
      <div id="dash-live" data-live="alerts devices">
        <section class="cards" aria-label="Devices by state">
          {(['active', 'pending', 'quarantined', 'decommissioned'] as const).map((s) => (
            <div class="card">
              <h2>{s[0]?.toUpperCase() + s.slice(1)}</h2>
              <div class="big">
                <a href={`/devices?state=${s}`}>{d[s]}</a>
              </div>
            </div>
          ))}
          <div class="card">
            <h2>Open alerts</h2>
            <div class="big">
              <a href="/alerts">{alerts.length}</a>
            </div>
          </div>
        </section>
        <section class="cards" aria-label="Gateway status">
          <div class="card">
            <h2>Cloud uplink</h2>
            <p>
              <Badge value={uplink?.state ?? (status.uplink.configured ? 'configured' : 'unset')} />
            </p>
            <p>Queue depth: {uplink?.queueDepth ?? status.uplink.queueDepth}</p>
            {uplink?.lastError ? <p class="muted">Last error: {uplink.lastError}</p> : null}
            {!status.uplink.configured ? (
              <p class="hint" id="uplink-hint">
                No broker is configured: readings wait in the durable queue until one is. See{' '}
                <a href="/health">Health</a> for what to set.
              </p>
            ) : null}
          </div>
          <div class="card">
            <h2>Keystore</h2>
            <p>
              <Badge value={status.keystore.backend} />
            </p>
            <p>
              {status.keystore.hardwareBacked ? 'Keys held in the TPM' : 'Software keys on disk (no TPM)'}
            </p>
          </div>
          <div class="card">
            <h2>Firewall</h2>
            <p>
              <Badge value={status.firewall.enforce ? 'enforcing' : 'off'} />
            </p>
            <p>
              In force: <code>{status.firewall.inForce ? status.firewall.inForce.slice(0, 12) : 'none'}</code>
            </p>
          </div>
          <div class="card">
            <h2>Gateway</h2>
            <p>Version {status.version}</p>
            <p>Store: {status.store}</p>
          </div>
          <div class="card">
            <h2>Updates</h2>
            <p>Release: {updates.current ?? 'not installed from a bundle'}</p>
            <p>
              Last:{' '}
              {lastUpdate ? (
                <>
                  <Badge value={lastUpdate.status} /> {lastUpdate.version} ({when(lastUpdate.createdAt)})
                </>
              ) : (
                'none'
              )}
            </p>
          </div>
        </section>
        <h2>Active alerts</h2>
        {alerts.length === 0 ? (
          <p>No open alerts.</p>
        ) : (
          <div class="scroll">
            <table>
              <thead>
                <tr>
                  <th scope="col">Severity</th>
                  <th scope="col">Device</th>
                  <th scope="col">What happened</th>
                  <th scope="col">Last seen</th>
                </tr>
              </thead>
              <tbody>
                {alerts.slice(0, 10).map((a) => (
                  <tr>
                    <td>
                      <Badge value={a.severity} />
                    </td>
                    <td>
                      {a.deviceId ? (
                        <a href={`/devices/${encodeURIComponent(a.deviceId)}`}>{a.deviceId}</a>
                      ) : (
                        '—'
                      )}
                    </td>
                    <td>
                      <a href={`/alerts#alert-${a.id}`}>{a.explanation}</a>
                    </td>
                    <td>{when(a.lastSeenAt)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </div>
    </>
  );
};
