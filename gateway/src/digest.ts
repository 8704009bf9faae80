import { createHash } from 'node:crypto';

/** SHA-256 in lower-case hex: token and code hashes, file digests. */
export const sha256Hex = (data: Buffer | string): string => createHash('sha256').update(data).digest('hex');
