import type { FC } from 'hono/jsx';
import { alertName, type HandshakeRecord } from '../../../gateway/src/datapath/handshake-log.ts';
import type { PingResult } from '../ping.ts';
import { Badge, Csrf, when } from './components.tsx';
import type { Viewer } from './layout.tsx';

/**
 * The sensors' recent DTLS handshakes (the gateway's in-memory record, gone at restart): outcome, suite or
 * failure reason, credential (identity or fingerprint, never a key), how often, first and last time.
 */
export const HandshakeTable: FC<{
  records: HandshakeRecord[] | null;
  /** Show the device column (the diagnostics page) or not (a device's own page). */
  withDevice?: boolean;
  caption: string;
}> = ({ records, withDevice = false, caption }) => {
  if (records === null) {
    return <p>Not kept by this process: handshakes are recorded by a running gateway only.</p>;
  }
  if (records.length === 0) {
    return <p>No handshake recorded since the gateway started.</p>;
  }
  return (
    <div class="scroll">
      <table class="handshakes" aria-label={caption}>
        <thead>
          <tr>
            <th scope="col">Last</th>
            <th scope="col">Outcome</th>
            <th scope="col">From</th>
            {withDevice ? <th scope="col">Device</th> : null}
            <th scope="col">Credential</th>
            <th scope="col">Details</th>
            <th scope="col">Times</th>
          </tr>
        </thead>
        <tbody>
          {records.map((r) => (
            <tr>
              <td>{when(r.last)}</td>
              <td>
                <Badge value={r.outcome} />
              </td>
              <td>
                <code>{r.address}</code>
              </td>
              {withDevice ? (
                <td>
                  {r.deviceId ? <a href={`/devices/${encodeURIComponent(r.deviceId)}`}>{r.deviceId}</a> : '—'}
                </td>
              ) : null}
              <td class="cred">
                <code>{r.credential ?? '—'}</code>
              </td>
              <td class="why">
                {r.outcome === 'connected' ? (
                  <>
                    <code>{r.suite}</code>
                    {r.resumed ? ' (resumed)' : ''}
                  </>
                ) : (
                  <>
                    {r.reason}{' '}
                    <span class="hint">
                      <code>{r.code}</code>
                      {r.alert ? `, ${alertName(r.alert)} ${r.fromPeer ? 'from the sensor' : 'sent'}` : ''}
                    </span>
                  </>
                )}
              </td>
              <td>
                {r.count}
                {r.count > 1 ? ` since ${when(r.first)}` : ''}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
};

/** The diagnostics page's handshake section: a filter by device or address, then the table. */
export const HandshakeSection: FC<{
  records: HandshakeRecord[] | null;
  filter: { device?: string; address?: string };
}> = ({ records, filter }) => (
  <section aria-labelledby="hs-title">
    <h2 id="hs-title">Sensor handshakes</h2>
    <p>
      The latest DTLS handshakes per source address and credential, kept in memory since the gateway started
      (repeats counted, never a key): why a sensor does not connect.
    </p>
    <form method="get" action="/diagnostics" class="row">
      <div>
        <label for="hs-device">Device id</label>
        <input id="hs-device" name="device" maxlength={64} value={filter.device} />
      </div>
      <div>
        <label for="hs-address">Source address</label>
        <input id="hs-address" name="address" maxlength={45} value={filter.address} />
      </div>
      <div>
        <button type="submit">Show</button>
      </div>
    </form>
    <HandshakeTable records={records} withDevice caption="Recent sensor handshakes" />
  </section>
);

export const PingSection: FC<{ viewer: Viewer; result?: PingResult; values?: Record<string, string> }> = ({
  viewer,
  result,
  values,
}) => (
  <section aria-labelledby="ping-title">
    <h2 id="ping-title">Ping</h2>
    <form method="post" action="/diagnostics/ping" class="row">
      <Csrf token={viewer.csrf} />
      <div>
        <label for="ping-host">Address or name to ping</label>
        <input id="ping-host" name="host" required maxlength={253} value={values?.pingHost} />
      </div>
      <div>
        <label for="ping-count">Echoes (1–5)</label>
        <input
          id="ping-count"
          name="count"
          required
          inputmode="numeric"
          maxlength={1}
          value={values?.pingCount ?? '3'}
        />
      </div>
      <div>
        <button type="submit">Ping</button>
      </div>
    </form>
    <p class="hint">ICMP echo, one a second, each waiting at most 2 s.</p>
    {result ? (
      <p id="ping-result" role="status">
        {result.error?.code === 'ERR_UI_INVALID'
          ? `Not sent: ${result.error.message}`
          : result.error && result.transmitted === undefined
            ? `${result.host}: ${result.error.message}`
            : `${result.host}${result.address && result.address !== result.host ? ` (${result.address})` : ''}: ${result.received} of ${result.transmitted} answered (${result.lossPercent}% loss)${result.rtt ? `, round trip ${result.rtt.min} / ${result.rtt.avg} / ${result.rtt.max} ms (min / avg / max)` : ''}`}
      </p>
    ) : null}
  </section>
);
