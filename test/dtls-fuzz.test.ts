/**
 * Robustness of the DTLS server against hostile input: a seeded, bounded fuzz run of ≥ 100,000 malformed or
 * mutated datagrams (bit flips, truncation, extension, random bytes, forged record and handshake-fragment
 * headers, oversized and overlapping fragments), then proof that the server still serves a session that
 * existed before the storm and a new independent peer after it. Plus the handshake under 30 % packet loss.
 *
 * The corpus is what real handshakes sent (PSK, ECDHE-ECDSA with a client certificate, raw public key,
 * Connection ID). Mutants are replayed from the same local ports the recorders used, so their cookies stay
 * valid and mutations reach the handshake state machine rather than stopping at the cookie check.
 * A failing run prints its seed; set DTLS_FUZZ_SEED to replay it exactly.
 */
import assert from 'node:assert/strict';
import { createSocket, type Socket } from 'node:dgram';
import { once } from 'node:events';
import { after, before, describe, it } from 'node:test';
import { parse } from 'coap-packet';
import { coapPost, type Fixture, PSK_IDENTITY, startFixture, waitFor } from './helpers/coaps-fixture.ts';
import { type TestClientOptions, TestDtlsClient } from './helpers/dtls-test-client.ts';
import { freeUdpPort } from './helpers/gateway.ts';
import { runPeer } from './helpers/peers.ts';
import { makePki, type TestPki } from './helpers/pki.ts';
import { prng } from './helpers/prng.ts';

const SEED = Number(process.env.DTLS_FUZZ_SEED ?? 0x5eed_d715);
const TARGET_DATAGRAMS = 100_000;
const BATCH = 200;

type Rng = ReturnType<typeof prng>;

/** A recorded handshake: the datagrams it sent and the local port they came from. */
interface Recording {
  port: number;
  datagrams: Buffer[];
}

const INTERESTING_U24 = [0, 1, 0x7f, 0x80, 0xff, 0x100, 0x3fff, 0x4000, 0xffff, 0x10000, 0xfffffe, 0xffffff];
const INTERESTING_U8 = [0, 1, 0x7f, 0x80, 0xfe, 0xff];

function pick<T>(rng: Rng, list: readonly T[]): T {
  return list[rng.int(list.length)] as T;
}

/** One mutant of a corpus datagram. Each strategy targets a different layer of the parser. */
function mutate(rng: Rng, corpus: Buffer[]): Buffer {
  const base = pick(rng, corpus);
  const d = Buffer.from(base);
  switch (rng.int(10)) {
    case 0: {
      // Bit flips anywhere.
      const flips = 1 + rng.int(8);
      for (let i = 0; i < flips && d.length > 0; i++) {
        const at = rng.int(d.length);
        d[at] = (d[at] as number) ^ (1 << rng.int(8));
      }
      return d;
    }
    case 1:
      // Truncation, including inside the record header.
      return d.subarray(0, rng.int(d.length + 1));
    case 2:
      // Extension with random trailing bytes (a second, broken record).
      return Buffer.concat([d, rng.bytes(1 + rng.int(64))]);
    case 3:
      // Pure noise, sometimes far larger than any MTU.
      return rng.bytes(rng.int(10) === 0 ? 2000 + rng.int(14_000) : rng.int(300));
    case 4: {
      // Forged record header fields: type, version, epoch, sequence number, length.
      if (d.length < 13) return d;
      switch (rng.int(5)) {
        case 0:
          d[0] = pick(rng, [20, 21, 22, 23, 24, 25, 0, 255]);
          break;
        case 1:
          d.writeUInt16BE(pick(rng, [0xfefd, 0xfeff, 0xfefc, 0x0303, 0xfe00, 0xffff]), 1);
          break;
        case 2:
          d.writeUInt16BE(pick(rng, [0, 1, 2, 0xffff]), 3);
          break;
        case 3:
          d.writeUIntBE(pick(rng, [0, 1, 2 ** 48 - 1, rng.int(2 ** 31)]), 5, 6);
          break;
        default:
          d.writeUInt16BE(pick(rng, [0, 1, d.length - 13, d.length - 12, 0x4000, 0x4800, 0xffff]), 11);
      }
      return d;
    }
    case 5: {
      // Forged handshake fragment header: length, message_seq, fragment_offset, fragment_length.
      if (d.length < 25 || d[0] !== 22) return d;
      const field = pick(rng, [1, 4, 6, 9]);
      if (field === 4) d.writeUInt16BE(pick(rng, [0, 1, 2, 3, 0xffff]), 13 + field);
      else d.writeUIntBE(pick(rng, INTERESTING_U24), 13 + field, 3);
      if (rng.int(3) === 0) d[13] = pick(rng, [0, 1, 2, 3, 11, 12, 13, 14, 15, 16, 20, 99, 255]);
      return d;
    }
    case 6: {
      // One byte set to a boundary value (vector lengths, counts).
      if (d.length === 0) return d;
      d[rng.int(d.length)] = pick(rng, INTERESTING_U8);
      return d;
    }
    case 7: {
      // Splice: the head of one datagram onto the tail of another (records that straddle).
      const other = pick(rng, corpus);
      return Buffer.concat([d.subarray(0, rng.int(d.length + 1)), other.subarray(rng.int(other.length + 1))]);
    }
    case 8: {
      // Re-fragment the first handshake message into a random, overlapping, possibly oversized fragment.
      if (d.length < 25 || d[0] !== 22) return d;
      const body = d.subarray(25, 13 + d.readUInt16BE(11));
      const total = rng.int(4) === 0 ? pick(rng, INTERESTING_U24) : body.length;
      const offset = rng.int(Math.max(1, body.length));
      const frag = body.subarray(offset, offset + rng.int(body.length - offset + 1));
      const hs = Buffer.alloc(12 + frag.length);
      hs[0] = d[13] as number;
      hs.writeUIntBE(total, 1, 3);
      hs.writeUInt16BE(d.readUInt16BE(17), 4);
      hs.writeUIntBE(offset, 6, 3);
      hs.writeUIntBE(frag.length, 9, 3);
      frag.copy(hs, 12);
      const rec = Buffer.alloc(13);
      d.copy(rec, 0, 0, 11);
      rec.writeUInt16BE(hs.length, 11);
      return Buffer.concat([rec, hs]);
    }
    default: {
      // Duplicate records inside one datagram (the same sequence number twice).
      return Buffer.concat([d, d]);
    }
  }
}

async function bindPort(port: number): Promise<Socket> {
  const s = createSocket('udp4');
  // Server replies (HelloVerifyRequests, alerts) are read and dropped.
  s.on('message', () => {});
  s.bind(port, '127.0.0.1');
  await once(s, 'listening');
  return s;
}

async function record(opts: TestClientOptions, payloads: string[]): Promise<Recording> {
  const c = new TestDtlsClient({ ...opts, recordSent: true });
  await c.connect();
  for (const p of payloads) {
    c.send(coapPost(p));
    await c.receive();
  }
  const port = c.localPort;
  c.close();
  return { port, datagrams: [...c.sent] };
}

describe('DTLS fuzzing', () => {
  let pki: TestPki;
  let f: Fixture;
  before(async () => {
    pki = await makePki();
    f = await startFixture(pki, {
      connectionIds: true,
      // Let mutants that carry a valid cookie open handshakes as fast as they come, so the fuzz reaches
      // the state machine; the rate limit has its own tests.
      limits: { handshakesPerSecondPerSource: 1_000_000 },
    });
  });
  after(() => f.close());

  it(`survives ≥ ${TARGET_DATAGRAMS.toLocaleString('en')} malformed and mutated datagrams and keeps serving (seed ${SEED})`, async () => {
    const psk = { identity: PSK_IDENTITY, key: Buffer.from(f.psk) };
    const recordings = [
      await record({ port: f.port, suite: 'TLS_PSK_WITH_AES_128_CCM_8', psk }, ['a', 'b']),
      await record({ port: f.port, suite: 'TLS_PSK_WITH_AES_128_GCM_SHA256', psk, connectionId: true }, [
        'c',
      ]),
      await record(
        {
          port: f.port,
          suite: 'TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8',
          certificate: { chain: [pki.client.der], key: pki.client.key },
        },
        ['d'],
      ),
      await record(
        {
          port: f.port,
          suite: 'TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256',
          certificate: { key: pki.client.key, rawPublicKey: true },
        },
        ['e'],
      ),
    ];
    const corpus = recordings.flatMap((r) => r.datagrams);

    // A session that exists before the storm and must survive it.
    const survivor = new TestDtlsClient({ port: f.port, suite: 'TLS_PSK_WITH_AES_128_CCM_8', psk });
    await survivor.connect();

    const sockets = await Promise.all([
      ...recordings.map((r) => bindPort(r.port)),
      bindPort(0), // a stranger with no cookie at all
    ]);
    const rng = prng(SEED);
    const start = f.server.stats.datagrams;
    let sent = 0;
    try {
      while (f.server.stats.datagrams - start < TARGET_DATAGRAMS) {
        for (let i = 0; i < BATCH; i++) {
          const s = rng.int(sockets.length);
          const socket = sockets[s] as Socket;
          const rec = recordings[s];
          // Now and then replay a whole recorded handshake verbatim first, so the next mutants meet a
          // handshake in progress (reassembly, key exchange, Finished) instead of the cookie check.
          const datagram =
            rec && rng.int(50) === 0
              ? (rec.datagrams[1] as Buffer)
              : mutate(rng, rec ? rec.datagrams : corpus);
          socket.send(datagram, f.port, '127.0.0.1');
          sent++;
        }
        // Pace on what the server has actually read, so the kernel buffer never overflows silently.
        const before = f.server.stats.datagrams;
        await waitFor(
          'the server to read the batch',
          () => (f.server.stats.datagrams - start >= sent - 2 * BATCH ? true : undefined),
          10_000,
        ).catch(() => {
          assert.fail(
            `server stalled at ${f.server.stats.datagrams - start}/${sent} (was ${before - start})`,
          );
        });
      }
      await waitFor(
        'the last batch',
        () => (f.server.stats.datagrams - start >= sent ? true : undefined),
        5000,
      ).catch(() => {});
    } finally {
      for (const s of sockets) s.close();
    }

    const received = f.server.stats.datagrams - start;
    const failureCodes = new Map<string, number>();
    for (const x of f.failures) failureCodes.set(x.code, (failureCodes.get(x.code) ?? 0) + 1);
    // What the run reached, for whoever reads the log: how deep the mutants got.
    console.log(
      JSON.stringify({
        seed: SEED,
        sent,
        stats: f.server.stats,
        failureCodes: Object.fromEntries(failureCodes),
      }),
    );
    assert.ok(received >= TARGET_DATAGRAMS, `server read ${received} datagrams`);
    assert.deepEqual(f.internalErrors, [], `seed ${SEED}: the socket handler threw`);
    assert.equal(f.server.stats.internalErrors, 0);

    // The pre-existing session still works…
    survivor.send(coapPost('still here', 0x4242));
    assert.equal(parse(await survivor.receive()).code, '2.04');
    survivor.close();
    assert.ok(f.telemetry.some((t) => t.payload.toString() === 'still here'));

    // …and an independent peer still gets a new session.
    const r = await runPeer(
      'coap-client-openssl',
      [
        '-m',
        'post',
        '-u',
        PSK_IDENTITY,
        '-k',
        f.psk,
        '-e',
        'after the storm',
        `coaps://127.0.0.1:${f.port}/telemetry`,
      ],
      { timeoutMs: 15_000 },
    );
    assert.equal(r.code, 0, r.stderr);
    await waitFor('telemetry after the fuzz run', () =>
      f.telemetry.find((t) => t.payload.toString() === 'after the storm'),
    );
  });
});

describe('DTLS under packet loss', () => {
  let f: Fixture;
  before(async () => {
    f = await startFixture(null);
  });
  after(() => f.close());

  const client = (payload: string, loss: string, localPort?: number) =>
    runPeer(
      'coap-client-openssl',
      [
        ...(localPort ? ['-p', String(localPort)] : []),
        ...['-v', '7', '-m', 'post', '-u', PSK_IDENTITY, '-k', f.psk, '-l', loss, '-e', payload],
        `coaps://127.0.0.1:${f.port}/telemetry`,
      ],
      { timeoutMs: 120_000 },
    );
  const delivered = (p: string) => f.telemetry.some((t) => t.payload.toString() === p);
  const drops = (out: Buffer) => out.toString().match(/Packet \d+ dropped/g)?.length ?? 0;

  it('completes the handshake when the key exchange is lost and the Finished overtakes it', async () => {
    // libcoap numbers what it sends: 3 is flight 3 whole, 4 its ClientKeyExchange retransmitted alone, 9 and
    // 12 the Finished of the next two retransmissions. Only a server that keeps the early Finished (from
    // packet 6) until the ClientKeyExchange of packet 7 gives it keys completes before the client gives up.
    const r = await client('reordered', '3,4,9,12');
    assert.equal(r.code, 0, r.stderr);
    // Packet 12 is never sent: the handshake is done by then.
    assert.equal(drops(r.stdout), 3, r.stdout.toString());
    assert.ok(f.sessions.length >= 1);
    await waitFor('telemetry after a lost key exchange', () => (delivered('reordered') ? true : undefined));
  });

  it("resends its final flight when the client sends its own again, until the client's first record shows it arrived", async () => {
    const c = new TestDtlsClient({
      port: f.port,
      suite: 'TLS_PSK_WITH_AES_128_CCM_8',
      psk: { identity: PSK_IDENTITY, key: Buffer.from(f.psk) },
      timeoutMs: 1000,
    });
    try {
      await c.connect();
      // As a client whose Finished seemed unanswered: its flight again, and the server's Finished comes again.
      c.sendRaw(c.finalFlight as Buffer);
      assert.equal(await c.nextHandshakeRecord(), 1, "the server's Finished, under the new keys");
      // The client's first record: the server knows its flight arrived and keeps it no longer.
      c.send(coapPost('after the handshake', 0x4242));
      await c.receive();
      c.sendRaw(c.finalFlight as Buffer);
      await assert.rejects(c.nextHandshakeRecord(), /timed out|timeout/i, 'nothing resent once released');
    } finally {
      c.close();
    }
  });

  it('completes handshakes and delivers CoAP requests with coap-client -l 30%', async () => {
    // Random loss of 30 % of what each client sends, handshake flights included. Four clients so that some
    // loss is all but certain. A client may give up after four lost retransmissions in a row (its own
    // budget, ~4 % of runs here), so each gets three tries; the server must never be the reason.
    const payloads = ['lossy 1', 'lossy 2', 'lossy 3', 'lossy 4'];
    let dropped = 0;
    await Promise.all(
      payloads.map(async (p) => {
        for (let attempt = 0; attempt < 3 && !delivered(p); attempt++) {
          // A port of its own: concurrent libcoap clients may otherwise share one (SO_REUSEADDR).
          const r = await client(p, '30%', await freeUdpPort());
          dropped += drops(r.stdout);
          // libcoap exits 0 even when it gave up; delivery is the proof.
          await waitFor(p, () => (delivered(p) ? true : undefined), 1000).catch(() => {});
        }
      }),
    );
    assert.ok(dropped > 0, 'libcoap dropped no datagram: the test proved nothing');
    for (const p of payloads) assert.ok(delivered(p), `"${p}" never arrived`);
    assert.deepEqual(f.internalErrors, []);
  });
});
