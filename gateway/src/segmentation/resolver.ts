import { lookup } from 'node:dns/promises';

export type NameLookup = (name: string) => Promise<string[]>;

/** getaddrinfo (so /etc/hosts and the system resolver both count), IPv4 only: segments are IPv4. */
export const systemLookup: NameLookup = async (name) =>
  (await lookup(name, { all: true, family: 4 })).map((a) => a.address);

const LOOKUP_TIMEOUT_MS = 5000;

/**
 * Resolves allow-list DNS names for the compiler and remembers the answers until the next refresh. A name
 * that fails to resolve keeps its previous answer (a resolver hiccup must not cut a device off), and a name
 * never resolved allows nothing.
 */
export class NameCache {
  private readonly answers = new Map<string, string[]>();
  private refreshedAt = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly resolve: NameLookup = systemLookup,
    private readonly now: () => number = Date.now,
  ) {}

  isStale(names: readonly string[], maxAgeMs: number): boolean {
    return this.now() - this.refreshedAt >= maxAgeMs || names.some((n) => !this.answers.has(n));
  }

  async refresh(names: readonly string[]): Promise<{ failed: string[] }> {
    const failed: string[] = [];
    await Promise.all(
      [...new Set(names)].map(async (name) => {
        try {
          const found = await withTimeout(this.resolve(name), LOOKUP_TIMEOUT_MS);
          this.answers.set(name, [...new Set(found)].sort());
        } catch {
          failed.push(name);
          if (!this.answers.has(name)) this.answers.set(name, []);
        }
      }),
    );
    this.refreshedAt = this.now();
    return { failed: failed.sort() };
  }

  snapshot(): ReadonlyMap<string, readonly string[]> {
    return new Map(this.answers);
  }
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('timed out')), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}
