/**
 * The durable uplink queue's writes — new readings (group commit), their devices' last_seen, PUBACK deletes,
 * expiry — on a second SQLite connection in a worker thread (queue-writer-thread.ts), so the commit's fsync
 * (`synchronous: full`) blocks that thread and not the main one with DTLS, CoAP and policy behind it (issue 23).
 * The caller sends one batch at a time and acknowledges its senders only when the batch's answer says it is
 * committed: durability is the same as a commit on the main thread. The main connection keeps reading the queue.
 * An in-memory database (tests) has no second connection: its batches are written on the main connection.
 */
import { once } from 'node:events';
import type { Worker } from 'node:worker_threads';
import { startWorkerThread } from '../child.ts';
import { StoreError } from './database.ts';
import type { Store } from './index.ts';

export interface QueueRow {
  deviceId: string;
  topic: string;
  payload: Buffer;
  /** The MQTT user properties as JSON. */
  properties: string;
}

/** One transaction: everything in it is committed together, or nothing is. */
export interface QueueBatch {
  enqueuedAt: string;
  rows: QueueRow[];
  /** last_seen writes that ride along (device id, ISO time): no fsync of their own. */
  seen: Array<[string, string]>;
  /** PUBACKed rows to delete. */
  acked: number[];
  /** Delete what was enqueued before this ISO time (retention), or null. */
  expireBefore: string | null;
}

export interface QueueBatchResult {
  /** The new rows' ids, in the batch's order (ascending). */
  ids: number[];
  deleted: number;
  expired: number;
  /** Writes beside the readings that failed (the readings are committed all the same). */
  errors: string[];
}

export interface QueueWriter {
  /** Resolves once the batch is committed; rejects when nothing of it was. Batches commit in the order sent. */
  commit(batch: QueueBatch): Promise<QueueBatchResult>;
  /** Waits for what was sent, then closes the thread's connection. */
  close(): Promise<void>;
}

/** The transaction itself, on whichever connection runs it. A failed side write leaves the readings going in. */
export function writeQueueBatch(store: Store, b: QueueBatch): QueueBatchResult {
  const out: QueueBatchResult = { ids: [], deleted: 0, expired: 0, errors: [] };
  if (b.rows.length + b.seen.length + b.acked.length === 0 && b.expireBefore === null) return out;
  store.transaction(() => {
    for (const r of b.rows) {
      out.ids.push(store.queue.enqueueRow(r.deviceId, r.topic, r.payload, r.properties, b.enqueuedAt));
    }
    for (const [id, at] of b.seen) {
      try {
        store.devices.touch(id, at);
      } catch (err) {
        // SQLite undid only that statement; the transaction and the readings in it go on.
        out.errors.push(`last_seen of ${id}: ${(err as Error).message}`);
      }
    }
    try {
      for (const id of b.acked) if (store.queue.delete(id)) out.deleted++;
    } catch (err) {
      // Not fatal: those rows stay and are published again (at least once).
      out.errors.push(`acknowledged messages not deleted: ${(err as Error).message}`);
    }
    if (b.expireBefore !== null) out.expired = store.queue.deleteEnqueuedBefore(b.expireBefore);
  });
  return out;
}

/** On the main connection: an in-memory database, which no other connection can open. */
class InlineQueueWriter implements QueueWriter {
  constructor(private readonly store: Store) {}
  commit(batch: QueueBatch): Promise<QueueBatchResult> {
    try {
      return Promise.resolve(writeQueueBatch(this.store, batch));
    } catch (err) {
      return Promise.reject(err);
    }
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

/**
 * A batch on its way to the thread: per row, where its device id, topic, properties and payload end in `data`
 * (each starts where the one before ends), so the rows cross as one transferred buffer and a number index —
 * cloning an object per row cost the main thread 2–3 µs a message (worker-protocol.ts in uplink/ says the same).
 */
export interface PackedBatch {
  type: 'commit';
  enqueuedAt: string;
  index: Float64Array;
  data: Uint8Array;
  seen: string[];
  acked: Float64Array;
  expireBefore: string | null;
}
export const ROW_FIELDS = 4;

export type ToQueueThread = PackedBatch | { type: 'close' };

export type FromQueueThread =
  | { type: 'committed'; ids: Float64Array; deleted: number; expired: number; errors: string[] }
  | { type: 'failed'; message: string; code: string | null };

export function packBatch(b: QueueBatch): PackedBatch {
  let room = 0;
  for (const r of b.rows)
    room += (r.deviceId.length + r.topic.length + r.properties.length) * 3 + r.payload.length;
  const data = Buffer.allocUnsafe(room);
  const index = new Float64Array(b.rows.length * ROW_FIELDS);
  let at = 0;
  let i = 0;
  for (const r of b.rows) {
    at += data.write(r.deviceId, at);
    index[i++] = at;
    at += data.write(r.topic, at);
    index[i++] = at;
    at += data.write(r.properties, at);
    index[i++] = at;
    at += r.payload.copy(data, at);
    index[i++] = at;
  }
  return {
    type: 'commit',
    enqueuedAt: b.enqueuedAt,
    index,
    // A copy of its own, exactly as long, that moves to the thread without another copy.
    data: new Uint8Array(data.subarray(0, at)),
    seen: b.seen.flat(),
    acked: Float64Array.from(b.acked),
    expireBefore: b.expireBefore,
  };
}

export function unpackBatch(p: PackedBatch): QueueBatch {
  const data = Buffer.from(p.data.buffer, p.data.byteOffset, p.data.byteLength);
  const rows: QueueRow[] = [];
  let at = 0;
  for (let i = 0; i < p.index.length; i += ROW_FIELDS) {
    const [idEnd, topicEnd, propsEnd, payloadEnd] = p.index.subarray(
      i,
      i + ROW_FIELDS,
    ) as unknown as number[];
    rows.push({
      deviceId: data.toString('utf8', at, idEnd),
      topic: data.toString('utf8', idEnd, topicEnd),
      properties: data.toString('utf8', topicEnd, propsEnd),
      payload: data.subarray(propsEnd, payloadEnd),
    });
    at = payloadEnd as number;
  }
  const seen: Array<[string, string]> = [];
  for (let i = 0; i + 1 < p.seen.length; i += 2) seen.push([p.seen[i] as string, p.seen[i + 1] as string]);
  return { enqueuedAt: p.enqueuedAt, rows, seen, acked: Array.from(p.acked), expireBefore: p.expireBefore };
}

/** How long the thread stays without a batch before it and its connection are let go. */
const IDLE_CLOSE_MS = 20_000;

/** The thread keeps a connection and one batch: a small young generation, as the uplink's own (remote-connection.ts). */
const THREAD_YOUNG_GENERATION_MB = 4;

interface Waiting {
  resolve(r: QueueBatchResult): void;
  reject(err: unknown): void;
}

/**
 * The writer in its thread, started with the first batch (an idle gateway has no thread). If the thread dies,
 * what was waiting is rejected — its senders were not acknowledged and send again; a batch the thread committed
 * before it died is then in the queue twice at worst (at least once) — and the next batch starts a new thread.
 */
class ThreadQueueWriter implements QueueWriter {
  private worker: Worker | null = null;
  private readonly waiting: Waiting[] = [];
  private idle: NodeJS.Timeout | null = null;

  constructor(
    private readonly file: string,
    private readonly synchronous: 'full' | 'normal',
  ) {}

  private start(): Worker {
    const w = startWorkerThread(import.meta.url, 'queue-writer-thread', {
      resourceLimits: { maxYoungGenerationSizeMb: THREAD_YOUNG_GENERATION_MB },
      workerData: { file: this.file, synchronous: this.synchronous },
    });
    w.on('message', (m: FromQueueThread) => {
      // A thread already given up on (it failed) answers nothing that is still waiting: its batches were
      // rejected, and what waits now belongs to its successor.
      if (this.worker !== w) return;
      const next = this.waiting.shift();
      if (this.waiting.length === 0) {
        w.unref();
        this.closeWhenIdle(w);
      }
      if (!next) return;
      if (m.type === 'committed') {
        next.resolve({ ids: Array.from(m.ids), deleted: m.deleted, expired: m.expired, errors: m.errors });
      } else {
        next.reject(new StoreError('ERR_STORE_QUEUE_WRITER', `uplink queue not written: ${m.message}`));
      }
    });
    const gone = (why: string) => {
      if (this.worker !== w) return;
      this.worker = null;
      const lost = this.waiting.splice(0);
      for (const x of lost) x.reject(new StoreError('ERR_STORE_QUEUE_WRITER', `uplink queue writer: ${why}`));
    };
    w.on('error', (err) => gone(err.message));
    w.on('exit', (code) => gone(`thread exited (${code})`));
    return w;
  }

  /**
   * A thread and its connection cost resident memory (issue 20): a gateway whose sensors went quiet (or that
   * queued only a fleet batch) lets them go, and the next batch starts them again (tens of milliseconds).
   */
  private closeWhenIdle(w: Worker): void {
    if (this.idle) clearTimeout(this.idle);
    this.idle = setTimeout(() => {
      this.idle = null;
      if (this.worker !== w || this.waiting.length > 0) return;
      this.worker = null;
      w.postMessage({ type: 'close' } satisfies ToQueueThread);
    }, IDLE_CLOSE_MS);
    this.idle.unref();
  }

  commit(batch: QueueBatch): Promise<QueueBatchResult> {
    if (this.idle) clearTimeout(this.idle);
    this.idle = null;
    this.worker ??= this.start();
    const w = this.worker;
    const packed = packBatch(batch);
    return new Promise<QueueBatchResult>((resolve, reject) => {
      this.waiting.push({ resolve, reject });
      // Kept alive while a batch is out: an awaited commit alone would not hold the process open.
      w.ref();
      w.postMessage(packed, [
        packed.data.buffer as ArrayBuffer,
        packed.index.buffer as ArrayBuffer,
        packed.acked.buffer as ArrayBuffer,
      ]);
    });
  }

  async close(): Promise<void> {
    if (this.idle) clearTimeout(this.idle);
    this.idle = null;
    const w = this.worker;
    if (!w) return;
    // The thread answers batches in order: a last empty one returns once everything before it is answered.
    await this.commit({ enqueuedAt: '', rows: [], seen: [], acked: [], expireBefore: null }).catch(() => {});
    if (this.worker !== w) return; // it died meanwhile
    this.worker = null;
    const exited = once(w, 'exit');
    w.ref();
    w.postMessage({ type: 'close' } satisfies ToQueueThread);
    const timer = setTimeout(() => void w.terminate(), 5000);
    await exited;
    clearTimeout(timer);
  }
}

/** A writer for the store's queue: in a thread of its own unless the database is in memory. */
export function openQueueWriter(store: Store): QueueWriter {
  const { file, synchronous } = store.queue.connection();
  return file ? new ThreadQueueWriter(file, synchronous) : new InlineQueueWriter(store);
}
