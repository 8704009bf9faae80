/**
 * The data path end to end, all real: a technician provisions sensors with the CLI, the gateway is started by
 * the CLI, sensors (libcoap, node-dtls-client, the crafted client) talk CoAP over DTLS, and mosquitto — TLS 1.3,
 * client certificates required — delivers to `mosquitto_sub` holding its own certificate.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parse } from 'coap-packet';
import { coapPost } from './helpers/coaps-fixture.ts';
import { TestDtlsClient } from './helpers/dtls-test-client.ts';
import { startE2e, stopE2e } from './helpers/e2e.ts';
import type { GatewayHome, RunningGateway } from './helpers/gateway.ts';
import type { Broker } from './helpers/mosquitto.ts';
import { dtls } from './helpers/node-dtls-client.ts';
import { coapClientPost, runPeer } from './helpers/peers.ts';
import type { TestPki } from './helpers/pki.ts';
import type { Subscriber } from './helpers/subscriber.ts';

// libcoap and node-dtls-client take the PSK as text; the gateway stores whatever bytes it is given (hex).
const KEY_1 = 'sensor-one-key-0123';
const KEY_3 = 'sensor-three-key-456';
const hex = (s: string) => Buffer.from(s).toString('hex');
const topicOf = (id: string) => `site-1/devices/${id}/telemetry`;

describe('end to end: sensor → DTLS → gateway → MQTT 5 mTLS → broker', () => {
  let pki: TestPki;
  let broker: Broker;
  let home: GatewayHome;
  let gw: RunningGateway;
  let sub: Subscriber;
  let generatedKey: Buffer;

  before(async () => {
    ({ pki, broker, home, gw, sub } = await startE2e('gw-e2e', async (h) => {
      await h.cli(['device', 'add', 'sensor-1', '--psk-identity', 'sensor-1', '--psk', hex(KEY_1)]);
      const added = await h.cli(['device', 'add', 'sensor-2', '--psk-identity', 'id-2', '--generate-psk']);
      generatedKey = Buffer.from(/psk: ([0-9a-f]{32})/.exec(added)?.[1] ?? '', 'hex');
      await h.cli(['device', 'add', 'sensor-3', '--psk-identity', 'sensor-3', '--psk', hex(KEY_3)]);
    }));
  });
  after(() => stopE2e({ pki, broker, home, gw, sub }));

  it('delivers a coap-client-openssl POST byte for byte on the device topic with MQTT 5 user properties', async () => {
    const body = randomBytes(64);
    const file = join(home.dir, 'body.bin');
    writeFileSync(file, body);
    const r = await runPeer('coap-client-openssl', [
      '-u',
      'sensor-1',
      '-k',
      KEY_1,
      '-m',
      'post',
      '-t',
      '42',
      '-f',
      file,
      `coaps://127.0.0.1:${home.dtlsPort}/telemetry`,
    ]);
    assert.equal(r.code, 0, r.stderr);
    await sub.waitFor((ms) => ms.some((m) => m.payload.equals(body)), 'the binary payload');
    const m = sub.messages.find((x) => x.payload.equals(body));
    assert.equal(m?.topic, topicOf('sensor-1'));
    assert.match(m?.properties ?? '', /deviceId:sensor-1/);
    assert.match(m?.properties ?? '', /credentialKind:psk/);
    assert.match(m?.properties ?? '', /contentFormat:42/);
    assert.match(m?.properties ?? '', /receivedAt:\d{4}-\d\d-\d\dT/);
  });

  it('delivers from node-dtls-client', async () => {
    const socket = dtls.createSocket({
      type: 'udp4',
      address: '127.0.0.1',
      port: home.dtlsPort,
      psk: { 'sensor-1': KEY_1 },
      timeout: 5000,
      ciphers: ['TLS_PSK_WITH_AES_128_CCM_8'],
    });
    const answer = await new Promise<Buffer>((resolve, reject) => {
      socket
        .on('connected', () => socket.send(coapPost('from node-dtls-client')))
        .on('message', resolve)
        .on('error', reject);
    });
    socket.close();
    assert.equal(parse(answer).code, '2.04');
    await sub.waitFor(
      (ms) => ms.some((m) => m.payload.toString() === 'from node-dtls-client'),
      'node-dtls-client telemetry',
    );
  });

  it('delivers from a sensor holding the PSK the gateway generated', async () => {
    const c = new TestDtlsClient({
      port: home.dtlsPort,
      suite: 'TLS_PSK_WITH_AES_128_CCM_8',
      psk: { identity: 'id-2', key: generatedKey },
    });
    await c.connect();
    c.send(coapPost('generated key'));
    assert.equal(parse(await c.receive()).code, '2.04');
    c.close();
    await sub.waitFor(
      (ms) => ms.some((m) => m.payload.toString() === 'generated key'),
      'generated-key telemetry',
    );
    assert.equal(
      sub.messages.find((m) => m.payload.toString() === 'generated key')?.topic,
      topicOf('sensor-2'),
    );
  });

  it('lets nothing through from an unknown identity or a decommissioned device, and closes its live session', async () => {
    const mark = sub.messages.length;
    const unknown = await coapClientPost(home.dtlsPort, { identity: 'nobody', key: KEY_1 }, 'from nobody', [
      '-B',
      '3',
    ]);
    assert.match(unknown.stdout.toString() + unknown.stderr, /bad record mac/);

    // sensor-3 has a live session when it is decommissioned.
    const live = new TestDtlsClient({
      port: home.dtlsPort,
      suite: 'TLS_PSK_WITH_AES_128_CCM_8',
      psk: { identity: 'sensor-3', key: Buffer.from(KEY_3) },
      timeoutMs: 5000,
    });
    await live.connect();
    live.send(coapPost('before decommission'));
    assert.equal(parse(await live.receive()).code, '2.04');
    const out = await home.cli(['device', 'decommission', 'sensor-3', '--reason', 'sold']);
    assert.match(out, /decommissioned/);
    const committed = Date.now();
    assert.equal(await live.nextAlert(), 0, 'the gateway closed the session (close_notify)');
    // The session review polls identity's change counter (migration 25's triggers) every 500 ms.
    const closedAfter = Date.now() - committed;
    assert.ok(closedAfter <= 1000, `closed ${closedAfter} ms after the CLI's commit (within a second)`);
    live.send(coapPost('after decommission'));
    live.close();

    const again = await coapClientPost(
      home.dtlsPort,
      { identity: 'sensor-3', key: KEY_3 },
      'with the old key',
      ['-B', '3'],
    );
    assert.match(again.stdout.toString() + again.stderr, /bad record mac/);

    // A sentinel from a good sensor proves the subscriber was listening throughout.
    const ok = await coapClientPost(home.dtlsPort, { identity: 'sensor-1', key: KEY_1 }, 'sentinel');
    assert.equal(ok.code, 0, ok.stderr);
    await sub.waitFor((ms) => ms.some((m) => m.payload.toString() === 'sentinel'), 'the sentinel');
    // Device telemetry only: the fleet's audit stream (site-1/gateway/audit) may publish a batch meanwhile.
    const since = sub.messages
      .slice(mark)
      .filter((m) => m.topic.startsWith('site-1/devices/'))
      .map((m) => m.payload.toString());
    assert.deepEqual(since, ['before decommission', 'sentinel']);

    const shown = JSON.parse(await home.cli(['device', 'show', 'sensor-3', '--json'])) as {
      device: { state: string };
      credentials: { erased: boolean; revokedAt: string | null }[];
    };
    assert.equal(shown.device.state, 'decommissioned');
    assert.ok(shown.credentials.every((c) => c.erased && c.revokedAt));
  });

  it('delivers a cloud command in the response to the sensor’s next message; refuses what policy does not allow', async () => {
    const pub = (topic: string, message: string) =>
      runPeer('mosquitto_pub', [
        ...['-h', '127.0.0.1', '-p', String(broker.port), '--cafile', pki.caPath],
        ...['--cert', pki.client.certPath, '--key', pki.client.keyPath, '-V', 'mqttv5', '-q', '1'],
        ...['-t', topic, '-m', message, '-D', 'publish', 'user-property', 'contentFormat', '0'],
      ]);
    const count = (msg: string) => gw.log.filter((l) => l.includes(msg)).length;
    const [queued, refused] = [count('downlink command queued'), count('downlink command refused')];
    for (const [topic, message] of [
      ['site-1/devices/sensor-1/commands', 'set-interval 60'],
      ['site-1/devices/sensor-3/commands', 'to a decommissioned device'],
      ['site-1/devices/ghost/commands', 'to nobody'],
      ['site-1/devices/sensor-1/commands', 'x'.repeat(1025)],
    ] as const) {
      assert.equal((await pub(topic, message)).code, 0);
    }
    await sub.waitFor(
      () =>
        count('downlink command queued') === queued + 1 && count('downlink command refused') === refused + 3,
      'the gateway to queue one command and refuse three',
    );
    const post = (payload: string) =>
      coapClientPost(home.dtlsPort, { identity: 'sensor-1', key: KEY_1 }, payload);
    const first = await post('reading 1');
    assert.equal(first.code, 0, first.stderr);
    assert.equal(first.stdout.toString().trim(), 'set-interval 60');
    const second = await post('reading 2');
    assert.equal(second.stdout.toString().trim(), '', 'delivered once');
  });

  it('records who provisioned and decommissioned each device, and never the key', async () => {
    const audit = await home.cli(['audit', 'export', '--format', 'jsonl']);
    const entries = audit
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { action: string; actor: string; target: string | null });
    assert.deepEqual(
      entries.filter((e) => e.action.startsWith('device.')).map((e) => `${e.action} ${e.target}`),
      ['device.add sensor-1', 'device.add sensor-2', 'device.add sensor-3', 'device.decommission sensor-3'],
    );
    assert.ok(entries.filter((e) => e.action.startsWith('device.')).every((e) => e.actor.startsWith('cli:')));
    for (const secret of [hex(KEY_1), hex(KEY_3), generatedKey.toString('hex'), KEY_1, KEY_3]) {
      assert.ok(!audit.includes(secret), 'no PSK in the audit log');
      assert.ok(!gw.log.join('\n').includes(secret), 'no PSK in the gateway log');
    }
  });
});
