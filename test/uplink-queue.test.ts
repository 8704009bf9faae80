/**
 * The uplink queue's bounds on the real SQLite store: at its bound it refuses (backpressure, counted), and only
 * age expires what it holds (retention, counted).
 * (Delivery itself is proven end to end against mosquitto in e2e*.test.ts.)
 */
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ManualClock, systemClock } from '../gateway/src/clock.ts';
import { parseConfig } from '../gateway/src/config/index.ts';
import { Core } from '../gateway/src/core.ts';
import { createLogger } from '../gateway/src/log.ts';
import { PullManager } from '../gateway/src/pull/pull-manager.ts';
import { Store } from '../gateway/src/store/index.ts';
import { Uplink, type UplinkOptions } from '../gateway/src/uplink/index.ts';
import { QueueFullError, queueFull } from '../gateway/src/uplink/queue-full.ts';
import { withRawDb } from './helpers/raw-db.ts';
import { tempDir } from './helpers/tmp.ts';

const quiet = createLogger('fatal');

// No client certificate: the uplink never connects, so what is queued stays queued.
const opts = (o: Partial<UplinkOptions>): UplinkOptions => ({
  url: 'mqtts://127.0.0.1:1',
  clientId: 'q',
  topicPrefix: 'site',
  tls: { ca: Buffer.alloc(0), cert: null, key: { kind: 'pem', pem: '' } },
  ...o,
});
/** A row a century old, straight into the store (past any maxAge). */
const enqueueOldRow = (store: Store) =>
  store.queue.enqueue({
    deviceId: 'd0',
    topic: 'site/devices/d0/telemetry',
    payload: Buffer.from('old'),
    properties: {},
    enqueuedAt: '1900-01-01T00:00:00.000Z',
  });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const msg = (i: number) => ({
  deviceId: `d${i % 2}`,
  payload: Buffer.from(`m${i}`),
  contentFormat: null,
  credentialKind: 'psk',
});

describe('uplink queue', () => {
  it('counts what the writer thread committed before it died, whether or not the sender heard', async (t) => {
    for (let trial = 0; trial < 6; trial++) {
      const store = Store.open(join(tempDir(t), `q${trial}.db`));
      const u = new Uplink(store, opts({}), new ManualClock(), quiet);
      await u.enqueue(msg(0)); // the thread is up
      const sent = u.enqueue(msg(1));
      await new Promise((r) => setImmediate(r));
      // The thread dies while the batch is out: before, during or after its commit, by the trial's delay.
      const worker = (u as unknown as { writer: { worker: { terminate(): Promise<number> } | null } }).writer
        .worker;
      await sleep(2 + trial);
      await worker?.terminate();
      // Every sender hears one way or the other (a ref'd timer: a sender left hanging fails here, by name).
      let guard: NodeJS.Timeout | undefined;
      const acknowledged = await Promise.race([
        sent.then(
          () => true,
          () => false,
        ),
        new Promise<never>((_, reject) => {
          guard = setTimeout(
            () => reject(new Error(`trial ${trial}: the sender was never answered`)),
            10_000,
          );
        }),
      ]).finally(() => clearTimeout(guard));
      const stored = store.queue.depth();
      assert.ok(stored >= (acknowledged ? 2 : 1), 'an acknowledged reading is stored');
      assert.equal(
        u.status().queueDepth,
        stored,
        `trial ${trial}: the depth the bound uses is what is stored`,
      );
      await u.stop();
      store.close();
    }
  });

  it('pauses longer after each failed commit instead of retrying at once (a store that keeps refusing)', async (t) => {
    const file = join(tempDir(t), 'q.db');
    const store = Store.open(file);
    t.after(() => store.close());
    enqueueOldRow(store);
    // Retention must delete that row, and the disk refuses every delete (as a read-only remount would).
    withRawDb(file, (db) =>
      db.exec(
        "CREATE TRIGGER refuse_delete BEFORE DELETE ON uplink_queue BEGIN SELECT RAISE(ABORT, 'disk refuses'); END",
      ),
    );
    const lines: Array<{ msg: string; failures?: number; suppressed?: number }> = [];
    const logger = createLogger('error', { write: (l: string) => void lines.push(JSON.parse(l)) });
    const clock = new ManualClock();
    // Retention ticks every 50 ms here (every minute by default): each would start a commit of its own.
    const u = new Uplink(store, opts({ maxAgeMs: 50 }), clock, logger);
    u.start();
    t.after(() => u.stop());
    await sleep(1500);
    const failed = () => lines.filter((l) => l.msg === 'uplink queue: commit failed');
    assert.equal(failed().length, 1, 'one line a minute, not one per attempt');
    clock.advance(61_000);
    for (let i = 0; i < 100 && failed().length < 2; i++) await sleep(50);
    const second = failed()[1];
    assert.ok(second, 'the next minute says how many attempts failed');
    // 100, 200, 400, 800, 1600 ms: five or six attempts in those seconds; retried at once it was thousands.
    assert.ok((second.failures ?? 0) <= 8, `attempts: ${second.failures}`);
    assert.equal(store.queue.depth(), 1, 'the row is still there, counted');
    assert.equal(u.status().queueDepth, 1);
  });

  it('keeps messages durable across a restart of the process (a new Uplink on the same file)', async (t) => {
    const file = join(tempDir(t), 'q.db');
    const s1 = Store.open(file);
    const u1 = new Uplink(s1, opts({}), new ManualClock(), quiet);
    for (let i = 0; i < 3; i++) await u1.enqueue(msg(i));
    s1.close();
    const s2 = Store.open(file);
    const u2 = new Uplink(s2, opts({}), new ManualClock(), quiet);
    assert.equal(u2.status().queueDepth, 3);
    assert.deepEqual(
      s2.queue.peek(10).map((m) => [m.topic, m.payload.toString()]),
      [
        ['site/devices/d0/telemetry', 'm0'],
        ['site/devices/d1/telemetry', 'm1'],
        ['site/devices/d0/telemetry', 'm2'],
      ],
    );
    s2.close();
  });

  it('refuses beyond maxMessages (ERR_UPLINK_QUEUE_FULL, a retry hint), counts it, stores none of it', async (t) => {
    const store = Store.open(join(tempDir(t), 'q.db'));
    const u = new Uplink(store, opts({ maxMessages: 3, retryAfterSeconds: 7 }), new ManualClock(), quiet);
    // One turn of the event loop: one batch, of which the first three fit, in arrival order.
    const results = await Promise.allSettled([0, 1, 2, 3, 4].map((i) => u.enqueue(msg(i))));
    assert.deepEqual(
      results.map((r) => r.status),
      ['fulfilled', 'fulfilled', 'fulfilled', 'rejected', 'rejected'],
    );
    for (const r of results.slice(3)) {
      const err = (r as PromiseRejectedResult).reason as QueueFullError;
      assert.ok(err instanceof QueueFullError);
      assert.equal(err.code, 'ERR_UPLINK_QUEUE_FULL');
      assert.deepEqual(queueFull(err), { retryAfterSeconds: 7 });
    }
    // A later one alone is refused too: nothing acknowledged is ever dropped to make room.
    await assert.rejects(u.enqueue(msg(5)), { code: 'ERR_UPLINK_QUEUE_FULL' });
    const s = u.status();
    assert.equal(s.state, 'awaiting-certificate');
    assert.equal(s.queueDepth, 3);
    assert.equal(s.refused, 3);
    assert.equal(s.dropped, 0);
    assert.deepEqual(
      store.queue.peek(10).map((m) => m.payload.toString()),
      ['m0', 'm1', 'm2'],
    );
    assert.equal(queueFull(new Error('disk full')), null, 'another failure is not a refusal');
    store.close();
  });

  it('a pulled reading refused by a full queue is counted by the poller, not lost silently', async (t) => {
    const dir = tempDir(t);
    const core = Core.open(parseConfig({ dataDir: join(dir, 'var') }, dir), systemClock);
    t.after(() => core.close());
    core.identity.addPskDevice({ id: 'p1', pskIdentity: 'p1', generate: true }, 'test');
    const u = new Uplink(core.store, opts({ maxMessages: 1 }), systemClock, quiet);
    const pull = new PullManager(core, u, quiet);
    // What the poller worker sends for each reading it took (pull-manager.ts onMessage).
    const reading = (v: string) =>
      (pull as unknown as { onMessage(m: unknown): void }).onMessage({
        type: 'reading',
        deviceId: 'p1',
        payload: Buffer.from(v).toString('base64'),
        contentFormat: null,
      });
    const until = async (pred: () => boolean) => {
      for (let n = 0; !pred() && n < 200; n++) await sleep(10);
    };
    reading('21.5');
    await until(() => u.status().queueDepth === 1);
    reading('21.6');
    await until(() => pull.health().refused === 1);
    assert.equal(u.status().queueDepth, 1);
    assert.equal(u.status().refused, 1);
    assert.equal(pull.health().refused, 1);
  });

  it("writes last_seen in the readings' commit, on a connection of its own, before they are acknowledged", async (t) => {
    const store = Store.open(join(tempDir(t), 'q.db'));
    t.after(() => store.close());
    store.devices.insert({ id: 'd0', credentialKind: 'psk', state: 'active' }, '2026-12-06T09:00:00.000Z');
    const u = new Uplink(store, opts({}), new ManualClock(), quiet);
    t.after(() => u.stop());
    const before = store.dataVersion();
    await Promise.all([
      u.enqueue({ ...msg(0), seenAt: '2026-12-06T09:00:05.000Z' }),
      // A device that is not there: its last_seen changes nothing, and its reading is stored all the same.
      u.enqueue({ ...msg(1), seenAt: '2026-12-06T09:00:05.000Z' }),
      u.enqueue(msg(2)),
    ]);
    // Read on the main connection once the promises resolved: committed, and by another connection (the
    // writer's thread; PRAGMA data_version moves only for other connections' commits).
    assert.equal(store.devices.get('d0')?.lastSeen, '2026-12-06T09:00:05.000Z');
    assert.notEqual(store.dataVersion(), before);
    assert.deepEqual(
      store.queue.peek(10).map((m) => [m.deviceId, m.payload.toString(), m.properties.deviceId]),
      [
        ['d0', 'm0', 'd0'],
        ['d1', 'm1', 'd1'],
        ['d0', 'm2', 'd0'],
      ],
    );
    assert.equal(u.status().queueDepth, 3);
  });

  it('keeps arrival order across batches committed while earlier ones are still with the writer', async (t) => {
    const store = Store.open(join(tempDir(t), 'q.db'));
    t.after(() => store.close());
    const u = new Uplink(store, opts({}), new ManualClock(), quiet);
    t.after(() => u.stop());
    const all: Promise<void>[] = [];
    // Several turns of the event loop, each adding readings while the batch before may still be committing.
    for (let turn = 0; turn < 20; turn++) {
      for (let i = 0; i < 10; i++) all.push(u.enqueue(msg(turn * 10 + i)));
      await new Promise((r) => setImmediate(r));
    }
    await Promise.all(all);
    const stored = store.queue.peek(1000).map((m) => m.payload.toString());
    assert.deepEqual(
      stored,
      Array.from({ length: 200 }, (_, i) => `m${i}`),
    );
    assert.equal(u.status().queueDepth, 200);
  });

  it('drops messages older than maxAge, counted, and keeps younger ones', async (t) => {
    const store = Store.open(join(tempDir(t), 'q.db'));
    const clock = new ManualClock();
    const u = new Uplink(store, opts({ maxAgeMs: 200 }), clock, quiet);
    await u.enqueue(msg(0));
    clock.advance(300);
    await u.enqueue(msg(1));
    u.start();
    try {
      await sleep(450);
      assert.equal(u.status().dropped, 1);
      assert.deepEqual(
        store.queue.peek(10).map((m) => m.payload.toString()),
        ['m1'],
      );
    } finally {
      await u.stop();
      store.close();
    }
  });

  it('starts no writer thread for the retention sweep of an empty queue, and one for a queue that holds rows', async (t) => {
    const threads = () => readdirSync('/proc/self/task').length;
    const clock = new ManualClock();
    // A queue of one row, written by an uplink that is then stopped (its writer's thread with it).
    const full = join(tempDir(t), 'full.db');
    const s1 = Store.open(full);
    const u1 = new Uplink(s1, opts({}), clock, quiet);
    await u1.enqueue(msg(0));
    await u1.stop();
    s1.close();
    await stat(full); // libuv's pool is up before the threads are counted
    await sleep(200); // and the stopped writer's thread is gone
    const before = threads();

    const empty = Store.open(join(tempDir(t), 'empty.db'));
    const idle = new Uplink(empty, opts({ maxAgeMs: 50 }), clock, quiet);
    idle.start();
    try {
      await sleep(500); // ten sweeps at this maxAge; one a minute by default
      assert.ok(threads() <= before, 'an empty queue is swept without a thread');
    } finally {
      await idle.stop();
      empty.close();
    }

    const s2 = Store.open(full);
    clock.advance(1000);
    await sleep(200);
    const base = threads();
    const u2 = new Uplink(s2, opts({ maxAgeMs: 50 }), clock, quiet);
    u2.start();
    try {
      for (let i = 0; i < 100 && u2.status().dropped === 0; i++) await sleep(50);
      assert.equal(u2.status().dropped, 1, 'the expired row is cut');
      assert.ok(threads() > base, 'by the writer, in its thread');
      assert.equal(s2.queue.depth(), 0);
    } finally {
      await u2.stop();
      s2.close();
    }
  });

  it('still cuts an expired row its count had missed (a depth short after a writer died)', async (t) => {
    const store = Store.open(join(tempDir(t), 'q.db'));
    const u = new Uplink(store, opts({ maxAgeMs: 50 }), new ManualClock(), quiet);
    // Written behind the uplink's back after it counted an empty queue.
    enqueueOldRow(store);
    u.start();
    try {
      for (let i = 0; i < 100 && store.queue.depth() > 0; i++) await sleep(50);
      assert.equal(store.queue.depth(), 0);
    } finally {
      await u.stop();
      store.close();
    }
  });
});
