import { createHash } from 'node:crypto';
import canonicalizeModule from 'canonicalize';

// The package is CommonJS whose module.exports is the function, but its .d.ts declares an ES default export.
const canonicalize = canonicalizeModule as unknown as (input: unknown) => string | undefined;

export const GENESIS_HASH = '0'.repeat(64);

export interface AuditContent {
  seq: number;
  ts: string;
  actor: string;
  action: string;
  target: string | null;
  details: Record<string, unknown>;
}

/**
 * SHA-256 over the RFC 8785 canonical JSON of the entry's content, followed by the previous entry's hash.
 * The sequence number is part of the content, so moving or swapping entries changes their hashes.
 */
export function entryHash(content: AuditContent, prevHash: string): string {
  const canonical = canonicalize(content);
  if (canonical === undefined) throw new TypeError('audit entry cannot be canonicalised');
  return createHash('sha256').update(canonical, 'utf8').update(prevHash, 'utf8').digest('hex');
}
