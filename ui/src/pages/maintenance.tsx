import type { FC } from 'hono/jsx';
import type { UpdateStatusView } from '../../../gateway/src/updates/index.ts';
import { Badge, when } from './components.tsx';

/**
 * What is installed and what happened to past updates. Installing stays with the CLI for now
 * (`portcullis update apply BUNDLE`): a bundle is tens of MiB, beyond what the UI reads into memory.
 */
export const MaintenancePage: FC<{ status: UpdateStatusView; keyPinned: boolean; version: string }> = ({
  status,
  keyPinned,
  version,
}) => (
  <>
    <h1>Maintenance</h1>
    <h2>Gateway software</h2>
    <dl class="facts">
      <dt>Running</dt>
      <dd>{version}</dd>
      <dt>Installed release</dt>
      <dd>{status.current ?? 'not installed from a bundle'}</dd>
      <dt>Releases kept</dt>
      <dd>{status.releases.length > 0 ? status.releases.join(', ') : 'none'}</dd>
      <dt>Anti-rollback floor</dt>
      <dd>{status.highest} (bundles at or below it are refused)</dd>
      <dt>Release key</dt>
      <dd>
        {keyPinned
          ? 'pinned (updates.publicKeyFile): only bundles it signed install'
          : 'not pinned (updates.publicKeyFile): no bundle can be installed'}
      </dd>
    </dl>
    <p class="hint">
      Install a signed bundle from the console: <code>portcullis update apply BUNDLE</code>. It is verified
      before a byte is unpacked, switched in atomically, health-checked, and switched back if the check fails.
    </p>
    <h2>Update history</h2>
    {status.history.length === 0 ? (
      <p>No update has been applied yet.</p>
    ) : (
      <div class="scroll">
        <table>
          <thead>
            <tr>
              <th scope="col">When</th>
              <th scope="col">Version</th>
              <th scope="col">From</th>
              <th scope="col">Result</th>
              <th scope="col">By</th>
            </tr>
          </thead>
          <tbody>
            {status.history.map((h) => (
              <tr>
                <td>{when(h.createdAt)}</td>
                <td>{h.version}</td>
                <td>{h.previous ?? '—'}</td>
                <td>
                  <Badge value={h.status} /> {h.error ?? ''}
                </td>
                <td>{h.actor}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    )}
  </>
);
