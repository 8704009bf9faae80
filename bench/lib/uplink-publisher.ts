/**
 * One process publishing QoS 1 to the broker for `npm run bench -- uplink`: either through the uplink's own
 * connection (gateway/src/uplink/connection.ts) or through mqtt.js as it comes, with the same options otherwise.
 * A process each, because the uplink's connection changes what its process loads (quiet-debug.ts). Prints one JSON
 * line: CPU, wall time and garbage collections over the measured publishes.
 *
 * usage: node --import tsx bench/lib/uplink-publisher.ts <uplink|plain> <url> <publishes> <ca> <cert> <key>
 */
import { readFileSync } from 'node:fs';
import { constants, type PerformanceEntry, PerformanceObserver } from 'node:perf_hooks';
import { setImmediate as turn } from 'node:timers/promises';

type Publish = (topic: string, payload: Buffer, props: Record<string, string>, done: () => void) => void;

const [variant, url, countArg, caPath, certPath, keyPath] = process.argv.slice(2);
const count = Number(countArg);
if (
  (variant !== 'uplink' && variant !== 'plain') ||
  !url ||
  !(count > 0) ||
  !caPath ||
  !certPath ||
  !keyPath
) {
  process.stderr.write('usage: uplink-publisher.ts <uplink|plain> <url> <publishes> <ca> <cert> <key>\n');
  process.exit(2);
}
const tls = { ca: readFileSync(caPath), cert: readFileSync(certPath), key: readFileSync(keyPath, 'utf8') };
const clientId = `bench-uplink-${variant}-${process.pid}`;

async function connectUplink(): Promise<Publish> {
  const { connectInProcess } = await import('../../gateway/src/uplink/connection.ts');
  return new Promise((resolve, reject) => {
    const conn = connectInProcess(
      { url: url as string, clientId, ca: tls.ca, cert: tls.cert },
      {
        onConnect: () => resolve((t, p, props, done) => conn.publish(t, p, props, done)),
        onClose: () => {},
        onError: (m) => reject(new Error(m)),
        onMessage: () => {},
      },
      tls.key,
    );
  });
}

async function connectPlain(): Promise<Publish> {
  const { default: mqtt } = await import('mqtt');
  // connection.ts's options.
  const client = mqtt.connect(
    url as string,
    {
      protocolVersion: 5,
      clientId,
      clean: true,
      reconnectPeriod: 0,
      connectTimeout: 10_000,
      ...tls,
      rejectUnauthorized: true,
      minVersion: 'TLSv1.2',
    } as import('mqtt').IClientOptions,
  );
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve());
    client.once('error', reject);
  });
  return (t, p, props, done) =>
    client.publish(t, p, { qos: 1, retain: false, properties: { userProperties: props } }, () => done());
}

const publish = variant === 'uplink' ? await connectUplink() : await connectPlain();

/** As the uplink's thread gets them: batches of up to 64 a turn, at most 512 waiting for their PUBACK. */
async function run(n: number): Promise<void> {
  let sent = 0;
  let acked = 0;
  let inFlight = 0;
  const done = () => {
    acked++;
    inFlight--;
  };
  while (acked < n) {
    for (let b = 0; b < 64 && sent < n && inFlight < 512; b++, sent++, inFlight++) {
      const device = `dev-${sent % 1000}`;
      publish(
        `portcullis/bench/devices/${device}/telemetry`,
        Buffer.from(`{"t":${sent},"v":${(sent % 97) / 7}}`),
        { device, contentFormat: '50', receivedAt: String(Date.now()), segment: 'sensors' },
        done,
      );
    }
    await turn();
  }
}

await run(2_000); // warm-up: the JIT, TLS buffers, the broker's session
const gc = { scavenges: 0, scavengeMs: 0, majors: 0, majorMs: 0 };
const obs = new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    const { kind } = (e as PerformanceEntry & { detail: { kind: number } }).detail;
    // Incremental marking and weak callbacks are steps of a major collection, not collections of their own.
    if (kind === constants.NODE_PERFORMANCE_GC_MINOR) {
      gc.scavenges++;
      gc.scavengeMs += e.duration;
    } else if (kind === constants.NODE_PERFORMANCE_GC_MAJOR) {
      gc.majors++;
      gc.majorMs += e.duration;
    }
  }
});
obs.observe({ entryTypes: ['gc'] });
const cpu0 = process.cpuUsage();
const t0 = performance.now();
await run(count);
const wallMs = performance.now() - t0;
const cpu = process.cpuUsage(cpu0);
await turn();
obs.disconnect();
process.stdout.write(
  `${JSON.stringify({ cpuMs: (cpu.user + cpu.system) / 1000, wallMs, publishes: count, ...gc })}\n`,
);
process.exit(0);
