import type { FC } from 'hono/jsx';
import type { SystemHealth } from '../system.ts';
import { ago, Badge, when } from './components.tsx';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

function bytes(n: number): string {
  if (n >= GiB) return `${(n / GiB).toFixed(1)} GiB`;
  if (n >= MiB) return `${(n / MiB).toFixed(1)} MiB`;
  if (n >= 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${n} B`;
}

function rate(n: number | null): string {
  return n === null ? 'measuring…' : `${bytes(n)}/s`;
}

function duration(s: number): string {
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  return d > 0 ? `${d} d ${h} h` : h > 0 ? `${h} h ${m} min` : `${m} min ${s % 60} s`;
}

/**
 * A bar for a share (the text beside it carries the figure; the bar only helps the eye). SVG attributes, not
 * a style attribute: the CSP allows no inline style.
 */
const Meter: FC<{ share: number }> = ({ share }) => (
  <svg
    class={`meter${share > 0.9 ? ' high' : ''}`}
    viewBox="0 0 100 6"
    preserveAspectRatio="none"
    aria-hidden="true"
  >
    <rect class="meter-bg" width="100" height="6" />
    <rect class="meter-fg" width={String(Math.round(Math.min(1, Math.max(0, share)) * 100))} height="6" />
  </svg>
);

export const HealthPage: FC<{ h: SystemHealth; now: number }> = ({ h, now }) => {
  const memUsed = h.memory.totalBytes - h.memory.availableBytes;
  const diskUsed = h.disk ? h.disk.totalBytes - h.disk.freeBytes : 0;
  return (
    <>
      <h1>Health</h1>
      <p class="live-note" id="live-status" aria-live="polite">
        Live: refreshed every few seconds while this page is open.
      </p>
      <div id="health-live" data-live="health">
        <p>
          Gateway <Badge value={h.health.status === 'ok' ? 'ok' : 'degraded'} />{' '}
          {h.health.reasons.length === 0 ? 'Every part is working.' : null}
        </p>
        {h.health.reasons.length > 0 ? (
          <ul id="health-reasons">
            {h.health.reasons.map((r) => (
              <li>{r}</li>
            ))}
          </ul>
        ) : null}
        <section class="cards" aria-label="System">
          <div class="card">
            <h2>CPU</h2>
            <p class="big" id="health-cpu">
              {h.cpuPercent === null ? '…' : `${h.cpuPercent} %`}
            </p>
            <p>
              Load {h.load.join(' / ')} (1, 5, 15 min) on {h.cores} core{h.cores === 1 ? '' : 's'}
            </p>
          </div>
          <div class="card">
            <h2>Memory</h2>
            <p class="big">{bytes(memUsed)}</p>
            <Meter share={memUsed / h.memory.totalBytes} />
            <p>
              used of {bytes(h.memory.totalBytes)}; the gateway process {bytes(h.memory.gatewayRssBytes)}
            </p>
          </div>
          <div class="card">
            <h2>Disk</h2>
            {h.disk ? (
              <>
                <p class="big">{bytes(h.disk.freeBytes)} free</p>
                <Meter share={diskUsed / h.disk.totalBytes} />
                <p>
                  of {bytes(h.disk.totalBytes)} where the database lives (<code>{h.disk.path}</code>)
                </p>
              </>
            ) : (
              <p>The data directory cannot be read.</p>
            )}
          </div>
          <div class="card">
            <h2>Temperature</h2>
            {h.temperatures.length === 0 ? (
              <p>No temperature sensor is exposed (usual in a virtual machine).</p>
            ) : (
              <ul>
                {h.temperatures.map((t) => (
                  <li>
                    {t.zone}: {t.celsius} °C
                  </li>
                ))}
              </ul>
            )}
          </div>
          <div class="card">
            <h2>Uptime</h2>
            <p>Gateway: {duration(h.gatewayUptimeSeconds)}</p>
            <p>System: {duration(h.hostUptimeSeconds)}</p>
            <p>Version {h.version}</p>
          </div>
          <div class="card">
            <h2>Keystore</h2>
            <p>
              <Badge value={h.keystore.backend} />
            </p>
            <p>
              {h.keystore.hardwareBacked
                ? 'TPM 2.0: the gateway keys never leave it.'
                : 'No TPM in use: keys are in software on disk (encrypted at rest).'}
            </p>
          </div>
        </section>
        <h2>Cloud uplink</h2>
        <table class="kv">
          <tbody>
            <tr>
              <th scope="row">State</th>
              <td>
                <Badge value={h.uplink.state} />
                {h.uplink.since ? ` since ${when(h.uplink.since)} (${ago(h.uplink.since, now)})` : ''}
              </td>
            </tr>
            <tr>
              <th scope="row">Queued readings</th>
              <td id="health-queue">{h.queueDepth}</td>
            </tr>
            <tr>
              <th scope="row">Refused (queue full)</th>
              <td id="health-queue-refused">{h.queueRefused}</td>
            </tr>
            <tr>
              <th scope="row">Last error</th>
              <td>{h.uplink.lastError ?? 'none'}</td>
            </tr>
          </tbody>
        </table>
        {!h.uplink.configured ? (
          <p class="hint">
            No broker is configured: readings wait in the durable queue. Set <code>uplink.url</code>,{' '}
            <code>uplink.caFile</code> and <code>uplink.certFile</code> in the configuration (after{' '}
            <code>portcullis uplink csr</code>) and restart the gateway.
          </p>
        ) : null}
        <h2>Network interfaces</h2>
        <div class="scroll">
          <table>
            <thead>
              <tr>
                <th scope="col">Interface</th>
                <th scope="col">Received</th>
                <th scope="col">Sent</th>
                <th scope="col">In now</th>
                <th scope="col">Out now</th>
              </tr>
            </thead>
            <tbody>
              {h.interfaces.map((i) => (
                <tr>
                  <td>{i.name}</td>
                  <td>{bytes(i.rxBytes)}</td>
                  <td>{bytes(i.txBytes)}</td>
                  <td>{rate(i.rxRate)}</td>
                  <td>{rate(i.txRate)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
        <h2>Certificates</h2>
        {h.certificates.length === 0 ? (
          <p>No certificate has been issued yet.</p>
        ) : (
          <div class="scroll">
            <table>
              <thead>
                <tr>
                  <th scope="col">Certificate</th>
                  <th scope="col">Expires</th>
                  <th scope="col">Subject</th>
                </tr>
              </thead>
              <tbody>
                {h.certificates.map((c) => (
                  <tr>
                    <td>{c.name}</td>
                    <td>
                      {when(c.notAfter)}{' '}
                      <Badge
                        value={
                          c.daysLeft < 0 ? 'expired' : c.daysLeft < 30 ? `${c.daysLeft} days left` : 'valid'
                        }
                      />
                    </td>
                    <td>
                      <code>{c.subject}</code>
                    </td>
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
