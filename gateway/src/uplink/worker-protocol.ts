/**
 * The messages between the gateway and broker-worker.ts over the IPC channel. On their own, so that
 * connection.ts (which forks the worker) and the worker (which uses connection.ts) do not import each other.
 */
export type ToWorker =
  | {
      type: 'connect';
      params: {
        url: string;
        clientId: string;
        ca: string;
        cert: string;
        /** The payload base64 (Sparkplug's NDEATH is binary). */
        will?: { topic: string; payload: string; retain: boolean };
      };
      keyPem: string;
    }
  | {
      type: 'publish';
      id: number;
      topic: string;
      payload: string;
      userProperties: Record<string, string>;
      retain: boolean;
    }
  | { type: 'subscribe'; topic: string }
  | { type: 'end'; graceMs: number };

export type FromWorker =
  | { type: 'connect' }
  | { type: 'close' }
  | { type: 'error'; message: string }
  | { type: 'ack'; id: number; err: string | null }
  | { type: 'message'; topic: string; payload: string; userProperties: Record<string, string> }
  | { type: 'ended' };

/**
 * The same connection in a worker thread of the gateway (broker-thread.ts, issue 23). Each side posts an array of
 * these at most about once a millisecond (the gateway's publishes every few: remote-connection.ts), and the
 * publishes in between travel packed in one transferred buffer:
 * cloning an object per message cost the main thread 2–3 µs each, and even flat arrays of strings ~1 µs a string.
 */
export interface PublishBatch {
  type: 'publish';
  /** Per message, PUBLISH_FIELDS numbers: id, then where its topic, user properties (JSON) and payload end in `data`
   * (each starts where the one before ends; the first topic at 0), then 1 if retained. */
  index: Float64Array;
  data: Uint8Array;
}
export const PUBLISH_FIELDS = 5;

export type ToThread =
  | {
      type: 'connect';
      params: {
        url: string;
        clientId: string;
        ca: Uint8Array;
        cert: Uint8Array;
        will?: { topic: string; payload: Uint8Array; retain: boolean };
      };
      keyPem: string;
    }
  | PublishBatch
  | { type: 'subscribe'; topic: string }
  | { type: 'end'; graceMs: number };

export type FromThread =
  | { type: 'connect' }
  | { type: 'close' }
  | { type: 'error'; message: string }
  /** PUBACKs (err null) and failed publishes of a turn, in the order they came. */
  | { type: 'acks'; ids: number[]; errs: Array<string | null> }
  | { type: 'message'; topic: string; payload: Uint8Array; userProperties: Record<string, string> }
  | { type: 'ended' };

/**
 * Schedules `flush` for the end of this turn, or — when the last one ran under `gapMs` ago — for when `gapMs` will
 * have passed since it: under load each post wakes the other thread, which cost the main thread more than the
 * cloning, so posts are spaced `gapMs` apart, each carrying more. Adds at most `gapMs` to a message's way to the
 * broker (it waited the whole gap again before: up to twice that).
 */
export function batchPosts(
  flush: () => void,
  gapMs = 1,
  now: () => number = () => performance.now(),
): () => void {
  let last = Number.NEGATIVE_INFINITY;
  let scheduled = false;
  const run = () => {
    scheduled = false;
    last = now();
    flush();
  };
  return () => {
    if (scheduled) return;
    scheduled = true;
    const wait = last + gapMs - now();
    if (wait <= 0) setImmediate(run);
    // Whole milliseconds, as Node's timers keep them: a fractional delay would make a timer list of its own.
    else setTimeout(run, Math.ceil(wait));
  };
}
