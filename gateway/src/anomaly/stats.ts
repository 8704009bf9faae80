/**
 * Damped incremental statistics (as in Kitsune's AfterImage), stored as three numbers — mean, variance,
 * observations — at `at` in a Float64Array, so a device's whole baseline is one flat buffer. The weight of a
 * new observation is `alpha`, but 1/n until 1/alpha observations have been seen: the first observations give
 * an unbiased start instead of a pull towards zero (the cold start).
 */
export function ewmaUpdate(v: Float64Array, at: number, alpha: number, x: number): void {
  const n = (v[at + 2] as number) + 1;
  v[at + 2] = n;
  const a = Math.max(alpha, 1 / n);
  const d = x - (v[at] as number);
  v[at] = (v[at] as number) + a * d;
  v[at + 1] = (1 - a) * ((v[at + 1] as number) + a * d * d);
}

/**
 * Folds in `count` observations with the given mean and variance at once (a window's messages) with the weight
 * `count` single steps would have: O(1) per window instead of per message.
 */
export function ewmaBatch(
  v: Float64Array,
  at: number,
  alpha: number,
  count: number,
  mean: number,
  variance: number,
): void {
  if (count <= 0) return;
  const n = v[at + 2] as number;
  if (n === 0) {
    v[at] = mean;
    v[at + 1] = variance;
    v[at + 2] = count;
    return;
  }
  // Warm-up: the running average's weight; after it, what `count` single EWMA steps would give the batch.
  const w = n + count <= 1 / alpha ? count / (n + count) : 1 - (1 - alpha) ** count;
  const d = mean - (v[at] as number);
  v[at] = (v[at] as number) + w * d;
  v[at + 1] = (1 - w) * ((v[at + 1] as number) + w * d * d) + w * variance;
  v[at + 2] = n + count;
}

/** One-sided CUSUM (Page) at v[at]: accumulates standardised excess beyond `k`; catches small sustained shifts. */
export function cusumUpdate(v: Float64Array, at: number, z: number, k: number, cap: number): number {
  const s = Math.max(0, (v[at] as number) + Math.min(z, cap) - k);
  v[at] = s;
  return s;
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

/**
 * A damped update that learns from every observation but clips it to `c` standard deviations (at least
 * `floor`) of the current mean once the warm-up is over (Huber-style): a benign pattern that recurs is learned
 * a little each time it comes back, while a sustained attack can pull the baseline by at most c·sd·alpha per
 * observation, and the cumulative checks have flagged it long before that adds up.
 */
export function ewmaRobust(
  v: Float64Array,
  at: number,
  alpha: number,
  x: number,
  c: number,
  floor: number,
): void {
  if ((v[at + 2] as number) >= 10) {
    const sd = Math.max(Math.sqrt(v[at + 1] as number), floor);
    const mu = v[at] as number;
    if (x > mu + c * sd) x = mu + c * sd;
    else if (x < mu - c * sd) x = mu - c * sd;
  }
  ewmaUpdate(v, at, alpha, x);
}
