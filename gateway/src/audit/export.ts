import { hostname } from 'node:os';
import type { AuditCheckpoint, AuditEntry } from './audit-log.ts';

export type ExportFormat = 'jsonl' | 'syslog';

export function toJsonLine(e: AuditEntry): string {
  return JSON.stringify(e);
}

/**
 * IANA's documentation enterprise number (RFC 5612). Portcullis has no Private Enterprise Number of its own yet;
 * SIEM parsers key on the SD-ID, documented in docs/audit.md.
 */
const SD_ID = 'portcullis@32473';
/** Facility 13 (log audit), severity 5 (notice). */
const PRI = 13 * 8 + 5;
const BOM = '\uFEFF';

/** An RFC 5424 structured-data parameter value, escaped. */
export function sdValue(v: string): string {
  return v.replace(/[\\"\]]/g, (c) => `\\${c}`);
}

/** RFC 5424 header fields must be printable US-ASCII without spaces; anything else becomes `_`. */
export function headerToken(v: string, max: number): string {
  const t = v.replace(/[^\x21-\x7e]/g, '_').slice(0, max);
  return t.length > 0 ? t : '-';
}

export function toSyslogLine(e: AuditEntry, host = hostname(), procId = '-'): string {
  const sd = `[${SD_ID} seq="${e.seq}" actor="${sdValue(e.actor)}" hash="${e.hash}" prevHash="${e.prevHash}"]`;
  const msg = JSON.stringify({ target: e.target, details: e.details });
  return `<${PRI}>1 ${e.ts} ${headerToken(host, 255)} portcullis ${headerToken(procId, 128)} ${headerToken(e.action, 32)} ${sd} ${BOM}${msg}`;
}

export function formatEntry(e: AuditEntry, format: ExportFormat): string {
  return format === 'jsonl' ? toJsonLine(e) : toSyslogLine(e);
}

/**
 * A signed checkpoint in the export, right after the entry it names: a JSON line `{"checkpoint": {...}}`, or a
 * syslog line with MSGID `audit.checkpoint` and SD-ID `portcullis-checkpoint@32473`. The receiver keeps the
 * highest checkpoint it has seen; a later export that no longer reaches it, or has another hash there, shows a
 * truncated or rewritten log (docs/audit.md says how to check the signature).
 */
export function formatCheckpoint(c: AuditCheckpoint, format: ExportFormat, host = hostname()): string {
  const body = { seq: c.seq, hash: c.hash, counter: c.counter, ts: c.ts, signature: c.signature };
  if (format === 'jsonl') return JSON.stringify({ checkpoint: body });
  const sd = `[portcullis-checkpoint@32473 seq="${c.seq}" hash="${c.hash}" counter="${c.counter}" signature="${c.signature}"]`;
  return `<${PRI}>1 ${c.ts} ${headerToken(host, 255)} portcullis - audit.checkpoint ${sd} ${BOM}${JSON.stringify({ checkpoint: body })}`;
}
