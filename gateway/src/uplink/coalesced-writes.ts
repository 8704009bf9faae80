import type { Writable } from 'node:stream';

/** Room for a turn's writes; a turn that writes more doubles it (at least to what it needs) for that turn. */
const INITIAL_BYTES = 16 * 1024;
/** Room beyond this (a queue replayed after an outage, say) is not kept once its turn is written. */
const KEPT_BYTES = 4 * INITIAL_BYTES;

type WriteCallback = (err?: Error | null) => void;

function callAll(callbacks: readonly WriteCallback[], err: Error | null | undefined): void {
  for (const cb of callbacks) cb(err);
}

/**
 * Gathers what is written to `stream` in one turn of the event loop into one buffer and writes that once, at the
 * end of the turn. mqtt-packet writes a PUBLISH field by field — about ten writes, each a request object queued
 * in the Writable and a slot in the array handed to the socket — which was the largest share of what the uplink's
 * thread allocated once `debug` was quiet (issue 23). Bytes and their order are unchanged.
 *
 * What stays as it was: `write` returns false while the socket itself waits for 'drain' (so a caller that waits
 * for it is woken by the socket's own 'drain'); a write's callback runs when the socket has taken the turn's
 * bytes; `end` first writes what is gathered. A stream destroyed before the turn ends never gets them: their
 * callbacks see the error a destroyed stream gives, as they would have.
 */
export function coalesceWrites(stream: Writable): void {
  const write = stream.write.bind(stream) as (chunk: Buffer, cb?: WriteCallback) => boolean;
  const end = stream.end.bind(stream) as (...args: unknown[]) => Writable;
  let buf = Buffer.allocUnsafeSlow(INITIAL_BYTES);
  let used = 0;
  let callbacks: WriteCallback[] | null = null;
  let due = false;

  const room = (n: number) => {
    if (used + n <= buf.length) return;
    const bigger = Buffer.allocUnsafeSlow(Math.max(buf.length * 2, used + n));
    buf.copy(bigger, 0, 0, used);
    buf = bigger;
  };

  const flush = () => {
    due = false;
    if (used === 0 && !callbacks) return;
    const waiting = callbacks;
    callbacks = null;
    // A copy of its own: the socket may hold a chunk until it can send it, and `buf` is written again next turn.
    const out = Buffer.allocUnsafe(used);
    buf.copy(out, 0, 0, used);
    used = 0;
    if (buf.length > KEPT_BYTES) buf = Buffer.allocUnsafeSlow(INITIAL_BYTES);
    if (stream.destroyed) {
      // As a destroyed Writable answers a write: the error, in a later tick.
      const err = Object.assign(new Error('Cannot call write after a stream was destroyed'), {
        code: 'ERR_STREAM_DESTROYED',
      });
      if (waiting) process.nextTick(() => callAll(waiting, err));
      return;
    }
    write(out, waiting ? (err) => callAll(waiting, err) : undefined);
  };

  stream.write = ((
    chunk: Uint8Array | string,
    encoding?: BufferEncoding | WriteCallback,
    cb?: WriteCallback,
  ) => {
    const done = typeof encoding === 'function' ? encoding : cb;
    if (typeof chunk === 'string') {
      const enc = typeof encoding === 'string' ? encoding : 'utf8';
      const n = Buffer.byteLength(chunk, enc);
      room(n);
      used += buf.write(chunk, used, n, enc);
    } else {
      room(chunk.length);
      // set(), not copy(): a plain Uint8Array is a chunk a Writable takes too.
      buf.set(chunk, used);
      used += chunk.length;
    }
    if (done) {
      callbacks ??= [];
      callbacks.push(done);
    }
    if (!due) {
      due = true;
      process.nextTick(flush);
    }
    return !stream.writableNeedDrain && !stream.destroyed;
  }) as Writable['write'];

  stream.end = ((chunk?: unknown, encoding?: unknown, cb?: unknown) => {
    // What is gathered must reach the socket before its end, and so must end's own chunk, after it.
    if (typeof chunk === 'function') {
      flush();
      return end(chunk);
    }
    if (chunk !== undefined && chunk !== null)
      stream.write(
        chunk as Buffer | string,
        typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8',
      );
    flush();
    const done = typeof encoding === 'function' ? encoding : cb;
    return done ? end(done) : end();
  }) as Writable['end'];
}
