export { type AuditEntry, AuditError, AuditLog, type NewAuditEntry, type VerifyResult } from './audit-log.ts';
export { entryHash, GENESIS_HASH } from './chain.ts';
export { type ExportFormat, formatEntry, toJsonLine, toSyslogLine } from './export.ts';
