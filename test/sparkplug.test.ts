/**
 * `uplink.format: sparkplug-b`, end to end: a real gateway process, mosquitto with mutual TLS, a libcoap sensor,
 * and Eclipse Tahu's own decoder (`sparkplug-payload`) as the independent peer reading what arrives. Checks the
 * Sparkplug B 3.0 rules the gateway must keep: NBIRTH first with seq 0 and the bdSeq its Will (NDEATH) carries,
 * DBIRTH before a device's first DDATA of a session, seq increasing by one per message, a rebirth on NCMD, DDEATH
 * when a device is quarantined, NDEATH through the Will when the gateway dies.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import mqtt from 'mqtt';
import { type ProfileMetric, SparkplugSession } from '../gateway/src/uplink/sparkplug.ts';
import { runCli } from './helpers/cli.ts';
import { type GatewayHome, makeGatewayHome, type RunningGateway } from './helpers/gateway.ts';
import { type Broker, startBroker } from './helpers/mosquitto.ts';
import { runPeer } from './helpers/peers.ts';
import { makePki, type TestPki } from './helpers/pki.ts';

interface Decoded {
  timestamp?: unknown;
  seq?: unknown;
  metrics?: Array<{ name?: string; type?: string; value?: unknown }>;
}
const tahu = (
  createRequire(import.meta.url)('sparkplug-payload') as {
    get(ns: string): { decodePayload(b: Uint8Array): Decoded; encodePayload(p: object): Uint8Array };
  }
).get('spBv1.0');

/** Tahu decodes 64-bit fields as Long objects. */
const num = (v: unknown): number =>
  typeof v === 'number'
    ? v
    : typeof v === 'object' && v !== null && 'low' in v
      ? (v as { low: number }).low
      : Number.NaN;

interface Msg {
  type: string;
  device: string | undefined;
  seq: number;
  metrics: Map<string, unknown>;
  /** Each metric's Sparkplug type as Tahu decoded it. */
  types: Map<string, string>;
}

const KEY = 'sparkplug-sensor-key-01';

describe('Sparkplug B uplink, decoded by Eclipse Tahu', () => {
  let pki: TestPki;
  let broker: Broker;
  let home: GatewayHome;
  let gw: RunningGateway;
  let observer: mqtt.MqttClient;
  let dir: string;
  const seen: Msg[] = [];

  async function waitFor<T>(what: string, find: () => T | undefined, timeoutMs = 15_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = find();
      if (v !== undefined) return v;
      if (Date.now() > deadline)
        throw new Error(`timed out waiting for ${what}: ${JSON.stringify(seen.map((m) => [m.type, m.seq]))}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async function post(body: object) {
    const r = await runPeer('coap-client-openssl', [
      ...['-u', 'sensor-sp', '-k', KEY, '-m', 'post', '-t', '50', '-e', JSON.stringify(body)],
      `coaps://127.0.0.1:${home.dtlsPort}/telemetry`,
    ]);
    assert.equal(r.code, 0, r.stderr);
  }

  before(async () => {
    pki = makePki();
    broker = await startBroker({ caPath: pki.caPath, server: pki.broker });
    dir = mkdtempSync(join(tmpdir(), 'portcullis-sparkplug-'));
    assert.equal((await runCli(['fleet', 'keygen', 'keys'], { cwd: dir })).code, 0);
    home = await makeGatewayHome(pki, broker, 'gw-sp', {
      topicPrefix: 'site-sp',
      extraConfig: [
        '  format: sparkplug-b',
        '  sparkplug: {groupId: plant-1, edgeNodeId: edge-7}',
        'fleet:',
        `  operatorKeyFile: ${join(dir, 'keys', 'operator.pub')}`,
        // A device profile that maps readings to typed metrics (the second sensor takes it).
        'policy:',
        '  profiles:',
        '    cold-room:',
        '      metrics:',
        '        - {name: Temperature, field: temperature, type: Float}',
        '        - {name: Door/Open, field: door/open, type: Boolean}',
        '        - {name: Count, field: count, type: UInt32}',
      ],
    });
    await home.cli([
      'device',
      'add',
      'sensor-sp',
      '--psk-identity',
      'sensor-sp',
      '--psk',
      Buffer.from(KEY).toString('hex'),
    ]);
    observer = mqtt.connect(broker.url, {
      protocolVersion: 5,
      ca: readFileSync(pki.caPath),
      cert: readFileSync(pki.client.certPath),
      key: readFileSync(pki.client.keyPath),
      reconnectPeriod: 0,
    });
    await new Promise<void>((resolve, reject) => {
      observer.once('connect', () => resolve());
      observer.once('error', reject);
    });
    observer.on('message', (topic, payload) => {
      const [, group, type, edge, device] = topic.split('/');
      if (group !== 'plant-1' || edge !== 'edge-7' || type === 'NCMD') return;
      const d = tahu.decodePayload(payload);
      seen.push({
        type: type as string,
        device,
        seq: d.seq === undefined || d.seq === null ? Number.NaN : num(d.seq),
        metrics: new Map((d.metrics ?? []).map((m) => [m.name as string, m.value])),
        types: new Map((d.metrics ?? []).map((m) => [m.name as string, m.type as string])),
      });
    });
    await observer.subscribeAsync('spBv1.0/#', { qos: 1 });
    gw = await home.start();
  });

  after(async () => {
    await observer?.endAsync();
    await gw?.stop();
    await broker?.dispose();
    home?.dispose();
    pki?.dispose();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  let bdSeq: number;
  it('NBIRTH first: seq 0, bdSeq, and the rebirth control', async () => {
    const birth = await waitFor('NBIRTH', () => seen.find((m) => m.type === 'NBIRTH'));
    assert.equal(seen[0]?.type, 'NBIRTH');
    assert.equal(birth.seq, 0);
    bdSeq = num(birth.metrics.get('bdSeq'));
    assert.ok(Number.isInteger(bdSeq));
    assert.equal(birth.metrics.get('Node Control/Rebirth'), false);
  });

  it('a reading: DBIRTH then DDATA with the JSON fields as metrics, seq one up each; no second DBIRTH', async () => {
    await post({ temperature: 21.5, door: { open: false }, label: 'freezer 4' });
    await waitFor('DDATA', () => seen.find((m) => m.type === 'DDATA'));
    const [nb, db, dd] = seen;
    assert.deepEqual([nb?.type, db?.type, dd?.type], ['NBIRTH', 'DBIRTH', 'DDATA']);
    assert.equal(db?.device, 'sensor-sp');
    assert.deepEqual([db?.seq, dd?.seq], [1, 2]);
    assert.equal(dd?.metrics.get('temperature'), 21.5);
    assert.equal(dd?.metrics.get('door/open'), false);
    assert.equal(dd?.metrics.get('label'), 'freezer 4');
    assert.deepEqual([...(db?.metrics.keys() ?? [])].sort(), ['door/open', 'label', 'temperature']);
    await post({ temperature: 22 });
    const next = await waitFor('second DDATA', () => seen.filter((m) => m.type === 'DDATA')[1]);
    assert.equal(next.seq, 3);
    assert.equal(seen.filter((m) => m.type === 'DBIRTH').length, 1);
  });

  it('NCMD Node Control/Rebirth: a new NBIRTH (seq 0, same bdSeq), and the device is born again', async () => {
    const mark = seen.length;
    await observer.publishAsync(
      'spBv1.0/plant-1/NCMD/edge-7',
      Buffer.from(
        tahu.encodePayload({
          timestamp: Date.now(),
          metrics: [{ name: 'Node Control/Rebirth', type: 'Boolean', value: true }],
        }),
      ),
      { qos: 1 },
    );
    const rebirth = await waitFor('NBIRTH again', () => seen.slice(mark).find((m) => m.type === 'NBIRTH'));
    assert.equal(rebirth.seq, 0);
    assert.equal(num(rebirth.metrics.get('bdSeq')), bdSeq);
    await post({ temperature: 23 });
    await waitFor('DDATA after rebirth', () => seen.slice(mark).find((m) => m.type === 'DDATA'));
    assert.deepEqual(
      seen.slice(mark).map((m) => [m.type, m.seq]),
      [
        ['NBIRTH', 0],
        ['DBIRTH', 1],
        ['DDATA', 2],
      ],
    );
  });

  it('a quarantined device: DDEATH with the next seq', async () => {
    writeFileSync(
      join(dir, 'q.yaml'),
      'target: {gateway: site-sp}\nspec:\n  devices:\n    quarantine: [{id: sensor-sp, reason: sparkplug test}]\n',
    );
    const signed = join(dir, 'q.signed');
    const s = await runCli(
      [
        'fleet',
        'sign',
        'q.yaml',
        '--key',
        'keys/operator.key',
        '--doc-version',
        '1',
        '--expires',
        '1h',
        '--out',
        signed,
      ],
      { cwd: dir },
    );
    assert.equal(s.code, 0, s.stderr);
    const mark = seen.length;
    const p = await runCli(
      [
        'fleet',
        'publish',
        '--broker',
        broker.url,
        '--ca',
        pki.caPath,
        '--cert',
        pki.client.certPath,
        '--key',
        pki.client.keyPath,
        '--gateway',
        'site-sp',
        signed,
      ],
      { cwd: dir },
    );
    assert.equal(p.code, 0, p.stderr);
    const death = await waitFor('DDEATH', () => seen.slice(mark).find((m) => m.type === 'DDEATH'));
    assert.equal(death.device, 'sensor-sp');
    assert.equal(death.seq, 3);
  });

  it("a device whose profile maps metrics: DBIRTH declares exactly the profile's names and types, DDATA carries them, unmapped fields are not sent", async () => {
    await home.cli([
      'device',
      'add',
      'sensor-map',
      '--psk-identity',
      'sensor-map',
      '--psk',
      Buffer.from(KEY).toString('hex'),
    ]);
    await home.cli(['device', 'profile', 'sensor-map', 'cold-room']);
    const mark = seen.length;
    const postAs = async (body: object) => {
      const r = await runPeer('coap-client-openssl', [
        ...['-u', 'sensor-map', '-k', KEY, '-m', 'post', '-t', '50', '-e', JSON.stringify(body)],
        `coaps://127.0.0.1:${home.dtlsPort}/telemetry`,
      ]);
      assert.equal(r.code, 0, r.stderr);
    };
    await postAs({ temperature: 4.5, door: { open: true }, count: 7, secret: 'not for the host' });
    const data = await waitFor('mapped DDATA', () =>
      seen.slice(mark).find((m) => m.type === 'DDATA' && m.device === 'sensor-map'),
    );
    const birth = seen.slice(mark).find((m) => m.type === 'DBIRTH' && m.device === 'sensor-map');
    assert.ok(birth, 'DBIRTH before the first DDATA');
    for (const m of [birth, data]) {
      assert.deepEqual(
        [...m.types],
        [
          ['Temperature', 'Float'],
          ['Door/Open', 'Boolean'],
          ['Count', 'UInt32'],
        ],
      );
    }
    assert.deepEqual(
      [...data.metrics],
      [
        ['Temperature', 4.5],
        ['Door/Open', true],
        ['Count', 7],
      ],
    );
    assert.equal(data.seq, (birth.seq + 1) % 256);
    // A reading whose values do not fit: null metrics (Sparkplug's is_null), never a wrapped or coerced value.
    await postAs({ temperature: 'warm', count: -1 });
    const second = await waitFor(
      'second mapped DDATA',
      () => seen.slice(mark).filter((m) => m.type === 'DDATA' && m.device === 'sensor-map')[1],
    );
    assert.deepEqual(
      [...second.metrics],
      [
        ['Temperature', null],
        ['Door/Open', null],
        ['Count', null],
      ],
    );
    assert.equal(
      seen.slice(mark).filter((m) => m.type === 'DBIRTH').length,
      1,
      'born once while the map holds',
    );
  });

  it('a SIGKILLed gateway: NDEATH through the Will, with the bdSeq of its NBIRTH', async () => {
    const mark = seen.length;
    await gw.kill();
    const death = await waitFor('NDEATH', () => seen.slice(mark).find((m) => m.type === 'NDEATH'));
    assert.equal(num(death.metrics.get('bdSeq')), bdSeq);
  });
});

describe('Sparkplug session: a profile map that changes', () => {
  it('births the device again (DBIRTH) when its profile maps other metrics, and not otherwise', () => {
    let map: ProfileMetric[] = [{ name: 'T', field: 't', type: 'Double' }];
    const s = new SparkplugSession(
      { groupId: 'g', edgeNodeId: 'e', metricsFor: () => map },
      { now: () => 1_700_000_000_000 },
    );
    s.birth();
    const types = (out: Array<{ topic: string }>) => out.map((m) => m.topic.split('/')[2]);
    const reading = Buffer.from('{"t":1,"h":2}');
    assert.deepEqual(types(s.data('d', reading, 50)), ['DBIRTH', 'DDATA']);
    assert.deepEqual(types(s.data('d', reading, 50)), ['DDATA']);
    map = [...map, { name: 'H', field: 'h', type: 'Int8' }];
    const reborn = s.data('d', reading, 50);
    assert.deepEqual(types(reborn), ['DBIRTH', 'DDATA']);
    const birth = tahu.decodePayload((reborn[0] as { payload: Buffer }).payload);
    assert.deepEqual(
      birth.metrics?.map((m) => [m.name, m.type, m.value]),
      [
        ['T', 'Double', 1],
        ['H', 'Int8', 2],
      ],
    );
  });
});
