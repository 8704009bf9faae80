import type { FC } from 'hono/jsx';
import type { UpdateStatusView } from '../../../gateway/src/updates/index.ts';
import { Badge, Reauth, when } from './components.tsx';

export interface MaintenanceView {
  status: UpdateStatusView;
  keyPinned: boolean;
  version: string;
  /** Admins see the forms; the others what is installed and what happened. */
  admin: boolean;
  /** What a restore onto another gateway cannot move (gateway/src/backup). */
  doesNotMove: readonly string[];
  /** A restore is staged and waits for the next restart. */
  restoreStaged: boolean;
  maxBundleMiB: number;
  maxArchiveMiB: number;
}

/**
 * The result line of one of the forms below: announced to screen readers as it changes (progress, then the
 * result or the reason for a refusal). The forms need the page's script (maintenance.js): an upload with
 * progress and a re-authentication first are not plain HTML forms.
 */
const Result: FC<{ id: string }> = ({ id }) => (
  <div class="job-result" id={id} role="status" aria-live="polite">
    <progress hidden max={100} value={0} aria-label="Upload progress" />
    <p class="job-text" />
  </div>
);

const UpdateForms: FC<{ v: MaintenanceView }> = ({ v }) => (
  <>
    <h2>Install an update</h2>
    <form class="maint" data-maint="update" method="post" action="#">
      <p class="hint">
        A signed bundle (<code>portcullis update build</code>), at most {v.maxBundleMiB} MiB. It is verified
        against the pinned release key before a byte is unpacked, installed beside the current release,
        health-checked, and switched back if the check fails.
      </p>
      <label for="update-file">Update bundle (.tar)</label>
      <input id="update-file" name="file" type="file" accept=".tar,application/x-tar" required />
      <Reauth idPrefix="update" />
      <button type="submit">Upload and install</button>
      <Result id="update-result" />
    </form>
    <h2>Roll back</h2>
    <form class="maint" data-maint="rollback" method="post" action="#">
      <p class="hint">
        Links the release before the current one again ({v.status.releases.join(', ') || 'none kept'}); it
        runs from the next restart.
      </p>
      <Reauth idPrefix="rollback" />
      <button type="submit" class="danger">
        Roll back to the previous release
      </button>
      <Result id="rollback-result" />
    </form>
  </>
);

const BackupForms: FC<{ v: MaintenanceView }> = ({ v }) => (
  <>
    <h2 id="backup">Backup and restore</h2>
    <div class="notice">
      <p>
        <strong>What a restore onto a replacement gateway cannot move</strong> (its keys stay in its keystore;
        the new gateway makes its own):
      </p>
      <ul>
        {v.doesNotMove.map((line) => (
          <li>{line}</li>
        ))}
      </ul>
    </div>
    <form class="maint" data-maint="backup" method="post" action="#">
      <h3>Make a backup</h3>
      <p class="hint">
        The database and configuration, encrypted with a passphrase you choose (at least 12 characters; it is
        not stored anywhere — without it the archive cannot be opened) and signed by this gateway's identity.
      </p>
      <div class="row">
        <div>
          <label for="backup-passphrase">Passphrase</label>
          <input
            id="backup-passphrase"
            name="passphrase"
            type="password"
            autocomplete="new-password"
            minlength={12}
            required
          />
        </div>
        <div>
          <label for="backup-again">Passphrase again</label>
          <input
            id="backup-again"
            name="again"
            type="password"
            autocomplete="new-password"
            minlength={12}
            required
          />
        </div>
      </div>
      <Reauth idPrefix="backup" />
      <button type="submit">Make and download the backup</button>
      <Result id="backup-result" />
    </form>
    <form class="maint" data-maint="restore" method="post" action="#">
      <h3>Restore a backup</h3>
      {v.restoreStaged ? (
        <p class="flash ok" role="status">
          A restore is staged: it is put in place at the next restart (below).
        </p>
      ) : null}
      <p class="hint">
        The archive (at most {v.maxArchiveMiB} MiB) is checked completely — signature, passphrase, integrity,
        versions — before anything changes; then it is staged, and the next restart puts it in place. The data
        it replaces is kept as a rollback copy.
      </p>
      <label for="restore-file">Backup archive (.pcbk)</label>
      <input id="restore-file" name="file" type="file" accept=".pcbk,application/octet-stream" required />
      <label for="restore-passphrase">Its passphrase</label>
      <input id="restore-passphrase" name="passphrase" type="password" autocomplete="off" required />
      <label class="check">
        <input type="checkbox" name="keepConfig" value="1" /> Keep this gateway's configuration (restore the
        database only)
      </label>
      <Reauth idPrefix="restore" />
      <button type="submit" class="danger">
        Check and stage the restore
      </button>
      <Result id="restore-result" />
    </form>
  </>
);

const PowerForms: FC = () => (
  <>
    <h2 id="power">Restart and reboot</h2>
    <form class="maint" data-maint="power" method="post" action="#">
      <p class="hint">
        Restarting the gateway ends every sensor's session (they reconnect) and applies a staged restore or a
        rolled-back release; rebooting restarts the whole appliance. Type the action's name to confirm.
      </p>
      <fieldset>
        <legend>Action</legend>
        <label class="check">
          <input type="radio" name="action" value="restart" checked /> Restart the gateway service
        </label>
        <label class="check">
          <input type="radio" name="action" value="reboot" /> Reboot the appliance
        </label>
      </fieldset>
      <label for="power-confirm">Type restart or reboot to confirm</label>
      <input id="power-confirm" name="confirm" autocomplete="off" required maxlength={20} />
      <Reauth idPrefix="power" />
      <button type="submit" class="danger">
        Restart or reboot now
      </button>
      <Result id="power-result" />
    </form>
  </>
);

const History: FC<{ status: UpdateStatusView }> = ({ status }) =>
  status.history.length === 0 ? (
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
  );

/**
 * What is installed and what happened to past updates; for admins, installing a signed update with upload
 * progress, rolling back, backups and restores, and restarting or rebooting — each re-authenticated in its form.
 */
export const MaintenancePage: FC<{ v: MaintenanceView }> = ({ v }) => (
  <>
    <h1>Maintenance</h1>
    <h2>Gateway software</h2>
    <dl class="facts">
      <dt>Running</dt>
      <dd>{v.version}</dd>
      <dt>Installed release</dt>
      <dd>{v.status.current ?? 'not installed from a bundle'}</dd>
      <dt>Releases kept</dt>
      <dd>{v.status.releases.length > 0 ? v.status.releases.join(', ') : 'none'}</dd>
      <dt>Anti-rollback floor</dt>
      <dd>{v.status.highest} (bundles at or below it are refused)</dd>
      <dt>Release key</dt>
      <dd>
        {v.keyPinned
          ? 'pinned (updates.publicKeyFile): only bundles it signed install'
          : 'not pinned (updates.publicKeyFile): no bundle can be installed'}
      </dd>
    </dl>
    {v.admin ? (
      <>
        <noscript>
          <p class="flash error">
            These forms need JavaScript (upload progress, re-authentication). Without it use the console:
            portcullis update apply, portcullis backup create|restore, systemctl restart portcullis-gateway.
          </p>
        </noscript>
        <UpdateForms v={v} />
        <BackupForms v={v} />
        <PowerForms />
        <script src="/static/maintenance.js" defer />
      </>
    ) : (
      <p class="hint">Installing updates, backups, restores and restarts are for admins.</p>
    )}
    <h2>Update history</h2>
    <History status={v.status} />
  </>
);
