/**
 * Issue 22: what the DTLS server offers the sensors that exist — Connection IDs (RFC 9146) on by default with
 * the address-update rule of §6, record sizes (RFC 6066 max_fragment_length, RFC 8449 record_size_limit,
 * `dtls.mtu`) with CoAP Block2 when a response is larger, the ChaCha20-Poly1305 and ECDHE-PSK suites, and a
 * fragmented ClientHello. Record bytes are checked against the RFCs with node:crypto directly, not with the
 * server's own record code.
 */
import assert from 'node:assert/strict';
import { createDecipheriv } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { generate, parse } from 'coap-packet';
import { systemClock } from '../gateway/src/clock.ts';
import { CoapRouter } from '../gateway/src/coap/index.ts';
import { parseConfig } from '../gateway/src/config/load.ts';
import { Core } from '../gateway/src/core.ts';
import { type SensorListener, startSensorListener } from '../gateway/src/datapath/sensor-listener.ts';
import { ContentType, ExtensionType } from '../gateway/src/dtls/constants.ts';
import { parseRecords } from '../gateway/src/dtls/record.ts';
import { SessionCache } from '../gateway/src/dtls/session-cache.ts';
import { createLogger } from '../gateway/src/log.ts';
import { Uplink } from '../gateway/src/uplink/index.ts';
import { coapPost, type Fixture, PSK_IDENTITY, startFixture, waitFor } from './helpers/coaps-fixture.ts';
import { AlertReceived, type TestClientOptions, TestDtlsClient } from './helpers/dtls-test-client.ts';
import { opensslCertificate, opensslDtlsArgs, opensslPsk, runPeer } from './helpers/peers.ts';
import { makePki, type TestPki } from './helpers/pki.ts';

const SENSOR = { identity: 'ext-sensor', key: 'ext-sensor-key-0123456789' };

interface Gateway {
  core: Core;
  listener: SensorListener;
  port: number;
  dir: string;
}

/** The sensor listener in this process, wired as `portcullis start` wires it, with one PSK device. */
async function startGateway(dtls: Record<string, unknown> = {}): Promise<Gateway> {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-dtls-ext-'));
  const config = parseConfig(
    { dataDir: join(dir, 'var'), dtls: { host: '127.0.0.1', port: 0, ...dtls }, anomaly: { enabled: false } },
    dir,
  );
  const core = Core.open(config, systemClock);
  core.identity.addPskDevice(
    { id: 'ext-sensor', pskIdentity: SENSOR.identity, pskHex: Buffer.from(SENSOR.key).toString('hex') },
    'test',
  );
  const logger = createLogger(
    'error',
    new Writable({
      write(_c, _e, cb) {
        cb();
      },
    }),
  );
  const uplink = new Uplink(core.store, null, systemClock, logger);
  const listener = await startSensorListener(core, uplink, logger);
  return { core, listener, port: listener.address.port, dir };
}

async function stopGateway(g: Gateway): Promise<void> {
  await g.listener.close();
  g.core.close();
  rmSync(g.dir, { recursive: true, force: true });
}

function pskClient(f: Fixture, extra: Partial<TestClientOptions> = {}): TestDtlsClient {
  return new TestDtlsClient({
    port: f.port,
    suite: 'TLS_PSK_WITH_AES_128_CCM_8',
    psk: { identity: PSK_IDENTITY, key: Buffer.from(f.psk) },
    ...extra,
  });
}

/**
 * Opens a tls12_cid record with node:crypto as RFC 9146 §5 (AAD) and §4 (DTLSInnerPlaintext) spell it, for
 * AES-128-CCM_8 (RFC 6655: nonce = 4-byte salt || 8-byte explicit nonce carried in the record).
 */
function openCidRecordPerRfc(
  record: Buffer,
  cidLength: number,
  key: Buffer,
  salt: Buffer,
): { type: number; content: Buffer; seq: number; epoch: number; cid: Buffer } {
  // DTLSCiphertext: type(1)=25 version(2) epoch(2) sequence_number(6) cid(cidLength) length(2) enc_content.
  assert.equal(record[0], 25, 'a CID record has content type tls12_cid (25)');
  assert.equal(record.readUInt16BE(1), 0xfefd, 'DTLS 1.2 version');
  const epoch = record.readUInt16BE(3);
  const seq = record.readUIntBE(5, 6);
  const cid = record.subarray(11, 11 + cidLength);
  const length = record.readUInt16BE(11 + cidLength);
  const enc = record.subarray(13 + cidLength);
  assert.equal(enc.length, length, 'the length field covers exactly the encrypted content');
  const explicit = enc.subarray(0, 8);
  const tag = enc.subarray(enc.length - 8);
  const ciphertext = enc.subarray(8, enc.length - 8);
  // additional_data = seq_num_placeholder || tls12_cid || cid_length || tls12_cid || version || epoch ||
  // sequence_number || cid || length_of_DTLSInnerPlaintext
  const aad = Buffer.concat([
    Buffer.alloc(8, 0xff),
    Buffer.from([25, cidLength, 25]),
    record.subarray(1, 3),
    record.subarray(3, 5),
    record.subarray(5, 11),
    cid,
    Buffer.from([ciphertext.length >> 8, ciphertext.length & 0xff]),
  ]);
  const d = createDecipheriv('aes-128-ccm', key, Buffer.concat([salt, explicit]), { authTagLength: 8 });
  d.setAuthTag(tag);
  d.setAAD(aad, { plaintextLength: ciphertext.length });
  const inner = d.update(ciphertext);
  d.final();
  // DTLSInnerPlaintext: content || real_type || zeros.
  let end = inner.length - 1;
  while (inner[end] === 0) end--;
  return { type: inner[end] as number, content: inner.subarray(0, end), seq, epoch, cid: Buffer.from(cid) };
}

describe('Connection ID (RFC 9146) in the gateway', () => {
  it('is on by default: 8-byte CIDs, a 1,200-byte MTU, the default suites', () => {
    const c = parseConfig({ dataDir: '/tmp/x' }, '/tmp');
    assert.deepEqual(c.dtls.connectionId, { enabled: true, length: 8 });
    assert.equal(c.dtls.mtu, 1200);
    assert.equal(c.dtls.cipherSuites, undefined);
    assert.throws(() => parseConfig({ dataDir: '/tmp/x', dtls: { connectionId: { length: 0 } } }, '/tmp'));
    assert.throws(() =>
      parseConfig({ dataDir: '/tmp/x', dtls: { cipherSuites: ['TLS_RSA_WITH_RC4'] } }, '/tmp'),
    );
  });

  it('keeps a sensor’s session when its address and port change (NAT rebinding), and answers at the new one', async () => {
    const g = await startGateway();
    const c = new TestDtlsClient({
      port: g.port,
      suite: 'TLS_PSK_WITH_AES_128_CCM_8',
      psk: { identity: SENSOR.identity, key: Buffer.from(SENSOR.key) },
      connectionId: true,
      localAddress: '127.0.0.1',
    });
    try {
      await c.connect();
      assert.equal(c.serverCid?.length, 8);
      c.send(coapPost('before the move', 1));
      assert.equal(parse(await c.receive()).code, '2.04');
      await c.rebind('127.0.0.2');
      c.send(coapPost('after the move', 2));
      assert.equal(parse(await c.receive()).code, '2.04');
      assert.equal(g.core.store.queue.depth(), 2);
      assert.equal(g.listener.server.sessionCount, 1);
      assert.equal(g.listener.server.stats.handshakesCompleted, 1);
    } finally {
      c.close();
      await stopGateway(g);
    }
  });

  it('without CIDs (dtls.connectionId.enabled false) the moved sensor’s record is dropped (the control)', async () => {
    const g = await startGateway({ connectionId: { enabled: false } });
    const c = new TestDtlsClient({
      port: g.port,
      suite: 'TLS_PSK_WITH_AES_128_CCM_8',
      psk: { identity: SENSOR.identity, key: Buffer.from(SENSOR.key) },
      connectionId: true,
      timeoutMs: 700,
    });
    try {
      await c.connect();
      assert.equal(c.serverCid, null);
      await c.rebind('127.0.0.2');
      c.send(coapPost('after the move', 2));
      await assert.rejects(c.receive(), /timed out/);
      assert.equal(g.core.store.queue.depth(), 0);
    } finally {
      c.close();
      await stopGateway(g);
    }
  });
});

describe('Connection ID: the address-update rule of RFC 9146 §6 and the record layout', () => {
  let f: Fixture;
  before(async () => {
    f = await startFixture(null, { connectionIds: { length: 4 } });
  });
  after(() => f.close());

  it('moves the session only for the newest authenticated record; older or forged ones from elsewhere do not', async () => {
    const c = pskClient(f, { connectionId: true, localAddress: '127.0.0.1' });
    await c.connect();
    assert.equal(c.serverCid?.length, 4);
    const older = c.seal(coapPost('older', 10));
    c.send(coapPost('newer', 11));
    assert.equal(parse(await c.receive()).code, '2.04');
    const session = f.sessions.at(-1);
    assert.equal(session?.peer.address, '127.0.0.1');
    const home = session?.peer.port;
    await c.rebind('127.0.0.3');
    // Authentic and not a replay (its number was never seen), but older than the newest: delivered, not moved.
    c.sendRaw(older);
    await waitFor('older record delivered', () => f.telemetry.find((t) => t.payload.toString() === 'older'));
    assert.equal(session?.peer.address, '127.0.0.1');
    assert.equal(session?.peer.port, home);
    // A forged record with the right CID from elsewhere: dropped, not moved.
    const forged = c.seal(coapPost('forged', 12));
    forged[forged.length - 1] = (forged[forged.length - 1] as number) ^ 1;
    const before = f.discards.length;
    c.sendRaw(forged);
    await waitFor('forged record discarded', () =>
      f.discards.slice(before).find((d) => d.reason === 'bad-record-mac'),
    );
    assert.equal(session?.peer.address, '127.0.0.1');
    // The next new record moves it.
    c.send(coapPost('newest', 13));
    assert.equal(parse(await c.receive()).code, '2.04');
    assert.equal(session?.peer.address, '127.0.0.3');
    c.close();
  });

  it('lays out tls12_cid records both ways as RFC 9146 §4–§5 specify (decrypted here with node:crypto)', async () => {
    const ownCid = Buffer.from('c1d2e3f4a5', 'hex');
    const c = pskClient(f, { connectionId: true, ownConnectionId: ownCid, recordReceived: true });
    await c.connect();
    const keys = c.keys as NonNullable<typeof c.keys>;
    const serverCid = c.serverCid as Buffer;
    // Client → server: the server's CID on the record, the real type inside.
    const sent = c.send(coapPost('layout', 20));
    const mine = openCidRecordPerRfc(sent, 4, keys.clientKey, keys.clientSalt);
    assert.deepEqual(mine.cid, serverCid);
    assert.equal(mine.type, ContentType.applicationData);
    assert.equal(mine.epoch, 1);
    assert.equal(parse(mine.content).payload.toString(), 'layout');
    // Server → client: our CID on its records (its Finished included), the response inside.
    const reply = await c.receive();
    const datagram = c.received.at(-1) as Buffer;
    const theirs = openCidRecordPerRfc(datagram, ownCid.length, keys.serverKey, keys.serverSalt);
    assert.deepEqual(theirs.cid, ownCid);
    assert.equal(theirs.type, ContentType.applicationData);
    assert.deepEqual(theirs.content, reply);
    assert.equal(parse(reply).code, '2.04');
    c.close();
  });
});

/** The payload arrived over a session of `suite`. */
async function expectSuite(f: Fixture, payload: string, suite: string): Promise<void> {
  const t = await waitFor(`telemetry "${payload}"`, () =>
    f.telemetry.find((x) => x.payload.toString() === payload),
  );
  assert.equal(t.session.cipherSuite, suite);
  assert.deepEqual(f.internalErrors, []);
}

describe('cipher suites: ECDHE-PSK (RFC 8442) and ChaCha20-Poly1305 (RFC 7905), forward secrecy first', () => {
  let pki: TestPki;
  let f: Fixture;
  before(async () => {
    pki = makePki();
    f = await startFixture(pki);
  });
  after(async () => {
    await f.close();
    pki.dispose();
  });

  for (const [cipher, suite] of [
    ['PSK-CHACHA20-POLY1305', 'TLS_PSK_WITH_CHACHA20_POLY1305_SHA256'],
    ['ECDHE-PSK-CHACHA20-POLY1305', 'TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256'],
  ] as const) {
    it(`openssl s_client completes ${suite} and a CoAP exchange`, async () => {
      const payload = `openssl ${cipher}`;
      const r = await runPeer(
        'openssl',
        opensslDtlsArgs(f.port, cipher, ...opensslPsk(PSK_IDENTITY, f.psk)),
        {
          stdin: coapPost(payload),
          until: (out) => out.length >= 4,
        },
      );
      assert.equal(parse(r.stdout).code, '2.04', r.stderr);
      await expectSuite(f, payload, suite);
    });
  }

  it('openssl s_client with a client certificate completes TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256', async () => {
    const payload = 'openssl ECDHE-ECDSA-CHACHA20-POLY1305';
    const r = await runPeer(
      'openssl',
      opensslDtlsArgs(f.port, 'ECDHE-ECDSA-CHACHA20-POLY1305', ...opensslCertificate(pki.client, pki.caPath)),
      { stdin: coapPost(payload), until: (out) => out.length >= 4 },
    );
    assert.equal(parse(r.stdout).code, '2.04', r.stderr);
    await expectSuite(f, payload, 'TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256');
  });

  // gnutls-cli 3.7.9 completes ECDHE-PSK with ChaCha20 too (its debug log shows both Finished verified) but then
  // hangs printing the session, so the exchange is driven over plain PSK.
  it('gnutls-cli completes TLS_PSK_WITH_CHACHA20_POLY1305_SHA256 and a CoAP exchange', async () => {
    const payload = 'gnutls chacha\n';
    await runPeer(
      'stdbuf',
      [
        '-o0',
        'gnutls-cli',
        '--udp',
        '--port',
        String(f.port),
        '--priority',
        'NORMAL:-VERS-ALL:+VERS-DTLS1.2:-CIPHER-ALL:+CHACHA20-POLY1305:-KX-ALL:+PSK',
        '--pskusername',
        PSK_IDENTITY,
        '--pskkey',
        Buffer.from(f.psk).toString('hex'),
        '127.0.0.1',
      ],
      {
        stdin: coapPost(payload),
        until: () => f.telemetry.some((t) => t.payload.toString() === payload),
        timeoutMs: 8000,
      },
    );
    await expectSuite(f, payload, 'TLS_PSK_WITH_CHACHA20_POLY1305_SHA256');
  });

  for (const suite of [
    'TLS_ECDHE_PSK_WITH_AES_128_GCM_SHA256',
    'TLS_ECDHE_PSK_WITH_AES_128_CCM_8_SHA256',
  ] as const) {
    it(`the crafted client completes ${suite}`, async () => {
      const c = pskClient(f, { suite });
      await c.connect();
      c.send(coapPost(`crafted ${suite}`));
      assert.equal(parse(await c.receive()).code, '2.04');
      await expectSuite(f, `crafted ${suite}`, suite);
      c.close();
    });
  }

  it('prefers a forward-secret suite the client offers, even after a plain PSK one', async () => {
    const c = pskClient(f, {
      suite: 'TLS_ECDHE_PSK_WITH_AES_128_CCM_8_SHA256',
      offer: [
        'TLS_PSK_WITH_AES_128_CCM_8',
        'TLS_PSK_WITH_CHACHA20_POLY1305_SHA256',
        'TLS_ECDHE_PSK_WITH_AES_128_CCM_8_SHA256',
      ],
    });
    await c.connect();
    c.close();
  });

  it('gives a client that puts ChaCha20 first ChaCha20 (no AES hardware), forward secrecy still first', async () => {
    const c = pskClient(f, {
      suite: 'TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256',
      offer: [
        'TLS_PSK_WITH_CHACHA20_POLY1305_SHA256',
        'TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256',
        'TLS_ECDHE_PSK_WITH_AES_128_CCM_8_SHA256',
        'TLS_PSK_WITH_AES_128_CCM_8',
      ],
    });
    await c.connect();
    c.close();
  });

  it('refuses a suite left out of the configured list with handshake_failure', async () => {
    const only = await startFixture(null, { cipherSuites: ['TLS_PSK_WITH_AES_128_CCM_8'] });
    try {
      const c = pskClient(only, { suite: 'TLS_PSK_WITH_CHACHA20_POLY1305_SHA256' });
      await assert.rejects(c.connect(), (e: unknown) => e instanceof AlertReceived && e.description === 40);
      c.close();
      assert.equal(only.failures.at(-1)?.code, 'ERR_DTLS_NO_SHARED_SUITE');
      assert.equal(only.sessions.length, 0);
    } finally {
      await only.close();
    }
  });
});

/** A 3,000-byte resource: larger than any small record limit, so it must go block-wise. */
const BIG = Buffer.from(Array.from({ length: 3000 }, (_, i) => i % 251));

function bigRouter(): CoapRouter {
  return new CoapRouter().on('GET', '/big', async () => ({ code: '2.05', payload: BIG }));
}

function coapGet(path: string, messageId: number, block2?: Buffer): Buffer {
  return generate({
    code: 'GET',
    messageId,
    token: Buffer.from([0xbe, 0xef]),
    confirmable: true,
    options: [
      { name: 'Uri-Path', value: Buffer.from(path) },
      ...(block2 ? [{ name: 'Block2' as const, value: block2 }] : []),
    ],
  });
}

/** Fetches /big block by block as the server sizes the blocks; returns the body and the block size used. */
async function fetchBlockwise(c: TestDtlsClient): Promise<{ body: Buffer; blockSize: number }> {
  const parts: Buffer[] = [];
  let blockSize = 0;
  for (let num = 0; num < 100; num++) {
    const szx = blockSize ? Math.log2(blockSize) - 4 : 6;
    const req = (num << 4) | szx;
    const block2 = req < 0x100 ? Buffer.from([req]) : Buffer.from([req >> 8, req & 0xff]);
    c.send(coapGet('big', 0x100 + num, num === 0 ? undefined : block2));
    const res = parse(await c.receive());
    assert.equal(res.code, '2.05');
    const b2 = res.options.find((o) => o.name === 'Block2');
    assert.ok(b2, 'a response larger than the record limit goes block-wise unasked');
    const v = b2.value.readUIntBE(0, b2.value.length);
    blockSize = 1 << ((v & 7) + 4);
    parts.push(res.payload);
    if (!(v & 8)) break;
  }
  return { body: Buffer.concat(parts), blockSize };
}

/** Every record the client received, plaintext length bounded by `limit` (AEAD overhead `overhead`). */
function assertRecordsWithin(c: TestDtlsClient, limit: number, overhead: number): void {
  let n = 0;
  for (const d of c.received) {
    for (const r of parseRecords(d, 0)) {
      const plaintext = r.epoch === 0 ? r.fragment.length : r.fragment.length - overhead;
      assert.ok(plaintext <= limit, `a record of ${plaintext} bytes exceeds the peer’s limit of ${limit}`);
      n++;
    }
  }
  assert.ok(n > 3);
}

describe('record sizes: max_fragment_length (RFC 6066), record_size_limit (RFC 8449), dtls.mtu', () => {
  let pki: TestPki;
  let f: Fixture;
  before(async () => {
    pki = makePki();
    f = await startFixture(pki, {}, { router: bigRouter() });
  });
  after(async () => {
    await f.close();
    pki.dispose();
  });

  it('echoes max_fragment_length 512, keeps every record within it and serves a 3,000-byte response block-wise', async () => {
    const c = pskClient(f, {
      extensions: [[ExtensionType.maxFragmentLength, Buffer.from([1])]],
      recordReceived: true,
    });
    await c.connect();
    assert.deepEqual(c.serverExtensions.get(ExtensionType.maxFragmentLength), Buffer.from([1]));
    const { body, blockSize } = await fetchBlockwise(c);
    assert.deepEqual(body, BIG);
    assert.ok(blockSize <= 256, `blocks of ${blockSize} bytes`);
    assertRecordsWithin(c, 512, 16);
    c.close();
  });

  it('fragments the certificate flight to max_fragment_length 512 (ECDHE-ECDSA)', async () => {
    const c = new TestDtlsClient({
      port: f.port,
      suite: 'TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8',
      certificate: { chain: [pki.client.der], key: pki.client.key },
      extensions: [[ExtensionType.maxFragmentLength, Buffer.from([1])]],
      recordReceived: true,
    });
    await c.connect();
    assertRecordsWithin(c, 512, 16);
    c.close();
  });

  it('honours record_size_limit 300 (and answers with its own limit, ignoring max_fragment_length beside it)', async () => {
    const c = pskClient(f, {
      extensions: [
        [ExtensionType.recordSizeLimit, Buffer.from([0x01, 0x2c])],
        [ExtensionType.maxFragmentLength, Buffer.from([4])],
      ],
      recordReceived: true,
    });
    await c.connect();
    assert.deepEqual(c.serverExtensions.get(ExtensionType.recordSizeLimit), Buffer.from([0x40, 0x00]));
    assert.equal(c.serverExtensions.has(ExtensionType.maxFragmentLength), false);
    const { body, blockSize } = await fetchBlockwise(c);
    assert.deepEqual(body, BIG);
    assert.ok(blockSize <= 128);
    assertRecordsWithin(c, 300, 16);
    c.close();
  });

  it('refuses a max_fragment_length outside 1–4 and a record_size_limit below 64 with illegal_parameter', async () => {
    for (const ext of [
      [ExtensionType.maxFragmentLength, Buffer.from([5])],
      [ExtensionType.recordSizeLimit, Buffer.from([0, 63])],
    ] as Array<[number, Buffer]>) {
      const c = pskClient(f, { extensions: [ext] });
      await assert.rejects(c.connect(), (e: unknown) => e instanceof AlertReceived && e.description === 47);
      c.close();
    }
  });

  it('without a limit, sends the 3,000 bytes in 1,024-byte blocks (the MTU of 1,200 decides)', async () => {
    const c = pskClient(f);
    await c.connect();
    const { body, blockSize } = await fetchBlockwise(c);
    assert.deepEqual(body, BIG);
    assert.equal(blockSize, 1024);
    c.close();
  });

  it('dtls.mtu 200: no datagram larger, the certificate flight fragmented to fit', async () => {
    const small = await startFixture(pki, { mtu: 200 }, { router: bigRouter() });
    try {
      const c = new TestDtlsClient({
        port: small.port,
        suite: 'TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8',
        certificate: { chain: [pki.client.der], key: pki.client.key },
        recordReceived: true,
      });
      await c.connect();
      const { body } = await fetchBlockwise(c);
      assert.deepEqual(body, BIG);
      for (const d of c.received) assert.ok(d.length <= 200, `a datagram of ${d.length} bytes`);
      c.close();
    } finally {
      await small.close();
    }
  });
});

describe('a fragmented ClientHello (reassembled, bounded, once its cookie is valid)', () => {
  let f: Fixture;
  before(async () => {
    f = await startFixture(null);
  });
  after(() => f.close());
  /** A 1,500-byte padding extension (RFC 7685): a hello too long for one small datagram. */
  const padding: Array<[number, Buffer]> = [[21, Buffer.alloc(1500)]];

  it('completes a handshake whose hellos (with and without cookie) come in 200-byte fragments', async () => {
    const c = pskClient(f, { helloFragmentSize: 200, extensions: padding });
    await c.connect();
    c.send(coapPost('fragmented hello'));
    assert.equal(parse(await c.receive()).code, '2.04');
    c.close();
  });

  it('replaces an established session when the client comes back from the same port with a fragmented hello', async () => {
    const first = pskClient(f, { localPort: 0, localAddress: '127.0.0.4' });
    await first.connect();
    const port = first.localPort;
    first.close();
    const again = pskClient(f, {
      localPort: port,
      localAddress: '127.0.0.4',
      helloFragmentSize: 200,
      extensions: padding,
    });
    await again.connect();
    again.send(coapPost('restarted, fragmented'));
    assert.equal(parse(await again.receive()).code, '2.04');
    await waitFor('old session replaced', () => f.closed.find((r) => r === 'replaced'));
    again.close();
  });

  /** A raw socket sending the given datagrams; resolves with what came back within `ms`. */
  async function exchange(datagrams: Buffer[], ms = 300): Promise<Buffer[]> {
    const { createSocket } = await import('node:dgram');
    const s = createSocket('udp4');
    const got: Buffer[] = [];
    s.on('message', (m) => got.push(m));
    await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
    for (const d of datagrams) s.send(d, f.port, '127.0.0.1');
    await new Promise((r) => setTimeout(r, ms));
    s.close();
    return got;
  }

  /** A ClientHello record fragment: handshake header (length, offset, fragment length) and body bytes. */
  function helloFragment(length: number, offset: number, body: Buffer, recordSeq = 0): Buffer {
    const h = Buffer.alloc(12);
    h[0] = 1;
    h.writeUIntBE(length, 1, 3);
    h.writeUInt16BE(0, 4);
    h.writeUIntBE(offset, 6, 3);
    h.writeUIntBE(body.length, 9, 3);
    const rec = Buffer.alloc(13);
    rec[0] = 22;
    rec.writeUInt16BE(0xfefd, 1);
    rec.writeUIntBE(recordSeq, 5, 6);
    rec.writeUInt16BE(12 + body.length, 11);
    return Buffer.concat([rec, h, body]);
  }

  /** version, random, empty session id, a cookie of `cookie`, and padding to `length` bytes. */
  function helloHead(cookie: Buffer): Buffer {
    return Buffer.concat([
      Buffer.from([0xfe, 0xfd]),
      Buffer.alloc(32, 7),
      Buffer.from([0, cookie.length]),
      cookie,
    ]);
  }

  it('keeps nothing for a fragment that is not the first, and answers a cookie-less first fragment with a HelloVerifyRequest', async () => {
    const started = f.server.stats.handshakesStarted;
    const discards = f.discards.length;
    const got = await exchange([helloFragment(2000, 500, Buffer.alloc(200))]);
    assert.equal(got.length, 0);
    assert.ok(f.discards.slice(discards).some((d) => d.reason === 'malformed'));
    const hvrs = f.server.stats.helloVerifyRequests;
    const answer = await exchange([helloFragment(2000, 0, helloHead(Buffer.alloc(0)))]);
    assert.equal(answer.length, 1);
    assert.equal(answer[0]?.[13], 3, 'a HelloVerifyRequest');
    assert.equal(f.server.stats.helloVerifyRequests, hvrs + 1);
    assert.equal(f.server.stats.handshakesStarted, started);
  });

  it('answers a forged cookie with a HelloVerifyRequest, not reassembly, and refuses a claimed length over 8 KiB', async () => {
    const started = f.server.stats.handshakesStarted;
    const forged = await exchange([
      helloFragment(2000, 0, helloHead(Buffer.alloc(16, 0xaa))),
      helloFragment(2000, 1000, Buffer.alloc(1000)),
    ]);
    assert.equal(forged.length, 1, 'one HelloVerifyRequest; the second fragment finds nothing kept');
    assert.equal(f.server.stats.handshakesStarted, started);
    // With a valid cookie, a hello claiming more than 8 KiB is not reassembled.
    const s = await cookieSocket();
    try {
      const cookie = await s.cookie(9000);
      const discards = f.discards.length;
      s.socket.send(helloFragment(9000, 0, helloHead(cookie), 1), f.port, '127.0.0.1');
      await waitFor('refused', () => f.discards.slice(discards).find((d) => d.reason === 'malformed'));
    } finally {
      s.socket.close();
    }
  });

  /** A socket that asks for a cookie with a cookie-less first fragment (of a hello of `length` bytes). */
  async function cookieSocket() {
    const { createSocket } = await import('node:dgram');
    const socket = createSocket('udp4');
    const inbox: Buffer[] = [];
    socket.on('message', (m) => inbox.push(m));
    await new Promise<void>((r) => socket.bind(0, '127.0.0.1', () => r()));
    return {
      socket,
      async cookie(length: number): Promise<Buffer> {
        socket.send(helloFragment(length, 0, helloHead(Buffer.alloc(0))), f.port, '127.0.0.1');
        const hvr = await waitFor('HelloVerifyRequest', () => inbox.shift());
        return hvr.subarray(13 + 12 + 3, 13 + 12 + 3 + (hvr[13 + 12 + 2] as number));
      },
    };
  }

  it('holds at most 64 hellos in reassembly at once; the next is refused (capacity), nothing else', async () => {
    const sockets = await Promise.all(Array.from({ length: 65 }, () => cookieSocket()));
    try {
      const cookies = await Promise.all(sockets.map((s) => s.cookie(2000)));
      const discards = f.discards.length;
      sockets.forEach((s, i) => {
        s.socket.send(helloFragment(2000, 0, helloHead(cookies[i] as Buffer), 1), f.port, '127.0.0.1');
      });
      await waitFor('capacity', () => f.discards.slice(discards).find((d) => d.reason === 'capacity'));
      assert.equal(f.discards.slice(discards).filter((d) => d.reason === 'capacity').length, 1);
      assert.deepEqual(f.internalErrors, []);
    } finally {
      for (const s of sockets) s.socket.close();
    }
  });
});

describe('session resumption (bounded session cache, RFC 5246 §7.3)', () => {
  let pki: TestPki;
  let f: Fixture;
  let dir: string;
  let currentPsk = '';
  let revoked = false;
  before(async () => {
    pki = makePki();
    f = await startFixture(pki, {
      sessionResumption: true,
      lookupPsk: (id) => (id.toString() === PSK_IDENTITY ? Buffer.from(currentPsk) : undefined),
      clientAuth: { trustAnchors: [pki.ca], revocation: () => (revoked ? 'revoked' : 'good') },
    });
    currentPsk = f.psk;
    dir = mkdtempSync(join(tmpdir(), 'portcullis-resume-'));
  });
  after(async () => {
    await f.close();
    pki.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  async function opensslExchange(args: string[], payload: string): Promise<string> {
    const r = await runPeer('openssl', [...args, '-no_ticket'], {
      stdin: coapPost(payload),
      until: (out) => out.length >= 4,
    });
    assert.equal(parse(r.stdout).code, '2.04', r.stderr);
    return r.stderr;
  }

  for (const [cipher, credentials] of [
    ['PSK-AES128-CCM8', () => opensslPsk(PSK_IDENTITY, f.psk)],
    ['ECDHE-ECDSA-AES128-CCM8', () => opensslCertificate(pki.client, pki.caPath)],
  ] as const) {
    it(`openssl s_client resumes a ${cipher} session (-sess_out, then -sess_in)`, async () => {
      const file = join(dir, `${cipher}.pem`);
      const resumedBefore = f.server.stats.handshakesResumed;
      await opensslExchange(
        [...opensslDtlsArgs(f.port, cipher, ...credentials()), '-sess_out', file],
        `${cipher} full`,
      );
      await opensslExchange(
        [...opensslDtlsArgs(f.port, cipher, ...credentials()), '-sess_in', file],
        `${cipher} resumed`,
      );
      assert.equal(f.server.stats.handshakesResumed, resumedBefore + 1);
      const full = f.telemetry.find((t) => t.payload.toString() === `${cipher} full`);
      const resumed = f.telemetry.find((t) => t.payload.toString() === `${cipher} resumed`);
      assert.equal(full?.session.resumed, false);
      assert.equal(resumed?.session.resumed, true);
      // Bound to the same identity as the session it resumes.
      assert.deepEqual(resumed?.session.credential, full?.session.credential);
    });
  }

  it('does not resume a session whose client certificate was revoked since: full handshake, certificate_revoked', async () => {
    const cipher = 'ECDHE-ECDSA-AES128-CCM8';
    const file = join(dir, 'revoked.pem');
    await opensslExchange(
      [...opensslDtlsArgs(f.port, cipher, ...opensslCertificate(pki.client, pki.caPath)), '-sess_out', file],
      'before revocation',
    );
    revoked = true;
    try {
      const resumedBefore = f.server.stats.handshakesResumed;
      const r = await runPeer(
        'openssl',
        [
          ...opensslDtlsArgs(f.port, cipher, ...opensslCertificate(pki.client, pki.caPath)),
          '-sess_in',
          file,
          '-no_ticket',
        ],
        { stdin: coapPost('after revocation'), timeoutMs: 5000 },
      );
      assert.match(r.stderr, /certificate revoked/);
      assert.equal(f.server.stats.handshakesResumed, resumedBefore);
      assert.equal(
        f.telemetry.some((t) => t.payload.toString() === 'after revocation'),
        false,
      );
    } finally {
      revoked = false;
    }
  });

  it('does not resume a PSK session after its key changed: full handshake, bad_record_mac with the old key', async () => {
    const file = join(dir, 'rotated.pem');
    await opensslExchange(
      [...opensslDtlsArgs(f.port, 'PSK-AES128-CCM8', ...opensslPsk(PSK_IDENTITY, f.psk)), '-sess_out', file],
      'before rotation',
    );
    currentPsk = `${f.psk}-rotated`;
    try {
      const resumedBefore = f.server.stats.handshakesResumed;
      const r = await runPeer(
        'openssl',
        [
          ...opensslDtlsArgs(f.port, 'PSK-AES128-CCM8', ...opensslPsk(PSK_IDENTITY, f.psk)),
          '-sess_in',
          file,
          '-no_ticket',
        ],
        { stdin: coapPost('after rotation'), timeoutMs: 5000 },
      );
      assert.match(r.stderr, /bad record mac/);
      assert.equal(f.server.stats.handshakesResumed, resumedBefore);
    } finally {
      currentPsk = f.psk;
    }
  });
});

describe('the session cache', () => {
  it('is bounded (oldest first), expires entries, and zeroes the secrets it forgets', () => {
    let now = 0;
    const cache = new SessionCache({ maxEntries: 3, lifetimeMs: 1000 }, () => now);
    const id = (n: number) => Buffer.alloc(32, n);
    const entry = (n: number) => ({
      master: Buffer.alloc(48, n),
      suiteId: 0xc0a8,
      extendedMasterSecret: true,
      credential: { kind: 'psk' as const, identity: Buffer.from(`sensor-${n}`) },
      pskDigest: Buffer.alloc(32, n),
      chainDer: null,
    });
    for (let n = 1; n <= 3; n++) cache.put(id(n), entry(n));
    const first = cache.get(id(1));
    assert.ok(first);
    assert.deepEqual(first.credential, { kind: 'psk', identity: Buffer.from('sensor-1') });
    cache.put(id(4), entry(4));
    assert.equal(cache.size, 3);
    assert.equal(cache.get(id(1)), undefined, 'the oldest went first');
    assert.deepEqual(first.master, Buffer.alloc(48), 'its secret zeroed');
    cache.forget(id(2));
    assert.equal(cache.get(id(2)), undefined);
    // Many puts and forgets: never more than the bound, and what is kept is the newest.
    for (let n = 10; n < 5000; n++) {
      cache.put(id(n % 250), entry(n));
      if (n % 3 === 0) cache.forget(id((n - 1) % 250));
    }
    assert.ok(cache.size <= 3);
    now = 1000;
    cache.sweep();
    assert.equal(cache.size, 0, 'expired after lifetimeMs');
    assert.equal(cache.get(Buffer.alloc(0)), undefined, 'an empty session id is never a session');
  });

  it('finds a session only by its whole ID, and issues IDs whose table key no remembered session has', () => {
    const cache = new SessionCache({ maxEntries: 10, lifetimeMs: 1000 }, () => 0);
    const id = Buffer.alloc(32, 7);
    cache.put(id, {
      master: Buffer.alloc(48, 1),
      suiteId: 0xc0a8,
      extendedMasterSecret: true,
      credential: { kind: 'psk', identity: Buffer.from('sensor') },
      pskDigest: Buffer.alloc(32, 2),
      chainDer: null,
    });
    // The table is keyed by the ID's first 30 bits; an ID that shares them but differs after must not match.
    const lookalike = Buffer.from(id);
    lookalike[31] = 8;
    assert.equal(cache.get(lookalike), undefined, 'same key, other ID: not the session');
    cache.forget(lookalike);
    assert.ok(cache.get(id), 'forgetting a look-alike leaves the session');
    assert.equal(cache.get(id.subarray(0, 16)), undefined, 'an ID of another length is never one of ours');
    // newId draws again while the random ID's key is taken.
    const draws = [Buffer.from(id), Buffer.alloc(32, 9)];
    assert.deepEqual(
      cache.newId(() => draws.shift() as Buffer),
      Buffer.alloc(32, 9),
    );
  });
});
