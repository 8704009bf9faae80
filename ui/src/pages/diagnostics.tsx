import type { FC } from 'hono/jsx';
import type { HandshakeRecord } from '../../../gateway/src/datapath/handshake-log.ts';
import type { DnsResult, ReachResult, UplinkTlsResult } from '../diagnostics.ts';
import type { PingResult } from '../ping.ts';
import { Badge, Csrf, when } from './components.tsx';
import { HandshakeSection, PingSection } from './handshakes.tsx';
import type { Viewer } from './layout.tsx';

export interface DiagnosticsResults {
  dns?: DnsResult;
  reach?: ReachResult;
  uplink?: UplinkTlsResult;
  ping?: PingResult;
  /** A form refused as typed (answered on this page with the input kept, never a redirect). */
  invalid?: { form: 'dns' | 'reach'; message: string };
}

export const DiagnosticsPage: FC<{
  viewer: Viewer;
  results: DiagnosticsResults;
  values?: Record<string, string>;
  /** The sensors' recent handshakes (null: this process keeps none), and the filter they were chosen by. */
  handshakes?: { records: HandshakeRecord[] | null; filter: { device?: string; address?: string } };
}> = ({ viewer, results, values, handshakes }) => (
  <>
    <h1>Diagnostics</h1>
    <p>Checks run from the gateway itself, so they see its network. Every run is audited.</p>
    <h2>Cloud uplink</h2>
    <form method="post" action="/diagnostics/uplink">
      <Csrf token={viewer.csrf} />
      <p>
        A TLS handshake to the broker, checked against the configured CA; the local clock against the broker's
        certificate.
      </p>
      <button type="submit">Test the uplink</button>
    </form>
    {results.uplink ? (
      <div id="uplink-result" role="status">
        {!results.uplink.configured ? (
          <p>No uplink is configured (uplink.url in the configuration).</p>
        ) : (
          <dl class="facts">
            <dt>Broker</dt>
            <dd>
              <code>{results.uplink.url}</code>
            </dd>
            <dt>Result</dt>
            <dd>
              <Badge value={results.uplink.ok ? 'ok' : 'failed'} /> in {results.uplink.ms} ms
              {results.uplink.error ? `: ${results.uplink.error}` : ''}
            </dd>
            {results.uplink.protocol ? (
              <>
                <dt>TLS</dt>
                <dd>
                  {results.uplink.protocol}, {results.uplink.cipher}
                </dd>
                <dt>Chain</dt>
                <dd>
                  {results.uplink.trusted
                    ? 'trusted by uplink.caFile'
                    : `not trusted: ${results.uplink.trustError ?? 'unknown reason'}`}
                  <ul>
                    {(results.uplink.chain ?? []).map((c) => (
                      <li>
                        <code>{c.subject}</code> issued by <code>{c.issuer}</code>, valid {when(c.validFrom)}{' '}
                        to {when(c.validTo)}
                      </li>
                    ))}
                  </ul>
                </dd>
                <dt>Clock</dt>
                <dd>{results.uplink.clock}</dd>
              </>
            ) : null}
          </dl>
        )}
      </div>
    ) : null}
    <h2>DNS lookup</h2>
    <form method="post" action="/diagnostics/dns" class="row">
      <Csrf token={viewer.csrf} />
      <div>
        <label for="dg-name">Host name</label>
        <input
          id="dg-name"
          name="name"
          required
          maxlength={253}
          value={values?.name}
          aria-invalid={results.invalid?.form === 'dns' ? 'true' : undefined}
          aria-describedby={results.invalid?.form === 'dns' ? 'dns-result' : undefined}
        />
      </div>
      <div>
        <button type="submit">Look up</button>
      </div>
    </form>
    {results.invalid?.form === 'dns' ? (
      <p id="dns-result" role="alert" class="error">
        Not looked up: {results.invalid.message}
      </p>
    ) : null}
    {results.dns ? (
      <p id="dns-result" role="status">
        {results.dns.error
          ? `${results.dns.name}: ${results.dns.error} (${results.dns.ms} ms)`
          : `${results.dns.name} → ${results.dns.addresses.join(', ')} (${results.dns.ms} ms)`}
      </p>
    ) : null}
    <h2>Reach test</h2>
    <form method="post" action="/diagnostics/reach" class="row">
      <Csrf token={viewer.csrf} />
      <div>
        <label for="dg-host">Host or address</label>
        <input
          id="dg-host"
          name="host"
          required
          maxlength={253}
          value={values?.host}
          aria-invalid={results.invalid?.form === 'reach' ? 'true' : undefined}
          aria-describedby={results.invalid?.form === 'reach' ? 'reach-result' : undefined}
        />
      </div>
      <div>
        <label for="dg-port">TCP port</label>
        <input
          id="dg-port"
          name="port"
          required
          inputmode="numeric"
          maxlength={5}
          value={values?.port ?? '443'}
        />
      </div>
      <div>
        <button type="submit">Connect</button>
      </div>
    </form>
    <p class="hint">A TCP connection and its time.</p>
    {results.invalid?.form === 'reach' ? (
      <p id="reach-result" role="alert" class="error">
        Not tried: {results.invalid.message}
      </p>
    ) : null}
    {results.reach ? (
      <p id="reach-result" role="status">
        {results.reach.ok
          ? `${results.reach.host}:${results.reach.port} reached (${results.reach.remote}) in ${results.reach.ms} ms`
          : `${results.reach.host}:${results.reach.port} not reached: ${results.reach.error} (${results.reach.ms} ms)`}
      </p>
    ) : null}
    <PingSection viewer={viewer} result={results.ping} values={values} />
    {handshakes ? <HandshakeSection records={handshakes.records} filter={handshakes.filter} /> : null}
  </>
);
