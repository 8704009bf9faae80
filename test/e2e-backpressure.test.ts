/**
 * Backpressure (issue 23), with the real gateway process, a real mosquitto and a real DTLS sensor: while the broker
 * is away the durable queue fills to its bound; from then on the sensor is answered 5.03 Service Unavailable with
 * Max-Age (nothing stored, so nothing acknowledged is dropped), and once the broker is back every acknowledged
 * reading reaches it and the gateway takes readings again.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parse } from 'coap-packet';
import mqtt, { type MqttClient } from 'mqtt';
import { coapPost } from './helpers/coaps-fixture.ts';
import { TestDtlsClient } from './helpers/dtls-test-client.ts';
import { type GatewayHome, makeGatewayHome, type RunningGateway } from './helpers/gateway.ts';
import { type Broker, startBroker } from './helpers/mosquitto.ts';
import { makePki, type TestPki } from './helpers/pki.ts';

const KEY = Buffer.from('backpressure-key-0123');
const TOPIC = 'site-1/devices/sensor-b/telemetry';
const BOUND = 30;
const RETRY_AFTER = 4;

async function until(what: string, pred: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** MQTT 5, clean start off, QoS 1: the broker keeps the subscription (and queues for it) across its restart. */
async function persistentSubscriber(
  pki: TestPki,
  broker: Broker,
): Promise<{ seen: Set<string>; client: MqttClient }> {
  const seen = new Set<string>();
  const client = mqtt.connect(broker.url, {
    protocolVersion: 5,
    clientId: 'backpressure-subscriber',
    clean: false,
    properties: { sessionExpiryInterval: 3600 },
    reconnectPeriod: 200,
    ca: readFileSync(pki.caPath),
    cert: readFileSync(pki.client.certPath),
    key: readFileSync(pki.client.keyPath),
  });
  client.on('message', (_t, payload) => seen.add(payload.toString()));
  client.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve());
    client.once('error', reject);
  });
  await client.subscribeAsync(TOPIC, { qos: 1 });
  return { seen, client };
}

/** One confirmable POST and its answer: the response code and Max-Age (absent: null). */
async function post(
  c: TestDtlsClient,
  payload: string,
  mid: number,
): Promise<{ code: string; maxAge: number | null }> {
  c.send(coapPost(payload, mid));
  for (;;) {
    const res = parse(await c.receive());
    if (res.messageId !== mid) continue;
    const opt = res.options.find((o) => o.name === 'Max-Age');
    return { code: res.code, maxAge: opt ? opt.value.readUIntBE(0, opt.value.length || 1) : null };
  }
}

/** A flow's publish over the control socket: status, Retry-After, the error code. */
function flowPublish(
  socketPath: string,
  token: string,
): Promise<{ status: number; retryAfter: string | undefined; code: string | undefined }> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        socketPath,
        method: 'POST',
        path: '/v1/uplink/publish',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      },
      (res) => {
        let text = '';
        res.on('data', (d: Buffer) => {
          text += d.toString();
        });
        res.on('end', () => {
          const body = JSON.parse(text || '{}') as { error?: { code?: string } };
          const ra = res.headers['retry-after'];
          resolve({
            status: res.statusCode ?? 0,
            retryAfter: Array.isArray(ra) ? ra[0] : ra,
            code: body.error?.code,
          });
        });
      },
    );
    req.on('error', reject);
    req.end(JSON.stringify({ topic: 'alerts/x', payload: 'from a flow' }));
  });
}

describe('backpressure: a full uplink queue answers 5.03 with Max-Age', () => {
  let pki: TestPki;
  let broker: Broker;
  let home: GatewayHome;
  let gw: RunningGateway;
  let sub: Awaited<ReturnType<typeof persistentSubscriber>>;
  let flowToken: string;
  const socketPath = join(tmpdir(), `portcullis-bp-${process.pid}.sock`);

  before(async () => {
    pki = makePki();
    broker = await startBroker({ caPath: pki.caPath, server: pki.broker });
    home = await makeGatewayHome(pki, broker, 'gw-backpressure', {
      uplinkQueue: `{maxMessages: ${BOUND}, retryAfterSeconds: ${RETRY_AFTER}}`,
      extraConfig: [`control: {socketPath: ${socketPath}}`],
    });
    flowToken = (
      await home.cli(['flows', 'token', 'create', '--name', 'bp', '--scopes', 'uplink:publish'])
    ).split('\n')[1] as string;
    await home.cli(['device', 'add', 'sensor-b', '--psk-identity', 'sensor-b', '--psk', KEY.toString('hex')]);
    gw = await home.start();
    sub = await persistentSubscriber(pki, broker);
  });
  after(async () => {
    sub?.client.end(true);
    await gw?.stop();
    await broker?.dispose();
    home?.dispose();
    pki?.dispose();
  });

  it('acknowledges up to the bound, then refuses with 5.03 + Max-Age; every acknowledged reading arrives after', async () => {
    await broker.stop();
    const c = new TestDtlsClient({
      port: home.dtlsPort,
      suite: 'TLS_PSK_WITH_AES_128_CCM_8',
      psk: { identity: 'sensor-b', key: KEY },
      timeoutMs: 5000,
    });
    await c.connect();
    const answers: Array<{ payload: string; code: string; maxAge: number | null }> = [];
    for (let i = 0; i < BOUND * 2; i++) {
      const payload = `bp-${i}`;
      answers.push({ payload, ...(await post(c, payload, 100 + i)) });
    }
    const acked = answers.filter((a) => a.code === '2.04').map((a) => a.payload);
    const refused = answers.filter((a) => a.code === '5.03');
    assert.equal(acked.length + refused.length, answers.length, 'every answer is 2.04 or 5.03');
    // The gateway's own stream messages (its audit batches) may take a few places in the queue while the broker is away.
    assert.ok(
      acked.length <= BOUND && acked.length >= BOUND - 10,
      `${acked.length} acknowledged of a bound of ${BOUND}`,
    );
    const firstRefused = answers.findIndex((a) => a.code === '5.03');
    assert.ok(firstRefused > 0, 'some were refused');
    assert.ok(
      answers.slice(firstRefused).every((a) => a.code === '5.03'),
      'once full, no acknowledgement until it drains: nothing was made room for by dropping',
    );
    for (const r of refused)
      assert.equal(r.maxAge, RETRY_AFTER, '5.03 carries Max-Age = uplink.queue.retryAfterSeconds');
    const warnings = gw.log.filter((l) => l.includes('uplink queue full: refusing new messages'));
    assert.equal(warnings.length, 1, 'the refusals are said once (rate-limited), not once per reading');
    assert.match(warnings[0] ?? '', /"total":/);

    // A policy flow publishing through the control API is refused the same way: 503 with Retry-After, typed.
    assert.deepEqual(await flowPublish(socketPath, flowToken), {
      status: 503,
      retryAfter: String(RETRY_AFTER),
      code: 'ERR_UPLINK_QUEUE_FULL',
    });

    await broker.start();
    await until(
      `all ${acked.length} acknowledged readings at the broker`,
      () => acked.every((p) => sub.seen.has(p)),
      60_000,
    );
    // Drained: the sensor that retries after Max-Age is taken again (the broker is back, the queue empties).
    let again = await post(c, 'bp-after', 1000);
    for (let n = 0; again.code === '5.03' && n < 50; n++) {
      await new Promise((r) => setTimeout(r, 200));
      again = await post(c, 'bp-after', 1001 + n);
    }
    assert.equal(again.code, '2.04');
    await until('the reading after the outage at the broker', () => sub.seen.has('bp-after'), 30_000);
    // What was refused was never stored: the queue is FIFO, and the reading after the outage came with none of it.
    assert.ok(
      refused.every((r) => !sub.seen.has(r.payload)),
      'a refused reading was not queued',
    );
    c.close();
    console.log(
      JSON.stringify({ backpressure: { bound: BOUND, acknowledged: acked.length, refused: refused.length } }),
    );
  });
});
