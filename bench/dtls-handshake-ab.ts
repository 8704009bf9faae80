/**
 * In-process A/B of the DTLS server's own CPU per full PSK handshake, between source trees (e.g. this one and a
 * `git worktree` of the commit before a change):
 *
 *   npx tsx bench/dtls-handshake-ab.ts [--built] [--pairs 3] [--handshakes 2000] [--rounds 6] [--warm 10500] TREE…
 *
 * Each run is a fresh process per tree, the trees alternated `--pairs` times so machine drift hits all alike.
 * No sockets: the test suite's crafted client (this tree's) hands its datagrams straight to the server's
 * receive handler, and only the CPU time inside that handler is counted (process.cpuUsage around each call),
 * so the kernel's and Node's datagram costs are left out — what remains is the protocol in JavaScript, the
 * addon's crypto and GC that runs inside the handler. `--warm` handshakes first fill the session cache (10,000
 * entries by default), so every measured handshake also evicts one, as under sustained load. `--built` loads
 * each tree's dist/ (run `npm run build` in it first) instead of its TypeScript through tsx.
 * `--count-buffers` reports the Buffers the server creates per handshake, by call site.
 *
 * A tool for comparing changes, not a figure for the docs on its own: the network bench (`npm run bench --
 * dtls`) is what compares Portcullis with libcoap.
 */
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TestDtlsClient } from '../test/helpers/dtls-test-client.ts';

interface Settings {
  built: boolean;
  pairs: number;
  handshakes: number;
  rounds: number;
  warm: number;
  countBuffers: boolean;
  trees: string[];
}

function parse(argv: string[]): Settings {
  const s: Settings = {
    built: false,
    pairs: 3,
    handshakes: 2000,
    rounds: 6,
    warm: 10_500,
    countBuffers: false,
    trees: [],
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    const next = () => Number(argv[++i]);
    if (a === '--built') s.built = true;
    else if (a === '--count-buffers') s.countBuffers = true;
    else if (a === '--pairs') s.pairs = next();
    else if (a === '--handshakes') s.handshakes = next();
    else if (a === '--rounds') s.rounds = next();
    else if (a === '--warm') s.warm = next();
    else s.trees.push(resolve(a));
  }
  return s;
}

const PSK = Buffer.from('bench-psk-0123456789abcdef', 'utf8');

interface ServerInternals {
  socket: unknown;
  onDatagram(msg: Buffer, rinfo: unknown): void;
  stats: { handshakesCompleted: number };
}

/** One tree, in this process: per-round µs of server CPU per handshake. */
async function child(tree: string, s: Settings): Promise<void> {
  const mod = (await import(
    s.built ? `${tree}/dist/gateway/src/dtls/index.js` : `${tree}/gateway/src/dtls/index.ts`
  )) as typeof import('../gateway/src/dtls/index.ts');
  const server = new mod.DtlsServer({
    lookupPsk: () => PSK,
    limits: {
      handshakesPerSecondPerSource: 1_000_000,
      maxHandshakesPerSource: 100_000,
      maxHandshakesPerPrefix: 100_000,
      maxSessions: 100_000,
    },
    sessionResumption: true,
  }) as unknown as ServerInternals;
  const buffers = s.countBuffers ? countBuffers() : null;
  let serverMicros = 0;
  let deliver: ((datagram: Buffer) => void) | null = null;
  // The server's socket: its datagrams reach the client on a later turn, so the client's work is not timed.
  server.socket = {
    send(d: Buffer) {
      // The copy is the harness's, not the server's: not counted.
      const counting = buffers?.on ?? false;
      if (buffers) buffers.on = false;
      const copy = Buffer.from(d);
      if (buffers) buffers.on = counting;
      const to = deliver;
      setImmediate(() => to?.(copy));
    },
  };
  let port = 10_000;
  const one = async () => {
    const p = port++;
    if (port > 60_000) port = 10_000;
    const c = new TestDtlsClient({
      port: 1,
      suite: 'TLS_PSK_WITH_AES_128_CCM_8',
      psk: { identity: 'bench', key: PSK },
    });
    const internals = c as unknown as { socket: { close(): void; listeners(e: string): unknown[] } };
    const real = internals.socket;
    deliver = real.listeners('message')[0] as (d: Buffer) => void;
    real.close();
    (internals as unknown as { socket: unknown }).socket = {
      send(d: Buffer, _port: number, _host: string, cb?: () => void) {
        const copy = Buffer.from(d);
        setImmediate(() => {
          if (buffers) buffers.on = true;
          const t0 = process.cpuUsage();
          server.onDatagram(copy, { address: '127.0.0.1', port: p, family: 'IPv4', size: copy.length });
          const t = process.cpuUsage(t0);
          if (buffers) buffers.on = false;
          serverMicros += t.user + t.system;
          cb?.();
        });
      },
      close() {},
      address: () => ({ port: p }),
    };
    await c.connect();
    await c.closeNotify();
    await new Promise((r) => setImmediate(r));
  };
  for (let i = 0; i < s.warm; i++) await one();
  if (buffers) buffers.counts.clear();
  const rounds: number[] = [];
  for (let r = 0; r < s.rounds; r++) {
    serverMicros = 0;
    for (let i = 0; i < s.handshakes; i++) await one();
    rounds.push(serverMicros / s.handshakes);
  }
  const out: Record<string, unknown> = { tree, rounds: rounds.map((x) => Math.round(x * 10) / 10) };
  if (buffers) {
    const n = s.handshakes * s.rounds;
    out.buffersPerHandshake =
      Math.round(([...buffers.counts.values()].reduce((a, b) => a + b, 0) / n) * 10) / 10;
    out.bySite = Object.fromEntries(
      [...buffers.counts].sort((a, b) => b[1] - a[1]).map(([k, v]) => [k, Math.round((v / n) * 100) / 100]),
    );
  }
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

/** Counts Buffer allocations and views made while `on` is set, by caller. */
function countBuffers(): { on: boolean; counts: Map<string, number> } {
  const state = { on: false, counts: new Map<string, number>() };
  const site = () => (new Error().stack?.split('\n')[3] ?? '').trim().replace(/\(.*\/([^/]+)\)$/, '$1');
  const B = Buffer as unknown as Record<string, (...a: unknown[]) => Buffer>;
  for (const name of ['allocUnsafe', 'allocUnsafeSlow', 'alloc', 'from', 'concat']) {
    const orig = B[name] as (...a: unknown[]) => Buffer;
    B[name] = function (this: unknown, ...a: unknown[]) {
      if (state.on) state.counts.set(`${name} ${site()}`, (state.counts.get(`${name} ${site()}`) ?? 0) + 1);
      return orig.apply(this, a);
    };
  }
  const sub = Buffer.prototype.subarray;
  Buffer.prototype.subarray = function (this: Buffer, start?: number, end?: number) {
    if (state.on) state.counts.set(`subarray ${site()}`, (state.counts.get(`subarray ${site()}`) ?? 0) + 1);
    return sub.call(this, start, end);
  } as typeof sub;
  return state;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

const argv = process.argv.slice(2);
if (argv[0] === '--child') {
  const s = parse(argv.slice(2));
  await child(argv[1] as string, s);
} else {
  const s = parse(argv);
  if (s.trees.length === 0) s.trees.push(resolve(fileURLToPath(new URL('..', import.meta.url))));
  const results = new Map<string, number[]>();
  for (let pair = 0; pair < s.pairs; pair++) {
    for (const tree of s.trees) {
      const r = spawnSync(
        process.execPath,
        ['--import', 'tsx', fileURLToPath(import.meta.url), '--child', tree, ...argv],
        { encoding: 'utf8', maxBuffer: 16 << 20 },
      );
      if (r.status !== 0) throw new Error(`run for ${tree} failed: ${r.stderr}`);
      const line = JSON.parse(r.stdout.trim().split('\n').pop() as string) as { rounds: number[] };
      process.stderr.write(`${r.stdout.trim()}\n`);
      // The first round still has the optimising compiler at work: left out.
      results.set(tree, [...(results.get(tree) ?? []), ...line.rounds.slice(1)]);
    }
  }
  const report = [...results].map(([tree, xs]) => ({
    tree,
    serverMicrosPerHandshake: { min: Math.min(...xs), median: median(xs) },
  }));
  process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
}
