/**
 * `npm run bench -- session-memory`: where a gateway's resident memory goes with many DTLS sessions and traffic
 * (issue 23) — the e2e bench's gateway phase alone (no broker-direct phase), each scale on a freshly started
 * gateway started as its unit starts it: idle base 2 s after start (as e2e reads it), then every session up,
 * then traffic (64 in flight), resident memory of the process tree sampled every 250 ms, and the gateway's CPU
 * per message. `--heap-snapshots` has V8 write a snapshot at idle, another with every session up and a third after the traffic
 * (`--heapsnapshot-signal`; the home is kept and its path reported: diff them in Chrome's DevTools or by script).
 * `--node-flag F` (repeatable) adds a node flag to the unit's, for an A/B of V8's heap settings. Scales run one
 * after another on the same home, so a later scale's gateway restores the behaviour baselines the one before saved
 * at its stop, as a restarted appliance does: `--sensors 10000,10000` gives a first day's figure (every baseline
 * born during the traffic) and then an everyday one (baselines in the idle base).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { systemClock } from '../gateway/src/clock.ts';
import { resolveConfig } from '../gateway/src/config/index.ts';
import { Core } from '../gateway/src/core.ts';
import { coapPost } from '../test/helpers/coaps-fixture.ts';
import type { TestDtlsClient } from '../test/helpers/dtls-test-client.ts';
import { type GatewayHome, makeGatewayHome } from '../test/helpers/gateway.ts';
import { gatewayUnitStart } from '../test/helpers/gateway-unit.ts';
import { startBroker } from '../test/helpers/mosquitto.ts';
import { makePki } from '../test/helpers/pki.ts';
import { round, runFor, sliceWalker } from './lib/load.ts';
import { cpuMs, memory, processTree } from './lib/proc.ts';
import { openPskSessions } from './lib/sessions.ts';

const MiB = 1024 * 1024;
const USAGE =
  'usage: npm run bench -- session-memory [--sensors N[,N…]] [--seconds N] [--heap-snapshots] [--node-flag F]…';
const log = (m: string) => process.stderr.write(`[bench session-memory] ${m}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const keyOf = (i: number) => Buffer.from(`bench-sensor-key-${String(i).padStart(6, '0')}`);

interface Settings {
  sensors: number[];
  seconds: number;
  snapshots: boolean;
  nodeFlags: string[];
}

function parse(argv: string[]): Settings {
  const s: Settings = { sensors: [1000, 10_000], seconds: 10, snapshots: false, nodeFlags: [] };
  const positive = (v: string | undefined) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n <= 0) throw new Error(USAGE);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const key = argv[i];
    if (key === '--heap-snapshots') s.snapshots = true;
    else if (key === '--sensors') s.sensors = (argv[++i] ?? '').split(',').map(positive);
    else if (key === '--seconds') s.seconds = positive(argv[++i]);
    else if (key === '--node-flag' && argv[i + 1]?.startsWith('--')) s.nodeFlags.push(argv[++i] as string);
    else throw new Error(USAGE);
  }
  return s;
}

const sum = (pid: number, f: (p: number) => number) =>
  processTree(pid).reduce((a, p) => {
    try {
      return a + f(p);
    } catch {
      return a; // exited meanwhile
    }
  }, 0);
const rss = (pid: number) => sum(pid, (p) => memory(p).rss);
const cpu = (pid: number) => sum(pid, cpuMs);

/** Anonymous (heap, stacks) against file-backed (the node binary, libraries) resident memory, MiB. */
function anonymous(pid: number): { anonMiB: number; fileMiB: number } {
  const t = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  const kb = (n: string) => Number(new RegExp(`^${n}:\\s+(\\d+)`, 'm').exec(t)?.[1] ?? 0) / 1024;
  return { anonMiB: round(kb('Anonymous'), 1), fileMiB: round(kb('Rss') - kb('Anonymous'), 1) };
}

/** Signals V8 to write a heap snapshot and waits until the file is complete; returns its path. */
async function snapshot(pid: number, dir: string): Promise<string | null> {
  const known = new Set(readdirSync(dir));
  process.kill(pid, 'SIGUSR2');
  for (let i = 0; i < 600; i++) {
    await sleep(500);
    const made = readdirSync(dir).find((f) => f.endsWith('.heapsnapshot') && !known.has(f));
    if (made) {
      await sleep(3000); // written in one go; this is its tail
      return `${dir}/${made}`;
    }
  }
  return null;
}

async function scale(n: number, s: Settings, home: GatewayHome) {
  const gw = await home.start();
  const pid = gw.child.pid as number;
  let sensors: TestDtlsClient[] = [];
  try {
    await sleep(2000);
    const idle = rss(pid);
    const snapshots: string[] = [];
    if (s.snapshots) snapshots.push((await snapshot(pid, home.dir)) ?? 'not written');
    sensors = await openPskSessions(home.dtlsPort, n, 32, keyOf);
    await sleep(2000);
    const withSessions = rss(pid);
    const sessionsSplit = anonymous(pid);
    if (s.snapshots) snapshots.push((await snapshot(pid, home.dir)) ?? 'not written');
    // A snapshot grows the heap for a while: the traffic's figure starts from what is resident now.
    const base = s.snapshots ? rss(pid) : withSessions;
    const mids = new Array<number>(n).fill(0);
    let peak = 0;
    const sampler = setInterval(() => {
      peak = Math.max(peak, rss(pid));
    }, 250);
    const cpu0 = cpu(pid);
    const workers = Math.min(64, n);
    const next = sliceWalker(n, workers);
    const r = await runFor(s.seconds, workers, async (w) => {
      const i = next(w);
      const c = sensors[i] as TestDtlsClient;
      mids[i] = ((mids[i] as number) + 1) & 0xffff;
      c.send(coapPost(`gw|${performance.now()}`, mids[i]));
      await c.receive();
    });
    clearInterval(sampler);
    const cpuUsed = cpu(pid) - cpu0;
    peak = Math.max(peak, rss(pid));
    const trafficSplit = anonymous(pid);
    if (s.snapshots) snapshots.push((await snapshot(pid, home.dir)) ?? 'not written');
    return {
      sensors: n,
      idleMiB: round(idle / MiB, 1),
      withSessionsMiB: round(withSessions / MiB, 1),
      // With snapshots, the idle one's growth is in every figure after it: no per-session or beyond-idle figure.
      perSessionKiB: s.snapshots ? null : round((withSessions - idle) / n / 1024, 2),
      withTrafficPeakMiB: round(peak / MiB, 1),
      beyondIdleMiB: s.snapshots ? null : round((peak - idle) / MiB, 1),
      trafficOnlyMiB: round((peak - base) / MiB, 1),
      withSessions: sessionsSplit,
      withTraffic: trafficSplit,
      messages: r.ops,
      errors: r.errors,
      messagesPerSecond: Math.round(r.ops / r.seconds),
      cpuMsPerMessage: round(cpuUsed / Math.max(1, r.ops), 4),
      ...(s.snapshots ? { heapSnapshots: snapshots } : {}),
    };
  } finally {
    for (const c of sensors) c.close();
    await gw.stop();
  }
}

export async function sessionMemoryBench(argv: string[]): Promise<unknown> {
  const s = parse(argv);
  const most = Math.max(...s.sensors);
  const pki = makePki();
  const broker = await startBroker({ caPath: pki.caPath, server: pki.broker });
  const unit = gatewayUnitStart();
  unit.nodeArgs.push(...s.nodeFlags, ...(s.snapshots ? ['--heapsnapshot-signal=SIGUSR2'] : []));
  const home = await makeGatewayHome(pki, broker, 'gw-session-memory', {
    dtlsLimits:
      `{maxSessions: ${most + 1000}, handshakesPerSecondPerSource: 100000, maxHandshakesPerSource: 1000, ` +
      `maxHandshakesPerPrefix: 1000, maxSessionsPerSource: ${most + 1000}}`,
    unit,
    extraConfig: ['store: {synchronous: full}'],
  });
  try {
    log(`provisioning ${most} PSK sensors`);
    const core = Core.open(resolveConfig(home.config).config, systemClock);
    try {
      for (let i = 0; i < most; i++) {
        const id = `s${i}`;
        core.identity.addPskDevice({ id, pskIdentity: id, pskHex: keyOf(i).toString('hex') }, 'bench');
      }
    } finally {
      core.close();
    }
    const scales = [];
    for (const n of s.sensors) {
      log(`${n} sensors`);
      scales.push(await scale(n, s, home));
    }
    return { bench: 'session-memory', settings: { ...s, unit: unit.nodeArgs, env: unit.env }, scales };
  } finally {
    await broker.dispose();
    if (s.snapshots) log(`home with the heap snapshots kept: ${home.dir}`);
    else home.dispose();
    pki.dispose();
  }
}
