import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { credentialFile, FLOWS_CREDENTIALS } from '../../gateway/src/flows/setup.ts';

/**
 * What systemd does for portcullis-flows.service's LoadCredentialEncrypted= lines (no PID 1 here): decrypts
 * Node-RED's credentials with the real `systemd-creds` into `dir` (0700), to be given as $CREDENTIALS_DIRECTORY.
 * Throws if one does not decrypt under its own name.
 */
export function loadFlowsCredentials(credstoreDir: string, dir: string): string {
  mkdirSync(dir, { mode: 0o700 });
  for (const id of Object.values(FLOWS_CREDENTIALS)) {
    execFileSync(
      'systemd-creds',
      ['decrypt', `--name=${id}`, credentialFile(credstoreDir, id), join(dir, id)],
      {
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    );
  }
  return dir;
}
