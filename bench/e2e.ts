/**
 * `npm run bench -- e2e`: messages/s and latency from many DTLS sensors through the gateway (a real
 * `portcullis start` process) to mosquitto, and — in the same run, against the same broker — the same number of
 * clients publishing straight to mosquitto over mutual TLS: the ceiling the gateway is measured against.
 *
 * Each scale (`--sensors 100,1000,10000`) runs on a freshly started gateway: its idle resident memory is read
 * first, then every session is established (timed, bounded by --setup-seconds) before the measured window, so
 * the window holds traffic only. Over the window the gateway's own CPU (utime + stime of its process tree from
 * /proc) is divided by the messages it took; its resident memory is read at the end of the window, with every
 * session open and traffic flowing, against its idle base. `--cores 1|2` pins the gateway (taskset, every thread
 * and any child) to that many cores, to show how it scales with them.
 *
 * Scales run on one home, so a scale's gateway restores the behaviour baselines of the devices earlier scales
 * saw (`baselinesRestored`); the rest are born in the window, ~3 KB each, and count in its memory. `--seen` makes
 * every device of a scale seen first (one reading each through a gateway started and stopped before the scale),
 * as on any day after a device's first: its baseline is then in the idle base.
 *
 * Latency is from the sensor's send to the subscriber's receipt (both in this process, one clock). For the
 * gateway path that includes DTLS, CoAP, the durable queue (fsync with `store.synchronous: full`) and MQTT.
 */
import { execFileSync } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { once } from 'node:events';
import {
  closeSync,
  fsyncSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { systemClock } from '../gateway/src/clock.ts';
import { resolveConfig } from '../gateway/src/config/index.ts';
import { Core } from '../gateway/src/core.ts';
import { coapPost } from '../test/helpers/coaps-fixture.ts';
import { TestDtlsClient } from '../test/helpers/dtls-test-client.ts';
import { type GatewayHome, makeGatewayHome } from '../test/helpers/gateway.ts';
import { gatewayUnitStart } from '../test/helpers/gateway-unit.ts';
import { type Broker, startBroker } from '../test/helpers/mosquitto.ts';
import { makePki, type TestPki } from '../test/helpers/pki.ts';
import { inParallel, round, runFor, sliceWalker } from './lib/load.ts';
import { cpuMs, memory, processTree } from './lib/proc.ts';

const log = (msg: string) => process.stderr.write(`[bench e2e] ${msg}\n`);
const round2 = (x: number) => round(x, 2);
const MiB = 1024 * 1024;

interface Settings {
  sensors: number[];
  seconds: number;
  inflight: number;
  /** Cores the gateway is pinned to (taskset), or 0: not pinned. */
  cores: number;
  /** store.synchronous of the gateway: `full` (the default, issue 23's condition) or `normal` (to see fsync's share). */
  synchronous: 'full' | 'normal';
  /** Sessions (or broker connections) made at once while setting up a scale. */
  setupConcurrency: number;
  /** A scale whose sessions are not all up within this many seconds is reported as such and skipped. */
  setupSeconds: number;
  /** Every device of a scale sends one reading to a gateway started and stopped before it (baselines restored). */
  seen: boolean;
}

const USAGE =
  'usage: npm run bench -- e2e [--full] [--sensors N[,N…]] [--seconds N] [--inflight N] [--cores 1|2] ' +
  '[--setup-concurrency N] [--setup-seconds N] [--synchronous full|normal] [--seen]';

/** The default is short (100 and 1,000 sensors, 3 s per phase); `--full` is issue 23's run: 100, 1,000, 10,000, 10 s. */
export function parseE2eOptions(argv: string[]): Settings {
  const s: Settings = {
    sensors: [100, 1000],
    seconds: 3,
    inflight: 64,
    cores: 0,
    synchronous: 'full',
    setupConcurrency: 32,
    setupSeconds: 300,
    seen: false,
  };
  const positive = (v: string | undefined) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n <= 0) throw new Error(USAGE);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const key = argv[i];
    if (key === '--full') {
      s.sensors = [100, 1000, 10_000];
      s.seconds = 10;
      continue;
    }
    if (key === '--seen') {
      s.seen = true;
      continue;
    }
    const value = argv[++i];
    if (key === '--sensors') s.sensors = (value ?? '').split(',').map(positive);
    else if (key === '--seconds') s.seconds = positive(value);
    else if (key === '--inflight') s.inflight = positive(value);
    else if (key === '--cores') s.cores = positive(value);
    else if (key === '--synchronous' && (value === 'full' || value === 'normal')) s.synchronous = value;
    else if (key === '--setup-concurrency') s.setupConcurrency = positive(value);
    else if (key === '--setup-seconds') s.setupSeconds = positive(value);
    else throw new Error(USAGE);
  }
  if (s.cores > cpus().length) throw new Error(`--cores ${s.cores}: this machine has ${cpus().length}`);
  return s;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

/** The mosquitto process listening on `port` (its config file names the listener), for its CPU time. */
function brokerPid(port: number): number | null {
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const argv = readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0');
      if (!argv[0]?.endsWith('mosquitto')) continue;
      const conf = argv[argv.indexOf('-c') + 1];
      if (conf && new RegExp(`^listener ${port} `, 'm').test(readFileSync(conf, 'utf8'))) return Number(name);
    } catch {
      // not ours, or gone
    }
  }
  return null;
}

/** The broker's CPU milliseconds so far (0 when it could not be found: the figure is then left out). */
const brokerCpuMs = (pid: number | null) => (pid ? cpuMs(pid) : 0);

/** CPU milliseconds and resident bytes of the gateway's process tree. */
function treeUsage(root: number): { cpuMs: number; rss: number; peak: number } {
  let cpu = 0;
  let rss = 0;
  let peak = 0;
  for (const pid of processTree(root)) {
    try {
      cpu += cpuMs(pid);
      const m = memory(pid);
      rss += m.rss;
      peak += m.peak;
    } catch {
      // exited meanwhile
    }
  }
  return { cpuMs: cpu, rss, peak };
}

/**
 * The median time of a 4 KiB write + fsync in the gateway's home, taken just before its window: the gateway
 * acknowledges a reading only after an fsync (`synchronous: full`), so a busy or slow disk shows here first.
 */
function fsyncMs(dir: string): number {
  const file = join(dir, 'bench-fsync-probe');
  const fd = openSync(file, 'w');
  const times: number[] = [];
  try {
    for (let i = 0; i < 15; i++) {
      const t0 = performance.now();
      writeSync(fd, Buffer.alloc(4096, i), 0, 4096, 0);
      fsyncSync(fd);
      times.push(performance.now() - t0);
    }
  } finally {
    closeSync(fd);
    rmSync(file, { force: true });
  }
  return round2(
    percentile(
      times.sort((a, b) => a - b),
      50,
    ),
  );
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
): Promise<{ sent: number; errors: number; elapsed: number; generatorCoresBusy: number }> {
  const workers = Math.min(inflight, n);
  const next = sliceWalker(n, workers);
  const cpu0 = process.cpuUsage();
  const r = await runFor(seconds, workers, (w) => send(next(w)));
  const cpu = process.cpuUsage(cpu0);
  // The load generator (this process: the sensors' DTLS and CoAP, the MQTT clients, the sink) shares the machine:
  // near a whole core it, not the path under test, may be what bounds the rate.
  const generatorCoresBusy = round2((cpu.user + cpu.system) / 1000 / (r.seconds * 1000));
  return { sent: r.ops, errors: r.errors, elapsed: r.seconds, generatorCoresBusy };
}

async function drain(latencies: Map<string, number[]>, tag: string, expected: number): Promise<void> {
  const deadline = Date.now() + 60_000;
  while ((latencies.get(tag)?.length ?? 0) < expected && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
  }
}

function summarize(
  latencies: number[],
  r: { sent: number; elapsed: number; errors: number; generatorCoresBusy: number },
) {
  const { sent, elapsed, errors } = r;
  const sorted = [...latencies].sort((a, b) => a - b);
  return {
    sent,
    received: latencies.length,
    errors,
    generatorCoresBusy: r.generatorCoresBusy,
    messagesPerSecond: round2(latencies.length / elapsed),
    latencyMs: { p50: round2(percentile(sorted, 50)), p99: round2(percentile(sorted, 99)) },
  };
}

/** Makes `n` things at `concurrency`, giving up (null) past `seconds`; what was made is closed by `close`. */
async function setUp<T>(
  what: string,
  n: number,
  s: Settings,
  make: (i: number) => Promise<T>,
): Promise<{ made: T[]; seconds: number } | null> {
  const t0 = performance.now();
  const deadline = t0 + s.setupSeconds * 1000;
  let timedOut = false;
  const made = await inParallel(n, s.setupConcurrency, async (i) => {
    if (performance.now() > deadline) {
      timedOut = true;
      return null;
    }
    return make(i);
  });
  const seconds = round2((performance.now() - t0) / 1000);
  log(`${what}: ${n} in ${seconds} s`);
  if (timedOut) {
    log(`${what}: not all up within --setup-seconds ${s.setupSeconds}; scale skipped`);
    return null;
  }
  return { made: made as T[], seconds };
}

const keyOf = (i: number) => Buffer.from(`bench-sensor-key-${String(i).padStart(6, '0')}`);

/** Sensor s<i>'s DTLS client (PSK, CCM_8), not yet connected. */
const sensor = (home: GatewayHome, i: number) =>
  new TestDtlsClient({
    port: home.dtlsPort,
    suite: 'TLS_PSK_WITH_AES_128_CCM_8',
    psk: { identity: `s${i}`, key: keyOf(i) },
    timeoutMs: 10_000,
  });

/**
 * A DTLS port for the next start, below the kernel's ephemeral range: between two scales the gateway is down,
 * and a port from that range (the home's first one) can be taken meanwhile by any socket on the machine.
 */
async function movePort(home: GatewayHome): Promise<void> {
  for (;;) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    const probe = createSocket('udp4');
    const free = await new Promise<boolean>((resolve) => {
      probe.once('error', () => resolve(false));
      probe.bind(port, '127.0.0.1', () => resolve(true));
    });
    try {
      const closed = once(probe, 'close');
      probe.close();
      await closed;
    } catch {
      // a socket whose bind failed may be closed already
    }
    if (!free) continue;
    const config = readFileSync(home.config, 'utf8').replace(`port: ${home.dtlsPort}`, `port: ${port}`);
    writeFileSync(home.config, config);
    home.dtlsPort = port;
    return;
  }
}

/** The behaviour baselines a start restored, from its log (0 when it restored none). */
function baselinesRestored(log: string[]): number {
  for (const line of log) {
    if (!line.includes('behaviour baselines restored')) continue;
    try {
      return (JSON.parse(line) as { devices?: number }).devices ?? 0;
    } catch {
      // not a log entry of the gateway's (a line of something else on its stdout)
    }
  }
  return 0;
}

/** Starts the gateway, pinned when asked; waits for it to settle and reads its idle base. */
async function startGateway(home: GatewayHome, s: Settings) {
  await movePort(home);
  const gateway = await home.start();
  const pid = gateway.child.pid as number;
  const pinned = s.cores > 0 ? `0-${s.cores - 1}` : null;
  // -a: every thread there is now; threads and processes made later inherit the mask.
  if (pinned) execFileSync('taskset', ['-a', '-c', '-p', pinned, String(pid)], { stdio: 'ignore' });
  await new Promise((r) => setTimeout(r, 2000));
  // What the kernel says, not what was asked: the proof the pin took.
  const affinity =
    /^Cpus_allowed_list:\s*(\S+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? null;
  return { gateway, pid, pinned, affinity, idle: treeUsage(pid), restored: baselinesRestored(gateway.log) };
}

/** `seen`: devices s0… that an earlier gateway of this run took a reading from (their baselines are saved). */
type Env = { pki: TestPki; broker: Broker; home: GatewayHome; brokerPid: number | null; seen: number };

/**
 * `--seen`: devices s(seen)…s(n-1) each send one reading to a gateway started for it and stopped after, which
 * saves their baselines, so the scale's own gateway starts with them as it would on any day after the first.
 */
async function firstContact(n: number, s: Settings, env: Env, sink: Sink): Promise<boolean> {
  if (env.seen >= n) return true;
  await movePort(env.home);
  const gateway = await env.home.start();
  const sensors: TestDtlsClient[] = [];
  try {
    const done = await setUp('first contact (one reading each)', n - env.seen, s, async (k) => {
      const c = sensor(env.home, env.seen + k);
      sensors.push(c);
      await c.connect();
      c.send(coapPost(`seen|${performance.now()}`, 1));
      await c.receive();
      c.close();
      return c;
    });
    if (!done) return false;
    // Published before the stop, not by the scale's gateway while its idle base and window are read.
    await drain(sink.latencies, 'seen', n - env.seen);
    env.seen = n;
    return true;
  } finally {
    for (const c of sensors) c.close();
    await gateway.stop();
  }
}

type Sink = Awaited<ReturnType<typeof latencySink>>;

/**
 * The gateway path at one scale: a fresh gateway, every session up before the window, then the window with the
 * gateway's CPU and resident memory read from /proc. Why it was skipped when the set-up did not finish in time.
 */
async function gatewayPhase(n: number, s: Settings, env: Env, sink: Sink) {
  if (s.seen && !(await firstContact(n, s, env, sink)))
    return 'first contact not made within --setup-seconds';
  const gw = await startGateway(env.home, s);
  let sensors: TestDtlsClient[] = [];
  try {
    const sessions = await setUp('DTLS sessions', n, s, async (i) => {
      const c = sensor(env.home, i);
      sensors.push(c);
      await c.connect();
      return c;
    });
    if (!sessions) return 'DTLS sessions not established within --setup-seconds';
    sensors = sessions.made;
    log(`${n} sensors: gateway path`);
    const mids = new Array<number>(n).fill(0);
    const processes = processTree(gw.pid).length;
    const diskFsyncMs = fsyncMs(env.home.dir);
    const loadAverage1m = round2(loadavg()[0] as number);
    const before = treeUsage(gw.pid);
    const broker0 = brokerCpuMs(env.brokerPid);
    // Resident memory is sampled through the window (every session open, traffic flowing); the highest counts.
    let rss = 0;
    const sampler = setInterval(() => {
      rss = Math.max(rss, treeUsage(gw.pid).rss);
    }, 500);
    const r = await drive(n, s.inflight, s.seconds, async (i) => {
      const c = sensors[i] as TestDtlsClient;
      mids[i] = ((mids[i] as number) + 1) & 0xffff;
      c.send(coapPost(`gw|${performance.now()}`, mids[i]));
      await c.receive();
    });
    clearInterval(sampler);
    const after = treeUsage(gw.pid);
    const brokerCpu = brokerCpuMs(env.brokerPid) - broker0;
    rss = Math.max(rss, after.rss);
    await drain(sink.latencies, 'gw', r.sent);
    const cpu = after.cpuMs - before.cpuMs;
    const gateway = {
      processes,
      cpusAllowed: gw.affinity,
      diskFsyncMs,
      cpuMsPerMessage: round(cpu / Math.max(1, r.sent), 4),
      coresBusy: round2(cpu / (r.elapsed * 1000)),
      baselinesRestored: gw.restored,
      rssIdleMiB: round2(gw.idle.rss / MiB),
      rssWithSessionsMiB: round2(rss / MiB),
      rssBeyondIdleMiB: round2((rss - gw.idle.rss) / MiB),
      rssPeakMiB: round2(after.peak / MiB),
    };
    const summary = {
      ...summarize(sink.latencies.get('gw') ?? [], r),
      loadAverage1m,
      ...(env.brokerPid ? { brokerCpuMsPerMessage: round(brokerCpu / Math.max(1, r.sent), 4) } : {}),
    };
    return { setupSeconds: sessions.seconds, summary: { ...summary, gateway } };
  } finally {
    for (const c of sensors) c?.close();
    await gw.gateway.stop();
  }
}

/** The same number of MQTT clients, each its own mutual-TLS connection, publishing QoS 1 straight to the broker. */
async function directPhase(n: number, s: Settings, env: Env, sink: Sink) {
  const tls = {
    ca: readFileSync(env.pki.caPath),
    cert: readFileSync(env.pki.client.certPath),
    key: readFileSync(env.pki.client.keyPath),
  };
  let direct: MqttClient[] = [];
  try {
    const conns = await setUp('MQTT connections straight to the broker', n, s, async (i) => {
      const c = mqtt.connect(env.broker.url, {
        protocolVersion: 5,
        clientId: `direct-${i}`,
        ...tls,
        reconnectPeriod: 0,
      });
      direct.push(c);
      await new Promise<void>((resolve, reject) => {
        c.once('connect', () => resolve());
        c.once('error', reject);
      });
      return c;
    });
    if (!conns) return null;
    direct = conns.made;
    log(`${n} sensors: direct path`);
    const loadAverage1m = round2(loadavg()[0] as number);
    const broker0 = brokerCpuMs(env.brokerPid);
    const r = await drive(n, s.inflight, s.seconds, async (i) => {
      await (direct[i] as MqttClient).publishAsync(`direct/${i}`, `direct|${performance.now()}`, { qos: 1 });
    });
    const brokerCpu = brokerCpuMs(env.brokerPid) - broker0;
    await drain(sink.latencies, 'direct', r.sent);
    return {
      setupSeconds: conns.seconds,
      summary: {
        ...summarize(sink.latencies.get('direct') ?? [], r),
        loadAverage1m,
        ...(env.brokerPid ? { brokerCpuMsPerMessage: round(brokerCpu / Math.max(1, r.sent), 4) } : {}),
      },
    };
  } finally {
    for (const c of direct) c?.end(true);
  }
}

/** One scale: the gateway path, then the same count straight to the broker, and their ratios. */
async function scale(n: number, s: Settings, env: Env) {
  const sink = await latencySink(env.pki, env.broker.url, '#');
  try {
    const g = await gatewayPhase(n, s, env, sink);
    if (typeof g === 'string') return { sensors: n, skipped: g };
    const d = await directPhase(n, s, env, sink);
    if (!d)
      return {
        sensors: n,
        skipped: 'broker connections not made within --setup-seconds',
        throughViaGateway: g.summary,
      };
    return {
      sensors: n,
      setupSeconds: { dtlsSessions: g.setupSeconds, brokerConnections: d.setupSeconds },
      throughViaGateway: g.summary,
      straightToBroker: d.summary,
      ratio: {
        throughput: round2(g.summary.messagesPerSecond / d.summary.messagesPerSecond),
        p50Latency: round2(g.summary.latencyMs.p50 / d.summary.latencyMs.p50),
        p99Latency: round2(g.summary.latencyMs.p99 / d.summary.latencyMs.p99),
        // Robust on a busy machine where rates are not: server-side CPU per message, the gateway and the broker it
        // publishes to against the broker alone (the clients' TLS and DTLS are in neither).
        ...(g.summary.brokerCpuMsPerMessage !== undefined && d.summary.brokerCpuMsPerMessage
          ? {
              serverCpuPerMessage: round2(
                (g.summary.gateway.cpuMsPerMessage + g.summary.brokerCpuMsPerMessage) /
                  d.summary.brokerCpuMsPerMessage,
              ),
            }
          : {}),
      },
    };
  } finally {
    sink.client.end(true);
  }
}

/** Devices s0…s(n-1), through the service layer (as `device add` would), before the gateway first starts. */
function provision(home: GatewayHome, n: number): void {
  log(`provisioning ${n} PSK sensors`);
  const core = Core.open(resolveConfig(home.config).config, systemClock);
  try {
    for (let i = 0; i < n; i++) {
      core.identity.addPskDevice(
        { id: `s${i}`, pskIdentity: `s${i}`, pskHex: keyOf(i).toString('hex') },
        'bench',
      );
    }
  } finally {
    core.close();
  }
}

export async function e2eBench(argv: string[]): Promise<unknown> {
  const settings = parseE2eOptions(argv);
  const most = Math.max(...settings.sensors);
  const pki = makePki();
  const broker = await startBroker({ caPath: pki.caPath, server: pki.broker });
  // Every simulated sensor shares 127.0.0.1: lift the per-source limits a site's sensors (one address each) would
  // not hit, and the session table above the largest scale.
  const home = await makeGatewayHome(pki, broker, 'gw-bench', {
    dtlsLimits:
      `{maxSessions: ${most + 1000}, handshakesPerSecondPerSource: 100000, maxHandshakesPerSource: 1000, ` +
      `maxHandshakesPerPrefix: 1000, maxSessionsPerSource: ${most + 1000}}`,
    // Started as the appliance's unit starts it: its node flags (the heap's limits) shape throughput too.
    unit: gatewayUnitStart(),
    extraConfig: [`store: {synchronous: ${settings.synchronous}}`],
  });
  try {
    provision(home, most);
    const scales = [];
    const env = { pki, broker, home, brokerPid: brokerPid(broker.port), seen: 0 };
    for (const n of settings.sensors) scales.push(await scale(n, settings, env));
    return {
      bench: 'e2e',
      settings: {
        ...settings,
        machineCores: cpus().length,
        gatewayPinnedTo: settings.cores ? `0-${settings.cores - 1}` : null,
      },
      scales,
    };
  } finally {
    await broker.dispose();
    home.dispose();
    pki.dispose();
  }
}
