/**
 * The uplink's socket writes gathered per turn (coalesced-writes.ts): what mqtt-packet writes field by field
 * reaches the socket as one write, with the same bytes in the same order, the same backpressure, the same end.
 * A real TCP socket for the bytes; a Writable that holds its callback for the backpressure.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer, type Socket } from 'node:net';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { setImmediate as turn } from 'node:timers/promises';
import { coalesceWrites } from '../gateway/src/uplink/coalesced-writes.ts';

/** A Writable that keeps what it is given and calls back only when told (`release`). */
function heldWritable(highWaterMark: number) {
  const got: Buffer[] = [];
  const pending: Array<() => void> = [];
  const w = new Writable({
    highWaterMark,
    write(chunk: Buffer, _enc, cb) {
      got.push(chunk);
      pending.push(cb);
    },
  });
  const release = () => {
    for (const cb of pending.splice(0)) cb();
  };
  return { w, got, release, text: () => Buffer.concat(got).toString() };
}

describe('coalesced socket writes', () => {
  it('hands the socket one write a turn, with every byte in the order written', async (t) => {
    const server = createServer();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    t.after(() => server.close());
    const accepted = once(server, 'connection') as Promise<[Socket]>;
    const port = (server.address() as { port: number }).port;
    const client = connect(port, '127.0.0.1');
    await once(client, 'connect');
    const [peer] = await accepted;
    t.after(() => client.destroy());
    const received: Buffer[] = [];
    peer.on('data', (d: Buffer) => received.push(d));

    let socketWrites = 0;
    const s = client as unknown as { _write: (...a: unknown[]) => void; _writev: (...a: unknown[]) => void };
    const [w1, wv] = [s._write.bind(client), s._writev.bind(client)];
    s._write = (...a) => {
      socketWrites++;
      w1(...a);
    };
    s._writev = (...a) => {
      socketWrites++;
      wv(...a);
    };
    coalesceWrites(client);

    const expected: Buffer[] = [];
    for (let i = 0; i < 40; i++) {
      const b = Buffer.from([i, 0xff - i]);
      client.write(b);
      client.write(`topic/${i}/é`, 'utf8');
      expected.push(b, Buffer.from(`topic/${i}/é`, 'utf8'));
    }
    // A write bigger than the room kept: the room grows, nothing is lost.
    const big = Buffer.alloc(100_000, 7);
    client.write(big);
    expected.push(big);
    assert.equal(socketWrites, 0, 'nothing reaches the socket before the turn ends');
    await turn();
    assert.equal(socketWrites, 1);
    // The next turn, after the room went back to its usual size: a plain Uint8Array too.
    const small = new Uint8Array([1, 2, 3]);
    client.write(small);
    client.write('end');
    expected.push(Buffer.from(small), Buffer.from('end'));
    await turn();
    assert.equal(socketWrites, 2);
    const want = Buffer.concat(expected);
    while (Buffer.concat(received).length < want.length) await once(peer, 'data');
    assert.deepEqual(Buffer.concat(received), want);
  });

  it("returns false while the socket waits for drain, and the socket's own drain wakes the writer", async () => {
    const { w, release } = heldWritable(8);
    coalesceWrites(w);
    assert.equal(w.write(Buffer.alloc(100)), true, 'not yet with the socket');
    await turn();
    assert.equal(w.write(Buffer.alloc(1)), false, 'the socket holds more than its mark');
    const drained = once(w, 'drain');
    release();
    await drained;
    await turn();
    release();
    assert.equal(w.write(Buffer.alloc(1)), true);
  });

  it("calls a write's callback once the socket has taken the turn's bytes", async () => {
    const { w, release } = heldWritable(1024);
    coalesceWrites(w);
    const called: Array<Error | null | undefined> = [];
    w.write('a', (err) => called.push(err));
    w.write('b', (err) => called.push(err));
    await turn();
    assert.deepEqual(called, [], 'not before the socket took them');
    release();
    await turn();
    assert.equal(called.length, 2);
    assert.ok(called.every((err) => !err));
  });

  it('keeps the order when the writer corks and uncorks at the end of the turn, as mqtt-packet does', async () => {
    const { w, release, text } = heldWritable(1024);
    coalesceWrites(w);
    for (const packet of ['one ', 'two ', 'three']) {
      w.cork();
      for (const field of packet) w.write(field);
      process.nextTick(() => w.uncork());
    }
    await turn();
    release();
    await turn();
    assert.equal(text(), 'one two three');
  });

  it('ends with a callback alone, or with a chunk and a callback', async () => {
    for (const form of ['cb', 'chunk+cb'] as const) {
      const { w, release, text } = heldWritable(1024);
      coalesceWrites(w);
      w.write('gathered ');
      let ended = 0;
      if (form === 'cb') w.end(() => ended++);
      else w.end('last', () => ended++);
      release();
      await once(w, 'finish');
      await turn();
      assert.equal(ended, 1, form);
      assert.equal(text(), form === 'cb' ? 'gathered ' : 'gathered last');
    }
  });

  it("ends after what was gathered, and after end's own chunk", async () => {
    const { w, release, text } = heldWritable(1024);
    coalesceWrites(w);
    w.write('first ');
    w.write(Buffer.from('second '));
    w.end('last');
    const finished = once(w, 'finish');
    release();
    await turn();
    release();
    await finished;
    assert.equal(text(), 'first second last');
  });

  it('gives nothing to a stream destroyed before the turn ends; its callbacks see the error', async () => {
    const { w, got } = heldWritable(1024);
    w.on('error', () => {});
    coalesceWrites(w);
    let seen: (Error & { code?: string }) | null | undefined;
    w.write('lost', (err) => {
      seen = err;
    });
    w.destroy();
    await turn();
    assert.equal(got.length, 0);
    assert.equal(seen?.code, 'ERR_STREAM_DESTROYED');
  });
});
