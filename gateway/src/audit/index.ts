export {
  type AuditCheckpoint,
  type AuditEntry,
  AuditError,
  AuditLog,
  adoptRestoredHead,
  CHECKPOINT_EVERY,
  CHECKPOINT_INTERVAL_MS,
  MAX_DETAILS_BYTES,
  type NewAuditEntry,
  type VerifyResult,
} from './audit-log.ts';
export { entryHash, GENESIS_HASH } from './chain.ts';
export { type ExportFormat, formatCheckpoint, formatEntry, toJsonLine, toSyslogLine } from './export.ts';
export {
  type AuditSealing,
  checkpointMessage,
  headMac,
  sealingFrom,
  verifyCheckpoint,
} from './sealing.ts';
