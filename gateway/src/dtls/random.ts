import { randomBytes, randomFillSync } from 'node:crypto';

const POOL_SIZE = 4096;
const pool = Buffer.allocUnsafeSlow(POOL_SIZE);
let used = POOL_SIZE;

/**
 * Public random values (server randoms, Connection IDs) drawn from a pool that one randomFillSync refills:
 * a call into OpenSSL per 128 handshakes instead of one per value. Every byte is handed out once. Secrets
 * (keys, cookie secrets) take randomBytes directly and never come from here.
 */
export function publicRandom(length: number): Buffer {
  if (length > POOL_SIZE / 16) return randomBytes(length);
  if (used + length > POOL_SIZE) {
    randomFillSync(pool);
    used = 0;
  }
  // From Node's pool: what a session keeps (its session and connection IDs) moves into the session's own
  // allocation once established (connection.ts packSession), so no pool slab stays pinned by it.
  const out = Buffer.allocUnsafe(length);
  pool.copy(out, 0, used, used + length);
  pool.fill(0, used, used + length);
  used += length;
  return out;
}
