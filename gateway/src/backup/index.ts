export { type ArchiveHeader, certificateFingerprint, MIN_PASSPHRASE_CHARS } from './archive.ts';
export { BackupError, type BackupErrorCode } from './errors.ts';
export {
  applyStagedRestore,
  type BackupDeps,
  type BackupSummary,
  backupFor,
  createBackup,
  DOES_NOT_MOVE,
  describeArchive,
  MAX_ARCHIVE_BYTES,
  RESTORE_DIR,
  type RestoreOptions,
  restoreStaged,
  type StagedRestore,
  stageRestore,
} from './service.ts';
