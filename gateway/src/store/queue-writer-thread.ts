/**
 * The uplink queue's writer thread (queue-writer.ts): its own SQLite connection to the gateway's database, with
 * the same `synchronous` setting, commits each batch it is sent in one transaction and answers once the commit
 * (and its fsync) returned. One batch at a time, in the order sent: ids grow in that order, which keeps each
 * device's readings in order. SQLite has one writer: busy_timeout (database.ts) makes the main connection's rare
 * writes and this thread's wait for each other instead of failing.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Store } from './index.ts';
import { type FromQueueThread, type ToQueueThread, unpackBatch, writeQueueBatch } from './queue-writer.ts';

const port = parentPort;
if (!port) throw new Error('queue-writer-thread runs as a worker thread of the gateway');
const { file, synchronous } = workerData as { file: string; synchronous: 'full' | 'normal' };
const store = Store.open(file, { synchronous, checked: true });

port.on('message', (p: ToQueueThread) => {
  if (p.type === 'close') {
    store.close();
    port.close();
    return;
  }
  let answer: FromQueueThread;
  try {
    const r = writeQueueBatch(store, unpackBatch(p));
    answer = {
      type: 'committed',
      ids: Float64Array.from(r.ids),
      deleted: r.deleted,
      expired: r.expired,
      errors: r.errors,
    };
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    answer = {
      type: 'failed',
      message: (err as Error).message,
      code: typeof code === 'string' ? code : null,
    };
  }
  port.postMessage(answer);
});
