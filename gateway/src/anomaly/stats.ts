/**
 * Damped incremental statistics (as in Kitsune's AfterImage): a mean and variance that forget with a fixed
 * factor per observation, O(1) memory. Until 1/alpha observations have been seen the weight is 1/n, so the
 * first observations give an unbiased start instead of a pull towards zero (the cold start).
 */
export class Ewma {
  mean = 0;
  variance = 0;
  n = 0;

  constructor(private readonly alpha: number) {}

  update(x: number): void {
    this.n++;
    const a = Math.max(this.alpha, 1 / this.n);
    const d = x - this.mean;
    this.mean += a * d;
    this.variance = (1 - a) * (this.variance + a * d * d);
  }

  /**
   * Folds in `count` observations with the given mean and variance at once (a window's messages), as if they
   * had come one by one: same weights, O(1).
   */
  updateBatch(count: number, mean: number, variance: number): void {
    if (count <= 0) return;
    if (this.n === 0) {
      this.n = count;
      this.mean = mean;
      this.variance = variance;
      return;
    }
    // Warm-up: the running average's weight; after it, what `count` single EWMA steps would give the batch.
    const weight =
      this.n + count <= 1 / this.alpha ? count / (this.n + count) : 1 - (1 - this.alpha) ** count;
    const d = mean - this.mean;
    this.mean += weight * d;
    this.variance = (1 - weight) * (this.variance + weight * d * d) + weight * variance;
    this.n += count;
  }

  std(): number {
    return Math.sqrt(this.variance);
  }
}

/** One-sided CUSUM (Page): accumulates standardised excess beyond `k`; catches small sustained shifts. */
export class Cusum {
  value = 0;

  constructor(
    private readonly k: number,
    private readonly cap: number,
  ) {}

  update(z: number): number {
    this.value = Math.max(0, this.value + Math.min(z, this.cap) - this.k);
    return this.value;
  }

  reset(): void {
    this.value = 0;
  }
}

/** FNV-1a, 32 bits: how bounded sets remember destinations and resources without storing strings. */
export function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** A set of at most `capacity` 32-bit hashes; once full it says so instead of forgetting (see docs). */
export class BoundedHashSet {
  readonly items: Uint32Array;
  size = 0;
  overflowed = false;

  constructor(capacity: number) {
    this.items = new Uint32Array(capacity);
  }

  has(h: number): boolean {
    for (let i = 0; i < this.size; i++) if (this.items[i] === h) return true;
    return false;
  }

  add(h: number): void {
    if (this.has(h)) return;
    if (this.size === this.items.length) {
      this.overflowed = true;
      return;
    }
    this.items[this.size++] = h;
  }
}
