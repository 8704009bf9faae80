/**
 * The live path end to end: a real gateway process, a sensor over DTLS (PSK), a learning period, then a flood.
 * The gateway raises an explained alert and, with the quarantine policy, quarantines the device (observe mode:
 * its DTLS session stays, its telemetry is refused).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parse } from 'coap-packet';
import { runCli, spawnCli, waitForLine } from './helpers/cli.ts';
import { postMany } from './helpers/coap-sender.ts';
import { coapPost } from './helpers/coaps-fixture.ts';
import { TestDtlsClient } from './helpers/dtls-test-client.ts';
import { freeUdpPort } from './helpers/gateway.ts';

const KEY = Buffer.from('flooding-sensor-key-01');
const CAM_KEY = Buffer.from('flooding-camera-key-02');

describe('behaviour monitoring on the live DTLS path', () => {
  let dir: string;
  let config: string;
  let port: number;
  let gateway: ReturnType<typeof spawnCli>;
  const cli = async (...args: string[]) => {
    const r = await runCli(['--config', config, ...args], { cwd: dir });
    if (r.code !== 0) throw new Error(`portcullis ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'portcullis-anomaly-'));
    port = await freeUdpPort();
    config = join(dir, 'config.yaml');
    writeFileSync(
      config,
      [
        `dataDir: ${join(dir, 'var')}`,
        `dtls: {host: 127.0.0.1, port: ${port}}`,
        'ui: {port: 0}',
        'segments: [{name: sensors, role: sensors, vlanId: 20, parentInterface: lan0, subnet: 10.20.0.0/24, gatewayAddress: 10.20.0.1}]',
        // Learning for ~11 s with one-second windows: the same code as 24 h with one-minute windows, faster.
        'anomaly:',
        '  learningHours: 0.003',
        '  windowSeconds: 1',
        '  responses:',
        '    - {type: camera, minSeverity: high, action: rate-limit, perSecond: 2, durationMinutes: 10}',
        '    - {segment: sensors, minSeverity: high, action: quarantine}',
        '',
      ].join('\n'),
    );
    const add = (id: string, key: Buffer, ...extra: string[]) =>
      cli(
        'device',
        'add',
        id,
        '--psk-identity',
        id,
        '--psk',
        key.toString('hex'),
        '--segment',
        'sensors',
        ...extra,
      );
    await add('boiler-9', KEY);
    await add('cam-2', CAM_KEY, '--type', 'camera');
    gateway = spawnCli(['--config', config, 'start'], { cwd: dir });
    await waitForLine(gateway, (l) => (l.includes('"gateway started"') ? true : undefined));
  });

  after(async () => {
    if (gateway && gateway.exitCode === null) {
      gateway.kill('SIGTERM');
      await new Promise((r) => gateway.once('exit', r));
    }
    rmSync(dir, { recursive: true, force: true });
  });

  const sensor = (identity: string, key: Buffer) =>
    new TestDtlsClient({
      port,
      suite: 'TLS_PSK_WITH_AES_128_CCM_8',
      psk: { identity, key },
      timeoutMs: 5000,
    });
  let boiler: TestDtlsClient;
  let camera: TestDtlsClient;

  async function waitFor<T>(probe: () => Promise<T | undefined>, what: string): Promise<T> {
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      const v = await probe();
      if (v !== undefined) return v;
      await new Promise((r) => setTimeout(r, 300));
    }
    throw new Error(`timed out waiting for ${what}`);
  }

  it('learns both sensors, then a flood from each is alerted', async () => {
    boiler = sensor('boiler-9', KEY);
    camera = sensor('cam-2', CAM_KEY);
    await boiler.connect();
    await camera.connect();
    // Learning: two readings a second each, for 13 s.
    let id = 1;
    const started = Date.now();
    while (Date.now() - started < 13_000) {
      assert.equal((await postMany(boiler, [`{"t":${id}}`], { firstMessageId: id })).length, 1);
      assert.equal((await postMany(camera, [`{"t":${id}}`], { firstMessageId: id++ })).length, 1);
      await new Promise((r) => setTimeout(r, 500));
    }
    // The floods: 400 readings each, as fast as the gateway answers.
    await postMany(
      boiler,
      Array.from({ length: 400 }, (_, i) => `{"f":${i}}`),
      { window: 16, firstMessageId: 1000 },
    );
    await postMany(
      camera,
      Array.from({ length: 400 }, (_, i) => `{"f":${i}}`),
      { window: 16, firstMessageId: 1000 },
    );
    const alerts = await waitFor(async () => {
      const list = JSON.parse(await cli('alerts', 'list', '--json')) as {
        kind: string;
        severity: string;
        explanation: string;
        deviceId: string;
      }[];
      // The first second of a flood may be scored before it is full (medium); the alert rises with the next.
      const floods = list.filter((a) => a.kind.includes('flood'));
      return floods.length === 2 && floods.every((a) => a.severity === 'high') ? floods : undefined;
    }, 'two high flood alerts');
    for (const a of alerts) {
      assert.equal(a.severity, 'high');
      assert.match(a.explanation, /message flood: \d+ messages in 1 s, expected/);
    }
  });

  it('quarantines the sensor (policy for its segment) and keeps watching it: telemetry refused, session kept', async () => {
    const device = await waitFor(async () => {
      const d = JSON.parse(await cli('device', 'show', 'boiler-9', '--json')).device;
      return d.state === 'quarantined' ? d : undefined;
    }, 'the quarantine');
    assert.equal(device.quarantine.mode, 'observe');
    boiler.send(coapPost('{"after":1}', 5000));
    assert.equal(parse(await boiler.receive()).code, '4.03');
    boiler.close();
    const audit = await cli('audit', 'export', '--format', 'jsonl');
    const q = audit
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l))
      .find((e) => e.action === 'device.quarantine');
    assert.equal(q.actor, 'anomaly');
    assert.equal(q.target, 'boiler-9');
  });

  it('rate-limits the camera (policy for its class): beyond 2 readings a second it gets 4.29, and a person can lift it', async () => {
    await waitFor(async () => {
      const audit = await cli('audit', 'export', '--format', 'jsonl');
      return audit.includes('"device.rate-limit"') ? true : undefined;
    }, 'the rate limit');
    // The listener picks the limit up on its next review (a second).
    await new Promise((r) => setTimeout(r, 1500));
    const codes: string[] = [];
    for (let i = 0; i < 10; i++) {
      camera.send(coapPost(`{"n":${i}}`, 6000 + i));
      codes.push(parse(await camera.receive()).code);
    }
    assert.ok(codes.filter((c) => c === '2.04').length <= 3, codes.join(' '));
    assert.ok(codes.includes('4.29'), codes.join(' '));
    assert.equal(JSON.parse(await cli('device', 'show', 'cam-2', '--json')).device.state, 'active');
    await cli('device', 'unlimit', 'cam-2');
    await new Promise((r) => setTimeout(r, 1500));
    camera.send(coapPost('{"n":"free"}', 7000));
    assert.equal(parse(await camera.receive()).code, '2.04');
    camera.close();
  });
});
