// `npm run bench -- fleet`: the fleet plane's costs against a peer in the same run.
//  1. The reported state at N devices (default 1,000): its size on the wire (the device list gzipped when large)
//     against the plain JSON device list, and the cost of building it against serialising that list alone.
//  2. Time from `portcullis fleet publish` to "applied" on three gateways (real processes, real mosquitto with
//     mutual TLS), against the transport floor: `mosquitto_pub` of the same document, seen by a subscriber.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import mqtt from 'mqtt';
import { systemClock } from '../gateway/src/clock.ts';
import { resolveConfig } from '../gateway/src/config/index.ts';
import { Core } from '../gateway/src/core.ts';
import { buildState, complianceSummary } from '../gateway/src/fleet/state.ts';
import { runCli } from '../test/helpers/cli.ts';
import { makeGatewayHome, type RunningGateway } from '../test/helpers/gateway.ts';
import { startBroker } from '../test/helpers/mosquitto.ts';
import { makePki } from '../test/helpers/pki.ts';
import { parseOptions, round } from './lib/load.ts';

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? 0;
}

function timeMs(rounds: number, fn: () => void): number {
  const per: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const t0 = performance.now();
    fn();
    per.push(performance.now() - t0);
  }
  return median(per);
}

function stateAtScale(devices: number, rounds: number) {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-bench-fleet-'));
  try {
    const config = join(dir, 'config.yaml');
    writeFileSync(config, `dataDir: ${join(dir, 'var')}\n`);
    const core = Core.open(resolveConfig(config).config, systemClock);
    try {
      for (let i = 0; i < devices; i++) {
        core.identity.addPskDevice(
          { id: `sensor-${i}`, pskIdentity: `sensor-${i}`, generate: true },
          'bench',
        );
      }
      const compliance = complianceSummary(core);
      const inputs = {
        core,
        prefix: 'bench',
        uplink: undefined,
        audit: core.audit.checkpoint({ force: true }),
        hpke: { publicKey: 'x', keyId: '0000000000000000', signature: 'x' },
        operatorKeyId: null,
        labels: {},
        compliance,
      };
      const state = buildState(inputs);
      const listJson = JSON.stringify(core.identity.list());
      const buildMs = timeMs(rounds, () => JSON.stringify(buildState(inputs)));
      const listMs = timeMs(rounds, () => JSON.stringify(core.identity.list()));
      const complianceMs = timeMs(Math.min(rounds, 3), () => complianceSummary(core));
      return {
        devices,
        stateBytes: Buffer.byteLength(JSON.stringify(state)),
        deviceListJsonBytes: Buffer.byteLength(listJson),
        deviceListSent: state.devices.listGzip ? 'gzip' : 'json',
        stateBytesPerListByte: round(
          Buffer.byteLength(JSON.stringify(state)) / Buffer.byteLength(listJson),
          3,
        ),
        buildMs: round(buildMs, 2),
        listOnlyMs: round(listMs, 2),
        buildCostRatio: round(buildMs / listMs, 2),
        complianceMs: round(complianceMs, 1),
      };
    } finally {
      core.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function publishToApplied(rounds: number) {
  const pki = makePki();
  const broker = await startBroker({ caPath: pki.caPath, server: pki.broker });
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-bench-fleet-op-'));
  const gws: RunningGateway[] = [];
  const homes: Array<{ dispose(): void }> = [];
  const observer = mqtt.connect(broker.url, {
    protocolVersion: 5,
    ca: readFileSync(pki.caPath),
    cert: readFileSync(pki.client.certPath),
    key: readFileSync(pki.client.keyPath),
    reconnectPeriod: 0,
  });
  try {
    await new Promise<void>((resolve) => observer.once('connect', () => resolve()));
    await runCli(['fleet', 'keygen', 'keys'], { cwd: dir });
    const prefixes = ['bench-a', 'bench-b', 'bench-c'];
    for (const p of prefixes) {
      const home = await makeGatewayHome(pki, broker, `gw-${p}`, {
        topicPrefix: p,
        extraConfig: [
          'fleet:',
          `  operatorKeyFile: ${join(dir, 'keys', 'operator.pub')}`,
          '  groups: [bench]',
        ],
      });
      homes.push(home);
      gws.push(await home.start());
    }
    const applied = new Map<number, Set<string>>();
    let floorSeen: (() => void) | null = null;
    /** When the broker delivered each version on the group topic (the gateways get it at the same time). */
    const delivered = new Map<number, number>();
    observer.on('message', (topic, payload) => {
      if (topic === 'bench/floor') floorSeen?.();
      if (topic === 'fleet/groups/bench/desired' && payload.length > 0) {
        const body = JSON.parse(Buffer.from(JSON.parse(payload.toString()).payload, 'base64').toString());
        if (!delivered.has(body.version)) delivered.set(body.version, performance.now());
        return;
      }
      const m = /^(.+)\/gateway\/desired\/result$/.exec(topic);
      if (!m || payload.length === 0) return;
      const r = JSON.parse(payload.toString()) as { status: string; version: number };
      if (r.status !== 'applied') return;
      const s = applied.get(r.version) ?? new Set<string>();
      s.add(m[1] as string);
      applied.set(r.version, s);
    });
    await observer.subscribeAsync(['+/gateway/desired/result', 'bench/floor', 'fleet/groups/bench/desired'], {
      qos: 1,
    });
    const broker_ = [
      '--broker',
      broker.url,
      '--ca',
      pki.caPath,
      '--cert',
      pki.client.certPath,
      '--key',
      pki.client.keyPath,
    ];
    const fleetMs: number[] = [];
    const gatewaySideMs: number[] = [];
    const floorMs: number[] = [];
    writeFileSync(join(dir, 'doc.yaml'), 'target: {group: bench}\nspec:\n  labels: {profile: bench}\n');
    for (let v = 1; v <= rounds; v++) {
      await runCli(
        [
          'fleet',
          'sign',
          'doc.yaml',
          '--key',
          'keys/operator.key',
          '--doc-version',
          String(v),
          '--expires',
          '1h',
          '--out',
          'doc.signed',
        ],
        { cwd: dir },
      );
      const t0 = performance.now();
      await runCli(['fleet', 'publish', ...broker_, '--group', 'bench', 'doc.signed'], { cwd: dir });
      while ((applied.get(v)?.size ?? 0) < prefixes.length) await new Promise((r) => setTimeout(r, 5));
      const done = performance.now();
      fleetMs.push(done - t0);
      gatewaySideMs.push(done - (delivered.get(v) ?? t0));
      // The floor: the same bytes through the same broker with mosquitto_pub (also a new process and TLS session).
      const t1 = performance.now();
      const seen = new Promise<void>((resolve) => {
        floorSeen = resolve;
      });
      const pub = spawn('mosquitto_pub', [
        '-h',
        '127.0.0.1',
        '-p',
        String(broker.port),
        '--cafile',
        pki.caPath,
        '--cert',
        pki.client.certPath,
        '--key',
        pki.client.keyPath,
        '-V',
        'mqttv5',
        '-q',
        '1',
        '-t',
        'bench/floor',
        '-f',
        join(dir, 'doc.signed'),
      ]);
      await Promise.all([seen, once(pub, 'exit')]);
      floorMs.push(performance.now() - t1);
    }
    const f = median(fleetMs);
    const floor = median(floorMs);
    return {
      gateways: prefixes.length,
      rounds,
      publishToAppliedOnAllMs: round(f, 1),
      /** From the broker delivering the document to the third gateway's "applied" result. */
      deliveredToAppliedOnAllMs: round(median(gatewaySideMs), 1),
      mosquittoPubToReceivedMs: round(floor, 1),
      ratio: round(f / floor, 2),
    };
  } finally {
    await observer.endAsync();
    await Promise.all(gws.map((g) => g.stop()));
    await broker.dispose();
    for (const h of homes) h.dispose();
    pki.dispose();
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function fleetBench(argv: string[]) {
  const o = parseOptions('fleet', argv, { devices: 1000, rounds: 5 });
  process.stderr.write(`fleet: state at ${o.devices} devices\n`);
  const state = stateAtScale(o.devices, o.rounds);
  process.stderr.write('fleet: publish to applied on three gateways\n');
  const apply = await publishToApplied(o.rounds);
  return { bench: 'fleet', state, apply };
}
