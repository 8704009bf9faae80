import { PortcullisError } from '../errors.ts';

export type BackupErrorCode =
  /** Not a Portcullis backup, or a format/KDF this release does not read. */
  | 'ERR_BACKUP_FORMAT'
  /** The identity signature does not verify (changed after it was made), or names another gateway than expected. */
  | 'ERR_BACKUP_SIGNATURE'
  /** The passphrase does not open it. */
  | 'ERR_BACKUP_PASSPHRASE'
  /** The passphrase is right but the encrypted payload or its contents were changed. */
  | 'ERR_BACKUP_TAMPERED'
  /** Made by a newer release (database schema or archive format) than this one. */
  | 'ERR_BACKUP_SCHEMA_NEWER'
  /** Larger than the limit. */
  | 'ERR_BACKUP_TOO_LARGE'
  /** A passphrase too short to protect the secrets inside. */
  | 'ERR_BACKUP_WEAK_PASSPHRASE'
  /** Its configuration does not fit this gateway (another data directory, invalid here). */
  | 'ERR_BACKUP_INCOMPATIBLE'
  /** A restore is already staged, or nothing is staged to roll back. */
  | 'ERR_BACKUP_STATE';

/** Why a backup was not made or an archive not restored; the message never contains the passphrase or a key. */
export class BackupError extends PortcullisError {
  constructor(code: BackupErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}
