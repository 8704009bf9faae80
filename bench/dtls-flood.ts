/**
 * `npm run bench -- dtls-flood`: how a legitimate PSK sensor fares while a host floods the DTLS server with
 * cookie-verified ClientHellos it never continues (issue 19), for Portcullis (its DTLS server with the
 * gateway's default `dtls.limits`, in its own process: bench/dtls-server.ts) and for libcoap's
 * `coap-server-openssl`, under the same flood in the same run.
 *
 * For each server and each flood — none, 1 source, 30 sources (one per /24), 256 sources of one /24 — a fresh
 * server, then the flood (test/helpers/dtls-flooder.mjs, its own process) at the per-source rate limit (20
 * cookie-verified hellos per second from each source, each from a new port, never continued); after a second,
 * the sensor (the test suite's crafted client with the PSK, from 127.0.0.1) handshakes again and again until
 * the flood ends, then a few times more "right after". A sensor's handshake counts as a success if it completes
 * within 15 s; like a real client it sends its hello again (from a new port here) when a second passes without
 * an answer. Reported: success rate and p50/p99 handshake time (ms) during and right after, and what the flood
 * achieved (its rate is the flooder's, which shares this 2-core machine).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseConfig } from '../gateway/src/config/load.ts';
import { loopbackSources, startFlood } from '../test/helpers/dtls-flood.ts';
import { TestDtlsClient } from '../test/helpers/dtls-test-client.ts';
import { makePki, type TestPki } from '../test/helpers/pki.ts';
import { BENCH_PSK, clientOptions } from './lib/dtls-handshakes.ts';
import { parseOptions, round } from './lib/load.ts';
import { cpuMs, memory } from './lib/proc.ts';

type Target = 'portcullis' | 'libcoap';

interface Server {
  target: Target;
  child: ChildProcess;
  port: number;
}

const SUCCESS_WITHIN_MS = 15_000;
/** A sensor that hears nothing for this long sends its hello again (RFC 6347's initial timer). */
const RETRY_MS = 1000;

const log = (m: string) => process.stderr.write(`[dtls-flood] ${m}\n`);

/** The gateway's default DTLS limits, as the sensor listener passes them to the server. */
function gatewayLimits(): Record<string, number> {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-bench-'));
  try {
    const l = parseConfig({ dataDir: join(dir, 'var') }, dir).dtls.limits;
    return {
      maxSessions: l.maxSessions,
      maxHandshakes: l.maxHandshakes,
      handshakesPerSecondPerSource: l.handshakesPerSecondPerSource,
      idleTimeoutMs: l.idleTimeoutSeconds * 1000,
      maxHandshakesPerSource: l.maxHandshakesPerSource,
      maxHandshakesPerPrefix: l.maxHandshakesPerPrefix,
      handshakeTimeoutMs: l.handshakeTimeoutSeconds * 1000,
      maxSessionsPerIdentity: l.maxSessionsPerIdentity,
      maxSessionsPerSource: l.maxSessionsPerSource,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function freePortPair(): Promise<number> {
  for (;;) {
    const base = 20_000 + Math.floor(Math.random() * 40_000);
    const sockets = [createSocket('udp4'), createSocket('udp4')];
    try {
      await Promise.all(
        sockets.map(async (s, i) => {
          s.bind(base + i, '127.0.0.1');
          await once(s, 'listening');
        }),
      );
      return base;
    } catch {
      // taken; try another
    } finally {
      for (const s of sockets) s.close();
    }
  }
}

async function startPortcullis(pki: TestPki, limits: Record<string, number>): Promise<Server> {
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      new URL('./dtls-server.ts', import.meta.url).pathname,
      JSON.stringify({
        psk: BENCH_PSK,
        certPath: pki.server.certPath,
        keyPath: pki.server.keyPath,
        caPath: pki.caPath,
        limits,
      }),
    ],
    { stdio: ['pipe', 'pipe', 'inherit'] },
  );
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  const [line] = (await once(lines, 'line')) as [string];
  return { target: 'portcullis', child, port: (JSON.parse(line) as { port: number }).port };
}

async function startLibcoap(): Promise<Server> {
  const base = await freePortPair();
  const child = spawn(
    'coap-server-openssl',
    ['-A', '127.0.0.1', '-p', String(base), '-k', BENCH_PSK, '-h', ''],
    { stdio: ['ignore', 'ignore', 'ignore'] },
  );
  // libcoap serves DTLS on the port after the plain one.
  const server: Server = { target: 'libcoap', child, port: base + 1 };
  const deadline = Date.now() + 10_000;
  for (;;) {
    if ((await sensorHandshake(server.port, 2000)) !== null) return server;
    if (Date.now() > deadline) throw new Error('coap-server-openssl did not come up');
  }
}

async function stop(server: Server): Promise<void> {
  const { child } = server;
  if (child.exitCode !== null) return;
  const exited = once(child, 'exit');
  child.stdin?.end();
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

/**
 * One sensor handshake: milliseconds until the server's Finished, or null if it did not come within `budgetMs`.
 * Each attempt that hears nothing for a second is given up and the hello sent again.
 */
async function sensorHandshake(port: number, budgetMs = SUCCESS_WITHIN_MS): Promise<number | null> {
  const t0 = performance.now();
  while (performance.now() - t0 < budgetMs) {
    const c = new TestDtlsClient({
      ...clientOptions(port, 'psk', null),
      timeoutMs: Math.min(RETRY_MS, Math.max(1, budgetMs - (performance.now() - t0))),
    });
    try {
      await c.connect();
      const ms = performance.now() - t0;
      await c.closeNotify();
      return ms;
    } catch {
      // No answer (refused, dropped) or an alert: try again, as a sensor would.
    } finally {
      c.close();
    }
  }
  return null;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] as number;
}

function summary(times: Array<number | null>) {
  const ok = times.filter((t): t is number => t !== null).sort((a, b) => a - b);
  return {
    attempts: times.length,
    succeeded: ok.length,
    successRate: round(times.length ? ok.length / times.length : Number.NaN, 3),
    p50Ms: round(percentile(ok, 50), 1),
    p99Ms: round(percentile(ok, 99), 1),
    maxMs: round(ok.at(-1) ?? Number.NaN, 1),
  };
}

interface Scenario {
  name: string;
  sources: string[];
}

async function runScenario(server: Server, s: Scenario, seconds: number, rate: number, after: number) {
  const cpu0 = cpuMs(server.child.pid as number);
  const during: Array<number | null> = [];
  let flood: Awaited<ReturnType<typeof startFlood>> | null = null;
  const t0 = performance.now();
  if (s.sources.length > 0) {
    flood = await startFlood({
      port: server.port,
      sources: s.sources,
      ratePerSource: rate,
      maxPerSource: Math.ceil(rate * seconds),
      holdMs: 1000,
    });
    // Let the flood reach the servers' limits before the sensor starts.
    await new Promise((r) => setTimeout(r, 1000));
  }
  const end = t0 + seconds * 1000;
  while (performance.now() < end) {
    during.push(await sensorHandshake(server.port));
    // A sensor every 100 ms: frequent enough for a p99, rare enough not to be a load of its own.
    await new Promise((r) => setTimeout(r, 100));
  }
  const floodSeconds = (performance.now() - t0) / 1000;
  const floodTotals = flood ? await flood.stop() : null;
  const right: Array<number | null> = [];
  for (let i = 0; i < after; i++) right.push(await sensorHandshake(server.port));
  const pid = server.child.pid as number;
  return {
    flood: floodTotals && {
      sources: s.sources.length,
      cookieVerifiedHellos: floodTotals.cookies,
      perSecond: round(floodTotals.cookies / floodSeconds, 0),
      gotServerFlight: floodTotals.started,
    },
    during: summary(during),
    rightAfter: summary(right),
    serverCpuMs: round(cpuMs(pid) - cpu0, 0),
    serverRssMb: round(memory(pid).rss / 2 ** 20, 1),
  };
}

export async function dtlsFloodBench(argv: string[]): Promise<unknown> {
  const settings = parseOptions('dtls-flood', argv, { seconds: 8, rate: 20, after: 5 });
  const pki = makePki();
  const limits = gatewayLimits();
  const scenarios: Scenario[] = [
    { name: 'none', sources: [] },
    { name: '1 source', sources: loopbackSources(1, 9, 'one-per-prefix') },
    { name: '30 sources (30 /24s)', sources: loopbackSources(30, 10, 'one-per-prefix') },
    { name: '256 sources (one /24)', sources: loopbackSources(256, 20, 'one-prefix') },
  ];
  const results: Record<string, Record<Target, unknown>> = {};
  for (const s of scenarios) {
    results[s.name] = {} as Record<Target, unknown>;
    for (const target of ['portcullis', 'libcoap'] as const) {
      log(`${target}: flood from ${s.name}`);
      const server = target === 'portcullis' ? await startPortcullis(pki, limits) : await startLibcoap();
      try {
        (results[s.name] as Record<Target, unknown>)[target] = await runScenario(
          server,
          s,
          settings.seconds,
          settings.rate,
          settings.after,
        );
      } finally {
        await stop(server);
      }
    }
  }
  return {
    bench: 'dtls-flood',
    settings: { ...settings, successWithinMs: SUCCESS_WITHIN_MS, sensorRetryMs: RETRY_MS },
    portcullisLimits: limits,
    results,
  };
}
