/**
 * `npm run bench -- sparkplug`: end-to-end throughput and latency of the same sensors' readings through two real
 * gateways on one broker in the same run — one with `uplink.format: raw`, one with `sparkplug-b` — so the cost
 * of Sparkplug (metric mapping, Tahu's protobuf encoding, births, sequence numbers) is a ratio against raw; and a
 * third gateway whose devices' policy profile maps the readings to typed metrics (`metrics`), against both.
 * Readings are small JSON objects; latency is from the sensor's send to the subscriber's receipt.
 */

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { performance } from 'node:perf_hooks';
import mqtt from 'mqtt';
import { systemClock } from '../gateway/src/clock.ts';
import { resolveConfig } from '../gateway/src/config/index.ts';
import { Core } from '../gateway/src/core.ts';
import { coapPost } from '../test/helpers/coaps-fixture.ts';
import type { TestDtlsClient } from '../test/helpers/dtls-test-client.ts';
import { type GatewayHome, makeGatewayHome, type RunningGateway } from '../test/helpers/gateway.ts';
import { startBroker } from '../test/helpers/mosquitto.ts';
import { makePki } from '../test/helpers/pki.ts';
import { parseOptions, round, runFor, sliceWalker } from './lib/load.ts';
import { openPskSessions } from './lib/sessions.ts';

const log = (msg: string) => process.stderr.write(`[bench sparkplug] ${msg}\n`);
const tahu = (
  createRequire(import.meta.url)('sparkplug-payload') as {
    get(ns: string): {
      decodePayload(b: Uint8Array): { metrics?: Array<{ name?: string; value?: unknown }> };
    };
  }
).get('spBv1.0');

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

export async function sparkplugBench(argv: string[]): Promise<unknown> {
  const o = parseOptions('sparkplug', argv, { seconds: 5, sensors: 100, inflight: 32 });
  const pki = makePki();
  const broker = await startBroker({ caPath: pki.caPath, server: pki.broker });
  const limits =
    '{handshakesPerSecondPerSource: 100000, maxHandshakesPerSource: 1000, maxHandshakesPerPrefix: 1000, maxSessionsPerSource: 100000}';
  const homes: GatewayHome[] = [];
  const gws: RunningGateway[] = [];
  const sensors: TestDtlsClient[] = [];
  const latencies = { raw: [] as number[], sparkplug: [] as number[], mapped: [] as number[] };
  const sink = mqtt.connect(broker.url, {
    protocolVersion: 5,
    ca: readFileSync(pki.caPath),
    cert: readFileSync(pki.client.certPath),
    key: readFileSync(pki.client.keyPath),
    reconnectPeriod: 0,
  });
  sink.on('message', (topic, payload) => {
    if (topic.startsWith('raw/devices/')) {
      latencies.raw.push(performance.now() - (JSON.parse(payload.toString()) as { t: number }).t);
    } else if (topic.includes('/DDATA/')) {
      const t = tahu.decodePayload(payload).metrics?.find((m) => m.name === 't')?.value;
      const into = topic.startsWith('spBv1.0/benchmap/') ? latencies.mapped : latencies.sparkplug;
      if (typeof t === 'number') into.push(performance.now() - t);
    }
  });
  try {
    await new Promise<void>((resolve) => sink.once('connect', () => resolve()));
    await sink.subscribeAsync(
      ['raw/devices/+/telemetry', 'spBv1.0/bench/DDATA/#', 'spBv1.0/benchmap/DDATA/#'],
      { qos: 1 },
    );
    const keyOf = (i: number) => Buffer.from(`bench-sensor-key-${String(i).padStart(6, '0')}`);
    const results: Record<string, unknown> = {};
    for (const format of ['raw', 'sparkplug', 'mapped'] as const) {
      const extra =
        format === 'sparkplug'
          ? ['  format: sparkplug-b', '  sparkplug: {groupId: bench, edgeNodeId: edge}']
          : format === 'mapped'
            ? [
                '  format: sparkplug-b',
                '  sparkplug: {groupId: benchmap, edgeNodeId: edge}',
                'policy: {profiles: {mapped: {metrics: [{name: t, field: t, type: Double}, {name: Temperature, field: temperature, type: Float}, {name: OK, field: ok, type: Boolean}]}}}',
              ]
            : [];
      const home = await makeGatewayHome(pki, broker, `gw-${format}`, {
        topicPrefix: format,
        dtlsLimits: limits,
        extraConfig: extra,
      });
      homes.push(home);
      const core = Core.open(resolveConfig(home.config).config, systemClock);
      try {
        for (let i = 0; i < o.sensors; i++) {
          core.identity.addPskDevice(
            { id: `s${i}`, pskIdentity: `s${i}`, pskHex: keyOf(i).toString('hex') },
            'bench',
          );
          if (format === 'mapped') core.policy.assign(`s${i}`, { profile: 'mapped' }, 'bench');
        }
      } finally {
        core.close();
      }
      gws.push(await home.start());
      log(`${format}: opening ${o.sensors} DTLS sessions`);
      const mine = await openPskSessions(home.dtlsPort, o.sensors, 16, keyOf);
      sensors.push(...mine);
      const mids = new Array<number>(o.sensors).fill(0);
      const workers = Math.min(o.inflight, o.sensors);
      const next = sliceWalker(o.sensors, workers);
      log(`${format}: driving`);
      const r = await runFor(o.seconds, workers, async (w) => {
        const i = next(w);
        const c = mine[i] as TestDtlsClient;
        mids[i] = ((mids[i] as number) + 1) & 0xffff;
        c.send(coapPost(JSON.stringify({ t: performance.now(), temperature: 21.5, ok: true }), mids[i]));
        await c.receive();
      });
      const deadline = Date.now() + 60_000;
      while (latencies[format].length < r.ops && Date.now() < deadline)
        await new Promise((res) => setTimeout(res, 100));
      const sorted = [...latencies[format]].sort((a, b) => a - b);
      results[format] = {
        sent: r.ops,
        received: sorted.length,
        errors: r.errors,
        messagesPerSecond: round(sorted.length / r.seconds, 2),
        latencyMs: { p50: round(percentile(sorted, 50), 2), p99: round(percentile(sorted, 99), 2) },
      };
    }
    const raw = results.raw as { messagesPerSecond: number; latencyMs: { p50: number; p99: number } };
    const sp = results.sparkplug as typeof raw;
    const mapped = results.mapped as typeof raw;
    return {
      bench: 'sparkplug',
      settings: o,
      ...results,
      ratio: {
        throughput: round(sp.messagesPerSecond / raw.messagesPerSecond, 2),
        p50Latency: round(sp.latencyMs.p50 / raw.latencyMs.p50, 2),
        p99Latency: round(sp.latencyMs.p99 / raw.latencyMs.p99, 2),
        mappedThroughputVsRaw: round(mapped.messagesPerSecond / raw.messagesPerSecond, 2),
        mappedThroughputVsGeneric: round(mapped.messagesPerSecond / sp.messagesPerSecond, 2),
        mappedP50VsGeneric: round(mapped.latencyMs.p50 / sp.latencyMs.p50, 2),
      },
    };
  } finally {
    for (const c of sensors) c.close();
    sink.end(true);
    await Promise.all(gws.map((g) => g.stop()));
    await broker.dispose();
    for (const h of homes) h.dispose();
    pki.dispose();
  }
}
