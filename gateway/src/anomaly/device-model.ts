import { cusumUpdate, ewmaBatch, ewmaUpdate } from './stats.ts';

/**
 * One device's baseline in one flat 1,048-byte buffer: scalars (Float64), hour-of-day slots (Float32) and the
 * bounded destination/resource sets (Uint32). Flat, because V8 would box every double field of an object as a
 * heap number of its own; and the buffer is also the persisted form.
 */
const F = {
  firstTs: 0,
  windowStart: 1,
  wCount: 2,
  wBytes: 3,
  wBytesSq: 4,
  wAuth: 5,
  wGapSum: 6,
  wGapSq: 7,
  wGaps: 8,
  wNewDistinct: 9,
  lastMessageTs: 10,
  peak: 11,
  rate: 12,
  auth: 15,
  size: 18,
  gap: 21,
  rateCusum: 24,
  sizeCusum: 25,
  gapCusum: 26,
  destinations: 27,
  destinationsOverflowed: 28,
  resources: 29,
  resourcesOverflowed: 30,
  lastAlert: 31,
} as const;
const ALERT_KINDS = 8;
const SCALARS = F.lastAlert + ALERT_KINDS;
/** 24 weekday + 24 weekend hours × (mean, variance, windows observed). */
export const SLOT_COUNT = 48;
const DESTINATIONS = 32;
const RESOURCES = 8;
const SLOTS_AT = SCALARS * 8;
const HASHES_AT = SLOTS_AT + SLOT_COUNT * 3 * 4;
const BYTES = HASHES_AT + (DESTINATIONS + RESOURCES) * 4;
/** Bump when the layout changes: older states are then relearned, not misread. */
const STATE_VERSION = 2;

export type Stat = 'rate' | 'auth' | 'size' | 'gap';
export type CusumName = 'rateCusum' | 'sizeCusum' | 'gapCusum';

export class DeviceModel {
  readonly v: Float64Array;
  /** [0,48) mean messages per window, [48,96) their variance, [96,144) windows observed (decayed). */
  readonly slots: Float32Array;
  private readonly hashes: Uint32Array;
  /** Examples of what is new in the open window, for explanations; only allocated when something is. */
  wNew: string[] | null = null;
  wNewResources: string[] | null = null;

  private constructor(buffer: ArrayBuffer) {
    this.v = new Float64Array(buffer, 0, SCALARS);
    this.slots = new Float32Array(buffer, SLOTS_AT, SLOT_COUNT * 3);
    this.hashes = new Uint32Array(buffer, HASHES_AT, DESTINATIONS + RESOURCES);
  }

  static create(ts: number, windowMs: number): DeviceModel {
    const m = new DeviceModel(new ArrayBuffer(BYTES));
    m.v[F.firstTs] = ts;
    m.v[F.windowStart] = Math.floor(ts / windowMs) * windowMs;
    m.v[F.lastMessageTs] = Number.NaN;
    m.v.fill(Number.NEGATIVE_INFINITY, F.lastAlert, F.lastAlert + ALERT_KINDS);
    return m;
  }

  /** The persisted form: a version byte and the buffer. */
  toBytes(): Buffer {
    const out = Buffer.alloc(1 + BYTES);
    out[0] = STATE_VERSION;
    Buffer.from(this.v.buffer).copy(out, 1);
    return out;
  }

  static fromBytes(bytes: Buffer): DeviceModel | undefined {
    if (bytes.length !== 1 + BYTES || bytes[0] !== STATE_VERSION) return undefined;
    const buffer = new ArrayBuffer(BYTES);
    new Uint8Array(buffer).set(bytes.subarray(1));
    return new DeviceModel(buffer);
  }

  get firstTs(): number {
    return this.v[F.firstTs] as number;
  }

  get windowStart(): number {
    return this.v[F.windowStart] as number;
  }

  set windowStart(x: number) {
    this.v[F.windowStart] = x;
  }

  get wCount(): number {
    return this.v[F.wCount] as number;
  }

  set wCount(x: number) {
    this.v[F.wCount] = x;
  }

  get wBytes(): number {
    return this.v[F.wBytes] as number;
  }

  set wBytes(x: number) {
    this.v[F.wBytes] = x;
  }

  get wBytesSq(): number {
    return this.v[F.wBytesSq] as number;
  }

  set wBytesSq(x: number) {
    this.v[F.wBytesSq] = x;
  }

  get wAuth(): number {
    return this.v[F.wAuth] as number;
  }

  set wAuth(x: number) {
    this.v[F.wAuth] = x;
  }

  get wGapSum(): number {
    return this.v[F.wGapSum] as number;
  }

  set wGapSum(x: number) {
    this.v[F.wGapSum] = x;
  }

  get wGapSq(): number {
    return this.v[F.wGapSq] as number;
  }

  set wGapSq(x: number) {
    this.v[F.wGapSq] = x;
  }

  get wGaps(): number {
    return this.v[F.wGaps] as number;
  }

  set wGaps(x: number) {
    this.v[F.wGaps] = x;
  }

  get wNewDistinct(): number {
    return this.v[F.wNewDistinct] as number;
  }

  set wNewDistinct(x: number) {
    this.v[F.wNewDistinct] = x;
  }

  get lastMessageTs(): number {
    return this.v[F.lastMessageTs] as number;
  }

  set lastMessageTs(x: number) {
    this.v[F.lastMessageTs] = x;
  }

  get peak(): number {
    return this.v[F.peak] as number;
  }

  set peak(x: number) {
    this.v[F.peak] = x;
  }

  mean(s: Stat): number {
    return this.v[F[s]] as number;
  }

  variance(s: Stat): number {
    return this.v[F[s] + 1] as number;
  }

  std(s: Stat): number {
    return Math.sqrt(this.variance(s));
  }

  observations(s: Stat): number {
    return this.v[F[s] + 2] as number;
  }

  update(s: Stat, alpha: number, x: number): void {
    ewmaUpdate(this.v, F[s], alpha, x);
  }

  updateBatch(s: Stat, alpha: number, count: number, mean: number, variance: number): void {
    ewmaBatch(this.v, F[s], alpha, count, mean, variance);
  }

  cusum(c: CusumName): number {
    return this.v[F[c]] as number;
  }

  setCusum(c: CusumName, x: number): void {
    this.v[F[c]] = x;
  }

  updateCusum(c: CusumName, z: number, k: number, cap: number): number {
    return cusumUpdate(this.v, F[c], z, k, cap);
  }

  lastAlert(kind: number): number {
    return this.v[F.lastAlert + kind] as number;
  }

  setLastAlert(kind: number, t: number): void {
    this.v[F.lastAlert + kind] = t;
  }

  private has(set: 'destinations' | 'resources', h: number): boolean {
    const from = set === 'destinations' ? 0 : DESTINATIONS;
    const size = this.v[F[set]] as number;
    for (let i = from; i < from + size; i++) if (this.hashes[i] === h) return true;
    return false;
  }

  /** Adds a hash; when the set is full it is marked overflowed instead (news detection then stops for it). */
  private insert(set: 'destinations' | 'resources', h: number): void {
    if (this.has(set, h)) return;
    const from = set === 'destinations' ? 0 : DESTINATIONS;
    const capacity = set === 'destinations' ? DESTINATIONS : RESOURCES;
    const size = this.v[F[set]] as number;
    if (size === capacity) {
      this.v[set === 'destinations' ? F.destinationsOverflowed : F.resourcesOverflowed] = 1;
      return;
    }
    this.hashes[from + size] = h;
    this.v[F[set]] = size + 1;
  }

  hasDestination(h: number): boolean {
    return this.has('destinations', h);
  }

  addDestination(h: number): void {
    this.insert('destinations', h);
  }

  get destinationsOverflowed(): boolean {
    return this.v[F.destinationsOverflowed] === 1;
  }

  hasResource(h: number): boolean {
    return this.has('resources', h);
  }

  addResource(h: number): void {
    this.insert('resources', h);
  }

  get resourcesOverflowed(): boolean {
    return this.v[F.resourcesOverflowed] === 1;
  }

  /** Empties the open window's accumulators. */
  resetWindow(): void {
    this.v.fill(0, F.wCount, F.wNewDistinct + 1);
    this.wNew = null;
    this.wNewResources = null;
  }
}
