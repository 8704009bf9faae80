import { PortcullisError } from '../errors.ts';

export const QUEUE_FULL = 'ERR_UPLINK_QUEUE_FULL';

/**
 * The durable uplink queue is at its bound (uplink.queue.maxMessages): the message was not stored, so whoever
 * sent it must not be told it was. A sensor gets 5.03 Service Unavailable with Max-Age = `retryAfterSeconds`
 * (RFC 7252 §5.9.3.4); a flow gets 503 with Retry-After.
 */
export class QueueFullError extends PortcullisError {
  constructor(
    readonly retryAfterSeconds: number,
    bound: number,
  ) {
    super(
      QUEUE_FULL,
      `uplink queue full (${bound} messages): not stored; try again in ${retryAfterSeconds} s`,
    );
  }
}

/**
 * The refusal as the caller sees it, by its stable code rather than its class: an error rebuilt on this side of a
 * worker or process boundary is still recognised. Null for any other error.
 */
export function queueFull(err: unknown): { retryAfterSeconds: number } | null {
  if (typeof err !== 'object' || err === null) return null;
  const e = err as { code?: unknown; retryAfterSeconds?: unknown };
  if (e.code !== QUEUE_FULL) return null;
  const s = typeof e.retryAfterSeconds === 'number' && e.retryAfterSeconds > 0 ? e.retryAfterSeconds : 1;
  return { retryAfterSeconds: Math.ceil(s) };
}
