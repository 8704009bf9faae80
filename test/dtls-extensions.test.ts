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
import { parse } from 'coap-packet';
import { systemClock } from '../gateway/src/clock.ts';
import { parseConfig } from '../gateway/src/config/load.ts';
import { Core } from '../gateway/src/core.ts';
import { type SensorListener, startSensorListener } from '../gateway/src/datapath/sensor-listener.ts';
import { ContentType } from '../gateway/src/dtls/constants.ts';
import { createLogger } from '../gateway/src/log.ts';
import { Uplink } from '../gateway/src/uplink/index.ts';
import { coapPost, type Fixture, PSK_IDENTITY, startFixture, waitFor } from './helpers/coaps-fixture.ts';
import { type TestClientOptions, TestDtlsClient } from './helpers/dtls-test-client.ts';

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
