/**
 * Pull-mode sensors end to end: the sensor is libcoap's `coap-server-openssl` (a CoAP server with a PSK, sending
 * the identity hint libcoap sends by default); the gateway is its DTLS client (node-dtls-client, in the poller
 * worker), polls a resource on an interval, and the readings take the same path to mosquitto.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { startE2e, stopE2e } from './helpers/e2e.ts';
import { freeUdpPort, type GatewayHome, type RunningGateway } from './helpers/gateway.ts';
import type { Broker } from './helpers/mosquitto.ts';
import { coapClientPost } from './helpers/peers.ts';
import type { TestPki } from './helpers/pki.ts';
import type { Subscriber } from './helpers/subscriber.ts';

const KEY = 'pull-sensor-key-0001';

describe('end to end: a pull-mode sensor polled by the gateway', () => {
  let pki: TestPki;
  let broker: Broker;
  let home: GatewayHome;
  let gw: RunningGateway;
  let sub: Subscriber;
  let sensor: ChildProcess;
  let sensorPort: number;

  before(async () => {
    // coap-server listens on port + 1 for DTLS.
    sensorPort = await freeUdpPort();
    sensor = spawn('coap-server-openssl', ['-A', '127.0.0.1', '-p', String(sensorPort), '-k', KEY], {
      stdio: 'ignore',
    });
    ({ pki, broker, home, gw, sub } = await startE2e('gw-pull'));
  });
  after(async () => {
    sensor?.kill('SIGTERM');
    await stopE2e({ pki, broker, home, gw, sub });
  });

  it('polls the sensor’s resource and publishes each reading on the device topic', async () => {
    await home.cli([
      ...['device', 'add', 'meter-1', '--psk-identity', 'gateway', '--psk', Buffer.from(KEY).toString('hex')],
      ...['--pull', `coaps://127.0.0.1:${sensorPort + 1}/time`, '--interval', '1'],
    ]);
    await sub.waitFor(
      (ms) => ms.filter((m) => m.topic === 'site-1/devices/meter-1/telemetry').length >= 2,
      'two polled readings',
      20_000,
    );
    const m = sub.messages.find((x) => x.topic === 'site-1/devices/meter-1/telemetry');
    // libcoap's /time resource answers with the server's clock, e.g. "Nov 25 16:09:27".
    assert.match(m?.payload.toString() ?? '', /^[A-Z][a-z]{2} \d\d \d\d:\d\d:\d\d$/);
    assert.match(m?.properties ?? '', /deviceId:meter-1/);
  });

  it('never accepts the gateway-to-sensor key for an inbound session', async () => {
    const r = await coapClientPost(home.dtlsPort, { identity: 'pull:meter-1', key: KEY }, 'impostor', [
      '-B',
      '3',
    ]);
    assert.match(r.stdout.toString() + r.stderr, /bad record mac/);
    assert.ok(!sub.messages.some((x) => x.payload.toString() === 'impostor'));
  });

  it('stops polling a sensor once it is decommissioned', async () => {
    await home.cli(['device', 'decommission', 'meter-1']);
    await new Promise((r) => setTimeout(r, 3000)); // one reload period and a poll interval
    const count = sub.messages.filter((x) => x.topic === 'site-1/devices/meter-1/telemetry').length;
    await new Promise((r) => setTimeout(r, 2500));
    assert.equal(sub.messages.filter((x) => x.topic === 'site-1/devices/meter-1/telemetry').length, count);
  });

  it('reports a sensor that rejects the key, and delivers nothing from it', async () => {
    await home.cli([
      ...[
        'device',
        'add',
        'meter-2',
        '--psk-identity',
        'gateway',
        '--psk',
        Buffer.from('a-wrong-key-0123456').toString('hex'),
      ],
      ...['--pull', `coaps://127.0.0.1:${sensorPort + 1}/time`, '--interval', '1'],
    ]);
    const deadline = Date.now() + 20_000;
    while (
      !gw.log.some((l) => l.includes('pull poll failed') && l.includes('meter-2')) &&
      Date.now() < deadline
    ) {
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.ok(gw.log.some((l) => l.includes('pull poll failed') && l.includes('meter-2')));
    assert.ok(!sub.messages.some((x) => x.topic === 'site-1/devices/meter-2/telemetry'));
  });
});
