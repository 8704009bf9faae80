import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export interface FloodOptions {
  port: number;
  host?: string;
  /** Source addresses (loopback: all of 127.0.0.0/8 is ours). */
  sources: string[];
  /** Cookie-verified hellos per second from each source. */
  ratePerSource: number;
  /** The bound: no source sends more than this many hellos. */
  maxPerSource: number;
  /** How long each never-continued port stays open. */
  holdMs?: number;
}

export interface FloodCounts {
  /** ClientHellos sent without a cookie (one per new source port). */
  sent: number;
  /** HelloVerifyRequests answered with the cookie: the flood's cookie-verified hellos. */
  cookies: number;
  /** Of those, the ones that got the server's flight (a handshake slot taken). */
  started: number;
  errors: number;
}

export interface Flood {
  /** The last progress report. */
  readonly counts: FloodCounts;
  /** Resolves once `pick` holds for a progress report. */
  until(what: string, pick: (c: FloodCounts) => boolean, timeoutMs?: number): Promise<FloodCounts>;
  /** Stops sending, waits for the last ports to close and returns the totals. */
  stop(): Promise<FloodCounts>;
}

const FLOODER = fileURLToPath(new URL('./dtls-flooder.mjs', import.meta.url));

/** `count` loopback addresses: one per /24 from 127.`second`.0.1 on (`spread`), or the whole of one /24. */
export function loopbackSources(
  count: number,
  second: number,
  shape: 'one-per-prefix' | 'one-prefix',
): string[] {
  return Array.from({ length: count }, (_, i) =>
    shape === 'one-prefix' ? `127.${second}.0.${i}` : `127.${second}.${i}.1`,
  );
}

/** Starts the flood in its own node process (test/helpers/dtls-flooder.mjs). */
export async function startFlood(o: FloodOptions): Promise<Flood> {
  const child = spawn(process.execPath, [FLOODER, JSON.stringify(o)], { stdio: ['pipe', 'pipe', 'inherit'] });
  let counts: FloodCounts = { sent: 0, cookies: 0, started: 0, errors: 0 };
  let done: FloodCounts | null = null;
  const listeners = new Set<() => void>();
  let buf = '';
  child.stdout.on('data', (d: Buffer) => {
    buf += d.toString();
    const lines = buf.split('\n');
    buf = lines.pop() ?? '';
    for (const line of lines) {
      const r = JSON.parse(line) as FloodCounts & { done?: boolean };
      counts = { sent: r.sent, cookies: r.cookies, started: r.started, errors: r.errors };
      if (r.done) done = counts;
    }
    for (const l of listeners) l();
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const flood: Flood = {
    get counts() {
      return counts;
    },
    until(what, pick, timeoutMs = 15_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          if (pick(counts)) {
            cleanup();
            resolve(counts);
          } else if (done || child.exitCode !== null) {
            cleanup();
            reject(new Error(`the flood ended before ${what} (${JSON.stringify(counts)})`));
          }
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`timed out waiting for ${what} (${JSON.stringify(counts)})`));
        }, timeoutMs);
        const cleanup = () => {
          clearTimeout(timer);
          listeners.delete(check);
        };
        listeners.add(check);
        check();
      });
    },
    async stop() {
      child.stdin.end();
      await exited;
      return done ?? counts;
    },
  };
  await flood.until('the flooder to start', () => true, 10_000);
  return flood;
}
