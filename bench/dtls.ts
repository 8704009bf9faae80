/**
 * `npm run bench -- dtls`: Portcullis's DTLS/CoAP server against libcoap's `coap-server-openssl`, in one run,
 * with one load generator (the crafted DTLS client of the test suite, in this process) against each server
 * (each in its own process).
 *
 * Phases, alternated between the two servers `rounds` times so that machine noise hits both alike:
 *   psk        full PSK handshakes (TLS_PSK_WITH_AES_128_CCM_8), each ended with close_notify
 *   ecdhe      full ECDHE-ECDSA handshakes with client certificates (TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8)
 *   resumed    abbreviated PSK handshakes resuming a session by session ID (native generator only)
 *   requests   confirmable CoAP requests spread over `sessions` established PSK sessions, `inflight` at a
 *              time (more would overflow the servers' socket buffers and measure the loss, not the server)
 * then the resident memory of `sessions` idle sessions beyond each server's base, on a freshly started server.
 *
 * The handshake phases run on a native load generator (bench/native/dtls-handshake-load.c, OpenSSL's DTLS client
 * API, `threads` threads; built with cc at the start) unless `--generator 2` asks for the JavaScript one: a
 * JavaScript generator took a whole core of a two-core machine and bounded both servers (issue 3).
 * Throughput (ops/s) depends on the load generator too, which shares the machine; so the report also gives
 * each server's own CPU time per operation (from /proc), which does not, and the generator's CPU share.
 * Ratios are medians of per-round ratios (see row()).
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Worker } from 'node:worker_threads';
import { generate } from 'coap-packet';
import { TestDtlsClient } from '../test/helpers/dtls-test-client.ts';
import { makePki, type TestPki } from '../test/helpers/pki.ts';
import {
  BENCH_PSK,
  type ClientCertificate,
  clientOptions,
  type HandshakeKind,
  handshake,
} from './lib/dtls-handshakes.ts';
import type { LoadRequest, LoadWorkerData } from './lib/dtls-load-worker.ts';
import { inParallel, type LoadResult, median, parseOptions, round, runFor, sliceWalker } from './lib/load.ts';
import { cpuMs, memory } from './lib/proc.ts';

interface Settings {
  seconds: number;
  rounds: number;
  sessions: number;
  concurrency: number;
  inflight: number;
  /** Threads generating the handshake phases' load (this one and N − 1 workers), for the JavaScript generator. */
  generators: number;
  /** 1: the native generator for the handshake phases (the default); 2: the JavaScript one. */
  generator: number;
  /** The native generator's threads (each one handshake at a time). */
  threads: number;
}

type Target = 'portcullis' | 'libcoap';
type Phase = 'psk' | 'ecdhe' | 'resumed' | 'requests';
type NativeMode = 'psk' | 'ecdhe' | 'psk-resume';

interface Server {
  target: Target;
  child: ChildProcess;
  port: number;
  /** What a request in the `requests` phase asks for: each server's cheapest "store this reading". */
  request: { code: string; path: string };
  /** Settles the heap before a memory reading (a no-op for libcoap, which has none). */
  settle(): Promise<void>;
  /** Portcullis: which DTLS crypto its server runs (the native addon, or why not). */
  crypto?: { implementation: string; fallbackReason?: string };
}

interface MemoryReading {
  baseMb: number;
  withSessionsMb: number;
  perThousandMb: number;
  peakMb: number;
}

interface Measurement extends LoadResult {
  serverCpuMs: number;
  generatorCpuMs: number;
}

/** Builds bench/native/dtls-handshake-load.c into a temporary directory; returns the binary's path. */
function buildNativeGenerator(): { path: string; dispose(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-bench-dtls-'));
  const path = join(dir, 'dtls-handshake-load');
  const source = new URL('./native/dtls-handshake-load.c', import.meta.url).pathname;
  execFileSync('cc', ['-O2', '-o', path, source, '-lssl', '-lcrypto', '-lpthread']);
  return { path, dispose: () => rmSync(dir, { recursive: true, force: true }) };
}

/** One run of the native generator; its own CPU time comes back with the counts. */
async function nativeLoad(
  binary: string,
  server: Server,
  mode: NativeMode,
  seconds: number,
  threads: number,
  pki: TestPki,
): Promise<LoadResult & { generatorCpuMs: number; resumed: number }> {
  const credentials =
    mode === 'ecdhe' ? ['cert', pki.client.certPath, pki.client.keyPath] : ['psk', 'bench', BENCH_PSK];
  const child = spawn(
    binary,
    ['127.0.0.1', String(server.port), mode, String(seconds), String(threads), ...credentials],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let out = '';
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString();
  });
  const [code] = (await once(child, 'close')) as [number];
  if (code !== 0) throw new Error(`the native load generator exited with ${code}`);
  const r = JSON.parse(out) as {
    ops: number;
    errors: number;
    resumed: number;
    seconds: number;
    cpuMs: number;
  };
  return { ops: r.ops, errors: r.errors, seconds: r.seconds, resumed: r.resumed, generatorCpuMs: r.cpuMs };
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

/** Asks politely (stdin closed, then SIGTERM), then insists: a profile or a clean exit needs the moment. */
async function stop(server: Server): Promise<void> {
  const { child } = server;
  if (child.exitCode !== null) return;
  const exited = once(child, 'exit');
  child.stdin?.end();
  if (server.target === 'libcoap') child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

function drain(child: ChildProcess): void {
  child.stdout?.resume();
  child.stderr?.resume();
}

async function startPortcullis(pki: TestPki): Promise<Server> {
  const child = spawn(
    process.execPath,
    [
      '--expose-gc',
      ...(process.env.BENCH_SERVER_NODE_ARGS?.split(' ').filter(Boolean) ?? []),
      '--import',
      'tsx',
      new URL('./dtls-server.ts', import.meta.url).pathname,
      JSON.stringify({
        psk: BENCH_PSK,
        certPath: pki.server.certPath,
        keyPath: pki.server.keyPath,
        caPath: pki.caPath,
        // As the gateway runs it: the resumed phase needs it, and the idle sessions' memory includes it.
        resumption: true,
      }),
    ],
    { stdio: ['pipe', 'pipe', 'inherit'] },
  );
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  const waiting: Array<(line: string) => void> = [];
  lines.on('line', (line) => waiting.shift()?.(line));
  const next = () => new Promise<string>((resolve) => waiting.push(resolve));
  const { port, crypto } = JSON.parse(await next()) as { port: number; crypto: Server['crypto'] };
  return {
    target: 'portcullis',
    child,
    port,
    crypto,
    request: { code: 'POST', path: 'telemetry' },
    settle: async () => {
      const done = next();
      child.stdin?.write('gc\n');
      await done;
    },
  };
}

async function startLibcoap(pki: TestPki): Promise<Server> {
  const base = await freePortPair();
  const child = spawn(
    'coap-server-openssl',
    [
      '-A',
      '127.0.0.1',
      '-p',
      String(base),
      '-k',
      BENCH_PSK,
      '-h',
      '',
      '-c',
      pki.server.certPath,
      '-j',
      pki.server.keyPath,
      '-C',
      pki.caPath,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  drain(child);
  const server: Server = {
    target: 'libcoap',
    child,
    port: base + 1, // libcoap serves DTLS on the port after the plain one
    request: { code: 'PUT', path: 'example_data' },
    settle: async () => {},
  };
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      await handshake(server.port, 'psk', null);
      return server;
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`coap-server-openssl did not come up: ${String(err)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/**
 * Threads that run the handshake phases' load beside the bench's own thread (`--generators N`, N − 1 of them):
 * one generator thread is the bottleneck on a small machine, and more offer more load.
 */
class GeneratorThreads {
  private readonly workers: Worker[];

  constructor(
    count: number,
    private readonly certificate: ClientCertificate,
  ) {
    const data: LoadWorkerData = {
      certificate: {
        der: certificate.der,
        keyPem: certificate.key.export({ format: 'pem', type: 'pkcs8' }).toString(),
      },
    };
    const bootstrap = new URL('./lib/ts-worker.mjs', import.meta.url);
    const entry = new URL('./lib/dtls-load-worker.ts', import.meta.url).href;
    this.workers = Array.from(
      { length: count },
      () => new Worker(bootstrap, { workerData: { ...data, entry } }),
    );
  }

  /** `concurrency` handshakes in flight in all, shared between this thread and the workers. */
  async run(port: number, kind: HandshakeKind, seconds: number, concurrency: number): Promise<LoadResult> {
    const share = Math.max(1, Math.round(concurrency / (this.workers.length + 1)));
    const results = await Promise.all([
      runFor(seconds, share, () => handshake(port, kind, this.certificate)),
      ...this.workers.map(async (w) => {
        const answer = once(w, 'message');
        const req: LoadRequest = { port, kind, seconds, concurrency: share };
        w.postMessage(req);
        return (await answer)[0] as LoadResult;
      }),
    ]);
    return {
      ops: results.reduce((a, r) => a + r.ops, 0),
      errors: results.reduce((a, r) => a + r.errors, 0),
      seconds: Math.max(...results.map((r) => r.seconds)),
    };
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}

/** Runs the load and adds the CPU both sides used (the generator's: every thread of this process). */
async function measure(
  server: Server,
  load: () => Promise<LoadResult & { generatorCpuMs?: number }>,
): Promise<Measurement> {
  const pid = server.child.pid as number;
  const cpu0 = cpuMs(pid);
  const gen0 = process.cpuUsage();
  const r = await load();
  const gen = process.cpuUsage(gen0);
  // A native generator reports its own CPU; this process only waited for it.
  const generatorCpuMs = r.generatorCpuMs ?? (gen.user + gen.system) / 1000;
  return { ...r, serverCpuMs: cpuMs(pid) - cpu0, generatorCpuMs };
}

interface OpenSessions {
  clients: TestDtlsClient[];
  /** The last CoAP message ID used on each session. */
  ids: number[];
  next: (worker: number) => number;
}

/** One confirmable CoAP request on the next session of load worker `w`'s slice, and its answer. */
async function request(s: Server, sessions: OpenSessions, w: number): Promise<void> {
  const { clients, ids, next } = sessions;
  const at = next(w);
  const c = clients[at] as TestDtlsClient;
  const id = ((ids[at] as number) + 1) & 0xffff;
  ids[at] = id;
  c.send(
    generate({
      code: s.request.code,
      messageId: id,
      token: Buffer.from([at & 0xff, at >> 8]),
      confirmable: true,
      options: [{ name: 'Uri-Path', value: Buffer.from(s.request.path) }],
      payload: Buffer.from('{"t":21.5,"rh":40}'),
    }),
  );
  await c.receive();
}

function openSessions(server: Server, n: number, concurrency: number): Promise<TestDtlsClient[]> {
  return inParallel(n, concurrency, async () => {
    const c = new TestDtlsClient(clientOptions(server.port, 'psk', null));
    await c.connect();
    return c;
  });
}

/**
 * Resident memory of `sessions` idle sessions beyond the server's base, on a server started for this alone:
 * after the load phases a heap holds free space it has not returned yet, which new sessions would fill
 * unseen. A second of handshakes first (each closed), so the base is a process that has been serving them —
 * its code compiled, its young generation grown to what that rate of handshakes needs — and the difference
 * is what the open sessions hold.
 */
async function idleSessionMemory(
  s: Server,
  settings: Settings,
  log: (msg: string) => void,
): Promise<MemoryReading> {
  const pid = s.child.pid as number;
  await runFor(1, settings.concurrency, () => handshake(s.port, 'psk', null));
  await s.settle();
  const base = memory(pid).rss;
  log(`${s.target}: ${settings.sessions} idle sessions on a fresh server`);
  const clients = await openSessions(s, settings.sessions, settings.concurrency);
  await s.settle();
  const m = memory(pid);
  await Promise.all(clients.map((c) => c.closeNotify()));
  const mb = (b: number) => round2(b / 2 ** 20);
  return {
    baseMb: mb(base),
    withSessionsMb: mb(m.rss),
    perThousandMb: mb(((m.rss - base) * 1000) / settings.sessions),
    peakMb: mb(m.peak),
  };
}

const round2 = (x: number) => round(x, 2);
const round3 = (x: number) => round(x, 3);

function summarize(ms: Measurement[]) {
  return {
    opsPerSecond: round2(median(ms.map((m) => m.ops / m.seconds))),
    serverCpuMsPerOp: round3(median(ms.map((m) => m.serverCpuMs / Math.max(1, m.ops)))),
    generatorCpuShare: round2(median(ms.map((m) => m.generatorCpuMs / 1000 / m.seconds))),
    errors: ms.reduce((a, m) => a + m.errors, 0),
    rounds: ms.map((m) => round2(m.ops / m.seconds)),
  };
}

function versionOf(cmd: string, args: string[]): string {
  try {
    return (
      execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] })
        .toString()
        .split('\n')[0]
        ?.trim() ?? ''
    );
  } catch (err) {
    // coap-server prints its version with its usage on a bad option and exits non-zero.
    const out = `${(err as { stdout?: Buffer }).stdout ?? ''}${(err as { stderr?: Buffer }).stderr ?? ''}`;
    return /v\d+\.\d+\.\d+/.exec(out)?.[0] ?? 'unknown';
  }
}

export async function dtlsBench(argv: string[]): Promise<unknown> {
  const settings: Settings = parseOptions('dtls', argv, {
    seconds: 3,
    rounds: 5,
    sessions: 1000,
    concurrency: 16,
    inflight: 64,
    generators: 1,
    generator: 1,
    threads: 8,
  });
  const native = settings.generator === 1 ? buildNativeGenerator() : null;
  const pki = makePki();
  const log = (msg: string) => process.stderr.write(`[bench dtls] ${msg}\n`);
  const servers: Server[] = [];
  const results: Record<Target, Record<Phase, Measurement[]>> = {
    portcullis: { psk: [], ecdhe: [], resumed: [], requests: [] },
    libcoap: { psk: [], ecdhe: [], resumed: [], requests: [] },
  };
  const memoryResult = {} as Record<Target, MemoryReading>;
  const certificate: ClientCertificate = { der: pki.client.der, key: pki.client.key };
  const generators = new GeneratorThreads(Math.floor(settings.generators) - 1, certificate);
  try {
    servers.push(await startPortcullis(pki));
    servers.push(await startLibcoap(pki));
    const kinds = native ? (['psk', 'ecdhe', 'resumed'] as const) : (['psk', 'ecdhe'] as const);
    const modes: Record<(typeof kinds)[number], NativeMode> = {
      psk: 'psk',
      ecdhe: 'ecdhe',
      resumed: 'psk-resume',
    };
    const handshakes = (s: Server, kind: (typeof kinds)[number], seconds: number) =>
      native
        ? nativeLoad(native.path, s, modes[kind], seconds, settings.threads, pki)
        : generators.run(s.port, kind as HandshakeKind, seconds, settings.concurrency);
    // Warm-up: JIT for Portcullis, caches for both; not measured.
    for (const s of servers) {
      for (const kind of kinds) await measure(s, () => handshakes(s, kind, 1));
    }
    for (let round = 0; round < settings.rounds; round++) {
      for (const s of round % 2 ? [...servers].reverse() : servers) {
        log(`round ${round + 1}/${settings.rounds}: ${s.target} handshakes`);
        for (const kind of kinds) {
          results[s.target][kind].push(await measure(s, () => handshakes(s, kind, settings.seconds)));
        }
      }
    }

    // Requests: sessions open on both servers at once, so their rounds alternate like the handshakes'.
    const open = new Map<Target, OpenSessions>();
    for (const s of servers) {
      log(`${s.target}: opening ${settings.sessions} sessions`);
      const clients = await openSessions(s, settings.sessions, settings.concurrency);
      const inflight = Math.min(settings.inflight, clients.length);
      open.set(s.target, {
        clients,
        ids: clients.map(() => Math.floor(Math.random() * 0x10000)),
        next: sliceWalker(clients.length, inflight),
      });
    }
    for (let round = 0; round < settings.rounds; round++) {
      for (const s of round % 2 ? [...servers].reverse() : servers) {
        const sessions = open.get(s.target) as OpenSessions;
        const { length } = sessions.clients;
        log(`round ${round + 1}/${settings.rounds}: ${s.target} requests over ${length} sessions`);
        results[s.target].requests.push(
          await measure(s, () =>
            runFor(settings.seconds, Math.min(settings.inflight, length), (w) => request(s, sessions, w)),
          ),
        );
      }
    }
    for (const { clients } of open.values()) await Promise.all(clients.map((c) => c.closeNotify()));
  } catch (err) {
    pki.dispose();
    throw err;
  } finally {
    await generators.close();
    await Promise.all(servers.map(stop));
    native?.dispose();
  }
  try {
    for (const start of [startPortcullis, startLibcoap]) {
      const s = await start(pki);
      try {
        memoryResult[s.target] = await idleSessionMemory(s, settings, log);
      } finally {
        await stop(s);
      }
    }
  } finally {
    pki.dispose();
  }

  // Ratios are medians of each round's ratio: the two servers' measurements in a round are seconds apart, so
  // the machine's drift over the run (which moves both) cancels; a ratio of medians would keep it.
  const row = (phase: Phase) => {
    const p = results.portcullis[phase];
    const l = results.libcoap[phase];
    const paired = (f: (m: Measurement) => number) =>
      round2(median(p.map((m, i) => f(m) / f(l[i] as Measurement))));
    return {
      portcullis: summarize(p),
      libcoap: summarize(l),
      ratio: {
        throughput: paired((m) => m.ops / m.seconds),
        serverCpuPerOp: paired((m) => m.serverCpuMs / Math.max(1, m.ops)),
      },
    };
  };
  const psk = row('psk');
  const ecdhe = row('ecdhe');
  const resumed = native ? row('resumed') : null;
  const requests = row('requests');
  const perThousand = memoryResult.portcullis.perThousandMb;
  return {
    bench: 'dtls',
    machine: {
      cpus: cpus().length,
      node: process.version,
      openssl: versionOf('openssl', ['version']),
      libcoap: versionOf('coap-server-openssl', ['-?']),
      portcullisDtlsCrypto: servers[0]?.crypto,
      handshakeGenerator: native ? `native (OpenSSL client API, ${settings.threads} threads)` : 'JavaScript',
    },
    settings,
    pskHandshakes: psk,
    ecdheEcdsaHandshakes: ecdhe,
    ...(resumed
      ? {
          resumedPskHandshakes: resumed,
          // Issue 22's target: resumption worth it on Portcullis itself, in the same run.
          resumedOverFullPsk: {
            portcullis: round2(resumed.portcullis.opsPerSecond / psk.portcullis.opsPerSecond),
            libcoap: round2(resumed.libcoap.opsPerSecond / psk.libcoap.opsPerSecond),
          },
        }
      : {}),
    requestsOverEstablishedSessions: requests,
    memoryOfIdleSessions: {
      sessions: settings.sessions,
      ...memoryResult,
      ratio: round2(perThousand / memoryResult.libcoap.perThousandMb),
    },
    // Targets of issue 3, judged on throughput ratios (the measure) with CPU-per-op beside them.
    targets: {
      pskHandshakesAtLeastLibcoap: psk.ratio.throughput >= 1,
      ecdheHandshakesAtLeastHalfOfLibcoap: ecdhe.ratio.throughput >= 0.5,
      requestRateAtLeastLibcoap: requests.ratio.throughput >= 1,
      ...(resumed
        ? { resumedAtLeast3xFullPsk: resumed.portcullis.opsPerSecond >= 3 * psk.portcullis.opsPerSecond }
        : {}),
      atMost5MbPerThousandIdleSessions: perThousand <= 5,
    },
  };
}
