/**
 * `npm run bench -- e2e`: messages/s and latency from many DTLS sensors through the gateway (a real
 * `portcullis start` process) to mosquitto, and — in the same run, against the same broker — the same number of
 * clients publishing straight to mosquitto over mutual TLS: the ceiling the gateway is measured against.
 *
 * Latency is from the sensor's send to the subscriber's receipt (both in this process, one clock). For the
 * gateway path that includes DTLS, CoAP, the durable queue (fsync with `store.synchronous: full`) and MQTT.
 */
import { readFileSync } from 'node:fs';
import mqtt, { type MqttClient } from 'mqtt';
import { systemClock } from '../gateway/src/clock.ts';
import { resolveConfig } from '../gateway/src/config/index.ts';
import { Core } from '../gateway/src/core.ts';
import { coapPost } from '../test/helpers/coaps-fixture.ts';
import { TestDtlsClient } from '../test/helpers/dtls-test-client.ts';
import { makeGatewayHome } from '../test/helpers/gateway.ts';
import { startBroker } from '../test/helpers/mosquitto.ts';
import { makePki, type TestPki } from '../test/helpers/pki.ts';
import { inParallel, parseOptions, round, runFor, sliceWalker } from './lib/load.ts';

const log = (msg: string) => process.stderr.write(`[bench e2e] ${msg}\n`);
const round2 = (x: number) => round(x, 2);

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

/** Receives everything under the prefix and records each message's latency (payload "<tag>|<sent at>"). */
async function latencySink(pki: TestPki, url: string, topic: string) {
  const latencies = new Map<string, number[]>();
  const client = mqtt.connect(url, {
    protocolVersion: 5,
    clientId: 'bench-sink',
    ca: readFileSync(pki.caPath),
    cert: readFileSync(pki.client.certPath),
    key: readFileSync(pki.client.keyPath),
    reconnectPeriod: 500,
  });
  client.on('message', (_t, payload) => {
    const [tag, at] = payload.toString().split('|');
    const list = latencies.get(tag ?? '') ?? [];
    list.push(performance.now() - Number(at));
    latencies.set(tag ?? '', list);
  });
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve());
    client.once('error', reject);
  });
  await client.subscribeAsync(topic, { qos: 1 });
  return { latencies, client };
}

/** `inflight` workers for `seconds`, each walking its own slice of the `n` senders, one message at a time. */
async function drive(
  n: number,
  inflight: number,
  seconds: number,
  send: (sender: number) => Promise<void>,
): Promise<{ sent: number; errors: number; elapsed: number }> {
  const workers = Math.min(inflight, n);
  const next = sliceWalker(n, workers);
  const r = await runFor(seconds, workers, (w) => send(next(w)));
  return { sent: r.ops, errors: r.errors, elapsed: r.seconds };
}

async function drain(latencies: Map<string, number[]>, tag: string, expected: number): Promise<void> {
  const deadline = Date.now() + 60_000;
  while ((latencies.get(tag)?.length ?? 0) < expected && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
  }
}

function summarize(latencies: number[], sent: number, elapsed: number, errors: number) {
  const sorted = [...latencies].sort((a, b) => a - b);
  return {
    sent,
    received: latencies.length,
    errors,
    messagesPerSecond: round2(latencies.length / elapsed),
    latencyMs: { p50: round2(percentile(sorted, 50)), p99: round2(percentile(sorted, 99)) },
  };
}

export async function e2eBench(argv: string[]): Promise<unknown> {
  const settings = parseOptions('e2e', argv, { seconds: 5, sensors: 1000, inflight: 64 });
  const pki = makePki();
  const broker = await startBroker({ caPath: pki.caPath, server: pki.broker });
  // Every simulated sensor shares 127.0.0.1: lift the per-source limits a site's sensors (one address each) would
  // not hit.
  const home = await makeGatewayHome(pki, broker, 'gw-bench', {
    dtlsLimits:
      '{handshakesPerSecondPerSource: 100000, maxHandshakesPerSource: 1000, maxHandshakesPerPrefix: 1000, maxSessionsPerSource: 100000}',
  });
  const sensors: TestDtlsClient[] = [];
  const direct: MqttClient[] = [];
  let sink: Awaited<ReturnType<typeof latencySink>> | null = null;
  let gateway: Awaited<ReturnType<typeof home.start>> | null = null;
  try {
    log(`provisioning ${settings.sensors} PSK sensors`);
    const keyOf = (i: number) => Buffer.from(`bench-sensor-key-${String(i).padStart(6, '0')}`);
    const core = Core.open(resolveConfig(home.config).config, systemClock);
    try {
      for (let i = 0; i < settings.sensors; i++) {
        core.identity.addPskDevice(
          { id: `s${i}`, pskIdentity: `s${i}`, pskHex: keyOf(i).toString('hex') },
          'bench',
        );
      }
    } finally {
      core.close();
    }
    gateway = await home.start();
    sink = await latencySink(pki, broker.url, '#');

    log(`opening ${settings.sensors} DTLS sessions`);
    sensors.push(
      ...(await inParallel(settings.sensors, 16, async (i) => {
        const c = new TestDtlsClient({
          port: home.dtlsPort,
          suite: 'TLS_PSK_WITH_AES_128_CCM_8',
          psk: { identity: `s${i}`, key: keyOf(i) },
          timeoutMs: 10_000,
        });
        await c.connect();
        return c;
      })),
    );
    log('gateway path');
    const mids = new Array<number>(settings.sensors).fill(0);
    const viaGateway = await drive(settings.sensors, settings.inflight, settings.seconds, async (i) => {
      const c = sensors[i] as TestDtlsClient;
      mids[i] = ((mids[i] as number) + 1) & 0xffff;
      c.send(coapPost(`gw|${performance.now()}`, mids[i]));
      await c.receive();
    });
    await drain(sink.latencies, 'gw', viaGateway.sent);
    const gwLatencies = sink.latencies.get('gw') ?? [];

    log(`connecting ${settings.sensors} MQTT clients straight to the broker`);
    direct.push(
      ...(await inParallel(settings.sensors, 16, async (i) => {
        const c = mqtt.connect(broker.url, {
          protocolVersion: 5,
          clientId: `direct-${i}`,
          ca: readFileSync(pki.caPath),
          cert: readFileSync(pki.client.certPath),
          key: readFileSync(pki.client.keyPath),
          reconnectPeriod: 0,
        });
        await new Promise<void>((resolve, reject) => {
          c.once('connect', () => resolve());
          c.once('error', reject);
        });
        return c;
      })),
    );
    log('direct path');
    const straight = await drive(settings.sensors, settings.inflight, settings.seconds, async (i) => {
      await (direct[i] as MqttClient).publishAsync(`direct/${i}`, `direct|${performance.now()}`, { qos: 1 });
    });
    await drain(sink.latencies, 'direct', straight.sent);
    const directLatencies = sink.latencies.get('direct') ?? [];

    const g = summarize(gwLatencies, viaGateway.sent, viaGateway.elapsed, viaGateway.errors);
    const d = summarize(directLatencies, straight.sent, straight.elapsed, straight.errors);
    return {
      bench: 'e2e',
      settings,
      throughViaGateway: g,
      straightToBroker: d,
      ratio: {
        throughput: round2(g.messagesPerSecond / d.messagesPerSecond),
        p50Latency: round2(g.latencyMs.p50 / d.latencyMs.p50),
        p99Latency: round2(g.latencyMs.p99 / d.latencyMs.p99),
      },
    };
  } finally {
    for (const c of sensors) c?.close();
    for (const c of direct) c?.end(true);
    sink?.client.end(true);
    await gateway?.stop();
    await broker.dispose();
    home.dispose();
    pki.dispose();
  }
}
