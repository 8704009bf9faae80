/** Shared by the benchmarks: option parsing, parallel set-up, and the timed load loop. */

/** The middle value (the mean of the two middle ones for an even count). */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

/** `--name N` options over numeric defaults; anything else is a usage error naming the known options. */
export function parseOptions<T extends Record<string, number>>(
  bench: string,
  argv: string[],
  defaults: T,
): T {
  const s: Record<string, number> = { ...defaults };
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i]?.replace(/^--/, '') ?? '';
    const value = Number(argv[i + 1]);
    if (!(key in s) || !Number.isFinite(value) || value <= 0) {
      const usage = Object.keys(defaults)
        .map((k) => `[--${k} N]`)
        .join(' ');
      throw new Error(`usage: npm run bench -- ${bench} ${usage}`);
    }
    s[key] = value;
  }
  return s as T;
}

/** Makes `n` things (sessions, connections) with at most `concurrency` in progress; index order kept. */
export async function inParallel<T>(
  n: number,
  concurrency: number,
  make: (i: number) => Promise<T>,
): Promise<T[]> {
  const out: T[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, n) }, async () => {
      while (next < n) {
        const i = next++;
        out[i] = await make(i);
      }
    }),
  );
  return out;
}

export interface LoadResult {
  ops: number;
  errors: number;
  seconds: number;
}

/** Runs `workers` loops of `op` for `seconds`; a failed op is counted, never retried. */
export async function runFor(
  seconds: number,
  workers: number,
  op: (worker: number) => Promise<void>,
): Promise<LoadResult> {
  const t0 = performance.now();
  const deadline = t0 + seconds * 1000;
  let ops = 0;
  let errors = 0;
  await Promise.all(
    Array.from({ length: workers }, async (_, w) => {
      while (performance.now() < deadline) {
        try {
          await op(w);
          ops++;
        } catch {
          errors++;
        }
      }
    }),
  );
  return { ops, errors, seconds: (performance.now() - t0) / 1000 };
}

/**
 * With `workers` workers over `n` targets, worker w walks its own slice (w, w + workers, …) round and round, so
 * no two workers ever use one target at once. Returns the next target index for a worker.
 */
export function sliceWalker(n: number, workers: number): (worker: number) => number {
  const turn = new Array<number>(workers).fill(0);
  return (w) => {
    const k = (turn[w] as number) % Math.ceil((n - w) / workers);
    turn[w] = k + 1;
    return w + k * workers;
  };
}

export const round = (x: number, digits: number) => Math.round(x * 10 ** digits) / 10 ** digits;
