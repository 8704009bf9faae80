/**
 * One device's baseline in one flat buffer: scalars and per-kind/per-destination records (Float64), hour-of-day
 * profiles (Float32) and bounded hash sets (Uint32). Flat, because V8 would box every double field of an object
 * as a heap number of its own; and the buffer is also the persisted form (version byte in front).
 *
 * The detector reads and writes fields by index (`m.v[F.x]`, `m.v[m.k(i) + K.x]`): the layout is the contract.
 */

/** Scalars. Window (`w*`) and hour (`h*`) accumulators are reset when their period closes. */
export const F = {
  firstTs: 0,
  windowStart: 1,
  lastMessageTs: 2,
  wCount: 3,
  wBytes: 4,
  wAuth: 5,
  wNewDistinct: 6,
  /** Messages of the open window that deliver a backlog (after a silence), not new activity. */
  wCatchup: 7,
  hCount: 8,
  hAuth: 9,
  /** Messages per window: damped mean, variance, observations. */
  rate: 10,
  /** Failed handshakes per window: damped mean, variance, observations. */
  auth: 13,
  peak: 16,
  rateCusum: 17,
  hourCusum: 18,
  authCusum: 19,
  authHourCusum: 20,
  /** Decayed count of destinations first seen after learning, and when it was last decayed. */
  novelDest: 21,
  novelDestTs: 22,
  novelRes: 23,
  novelResTs: 24,
  destinations: 25,
  destinationsOverflowed: 26,
  resources: 27,
  resourcesOverflowed: 28,
  probedResources: 29,
  /** Expected change: until when, why (EXPECT_*), and a reference (a campaign id). */
  relearnUntil: 30,
  relearnReason: 31,
  relearnRef: 32,
  /** Messages still to be read as a backlog after a silence. */
  catchupLeft: 33,
  /** The site outage this device's catch-up count belongs to, and the count since its start. */
  siteRef: 34,
  siteCount: 35,
  /** The site activity bucket the device was last counted in. */
  siteBucket: 36,
  /** Hour index of the open hour. */
  hourIndex: 37,
  /** Backlog messages in the open hour. */
  hCatchup: 38,
  /** log of the recent hours' level against their hour-of-week profile (follows drift within days). */
  level: 39,
  /** Windows of the open hour with at least one message (active minutes, at the default window). */
  hActive: 40,
  /** Messages the device's policy profile refused: in the open window; per window damped mean, variance,
   * observations; their CUSUM. */
  wRefused: 41,
  refused: 42,
  refusedCusum: 45,
  lastAlert: 46,
} as const;

export const ALERT_KINDS = 12;
/** When each finding kind was last raised, reported or held by the cooldown (learning slows while alerting). */
export const LAST_RAISED = F.lastAlert + ALERT_KINDS;
/** The severity (0 low, 1 medium, 2 high) last reported per kind: a worse finding passes the cooldown. */
export const LAST_SEVERITY = LAST_RAISED + ALERT_KINDS;

/** Message kinds: (resource, content format, size cluster), each with its own size and rhythm baseline. */
export const KINDS = 4;
export const K = {
  key: 0,
  /** Size, in log(bytes + 1): damped mean, variance, observations. */
  lmean: 1,
  lvar: 2,
  n: 3,
  lastTs: 4,
  /** Gap between messages of this kind (ms): damped mean, variance, observations. */
  gmean: 5,
  gvar: 6,
  gn: 7,
  gapCusum: 8,
  sizeCusum: 9,
  hourSizeCusum: 10,
  wN: 11,
  wLsum: 12,
  hN: 13,
  hLsum: 14,
  /** Event time the kind was created: a kind born after learning learns before it is scored. */
  born: 15,
} as const;
const KIND_FIELDS = 16;
export const KIND_AT = LAST_SEVERITY + ALERT_KINDS;

/** Destinations first seen after learning: on probation, with their contact rhythm (beacons). */
export const PROBATION = 12;
export const P = {
  hash: 0,
  first: 1,
  last: 2,
  contacts: 3,
  gmean: 4,
  gvar: 5,
  /** 1: first seen while the device was already alerting; stays suspicious. */
  suspicious: 6,
} as const;
const PROBATION_FIELDS = 7;
/**
 * Where the probation records sit in the persisted form, after the kinds. In memory they are an array of their
 * own, made when a device first meets a destination after learning: most devices never do, and the 672 bytes
 * were a fifth of every baseline's buffer (issue 23).
 */
const PROBATION_AT = KIND_AT + KINDS * KIND_FIELDS;
const PROBATION_BYTES = PROBATION * PROBATION_FIELDS * 8;
const SCALARS = PROBATION_AT;

/** 24 weekday + 24 weekend hours × (mean, variance, observed) — per window, and per hour. */
export const SLOT_COUNT = 48;
const DESTINATIONS = 32;
const RESOURCES = 8;
const PROBED = 8;
const SLOTS_AT = SCALARS * 8;
/** Where the per-hour profile starts in `prof` (after the per-window one). */
export const HOUR_BASE = SLOT_COUNT * 3;
const HASHES_AT = SLOTS_AT + SLOT_COUNT * 7 * 4;
const BYTES = HASHES_AT + (DESTINATIONS + RESOURCES + PROBED) * 4;
/** The persisted form (after its version byte): scalars, probation records, profiles, hashes. */
const STORED_BYTES = BYTES + PROBATION_BYTES;
/** Bump when the layout changes: older states are then relearned, not misread. */
const STATE_VERSION = 4;

export const EXPECT_FIRMWARE = 1;
export const EXPECT_ONBOARDING = 2;
export const EXPECT_MANUAL = 3;

type HashSet = 'destinations' | 'resources' | 'probedResources';
const SET_AT: Record<HashSet, number> = {
  destinations: 0,
  resources: DESTINATIONS,
  probedResources: DESTINATIONS + RESOURCES,
};
const SET_CAP: Record<HashSet, number> = {
  destinations: DESTINATIONS,
  resources: RESOURCES,
  probedResources: PROBED,
};

export class DeviceModel {
  readonly v: Float64Array;
  /**
   * Hour-of-week profiles, one view: per window [0,48) mean messages, [48,96) variance, [96,144) windows
   * observed (decayed); then per hour (from HOUR_BASE) [0,48) mean messages, [48,96) variance, [96,144) hours
   * observed, [144,192) the busiest window of that hour on recent days (decaying): a burst that recurs at the
   * same hour is judged against it.
   */
  readonly prof: Float32Array;
  private readonly hashes: Uint32Array;
  /** Probation records (`m.pv[m.p(j) + P.x]`), null until the first. */
  pv: Float64Array | null = null;
  /** Examples of what is new in the open window, for explanations; only allocated when something is. */
  wNew: string[] | null = null;
  wNewResources: string[] | null = null;
  /** Contacts with suspicious destinations in the open window (explanations). */
  wSuspect: string[] | null = null;
  /** The flood threshold of the window just scored (what a flooding window may teach is capped by it). */
  floodAt = 0;

  private constructor(buffer: ArrayBuffer) {
    this.v = new Float64Array(buffer, 0, SCALARS);
    this.prof = new Float32Array(buffer, SLOTS_AT, SLOT_COUNT * 7);
    this.hashes = new Uint32Array(buffer, HASHES_AT, DESTINATIONS + RESOURCES + PROBED);
  }

  static create(ts: number, windowMs: number): DeviceModel {
    const m = new DeviceModel(new ArrayBuffer(BYTES));
    m.v[F.firstTs] = ts;
    m.v[F.windowStart] = Math.floor(ts / windowMs) * windowMs;
    m.v[F.hourIndex] = Math.floor(m.v[F.windowStart]! / 3_600_000);
    m.v[F.lastMessageTs] = Number.NaN;
    m.v[F.siteBucket] = -1;
    m.v.fill(Number.NEGATIVE_INFINITY, F.lastAlert, F.lastAlert + 2 * ALERT_KINDS);
    return m;
  }

  /** The persisted form: a version byte, then the layout with the probation records after the kinds. */
  toBytes(): Buffer {
    const out = Buffer.alloc(1 + STORED_BYTES);
    out[0] = STATE_VERSION;
    const own = Buffer.from(this.v.buffer);
    own.copy(out, 1, 0, SLOTS_AT);
    if (this.pv) Buffer.from(this.pv.buffer).copy(out, 1 + SLOTS_AT);
    own.copy(out, 1 + SLOTS_AT + PROBATION_BYTES, SLOTS_AT);
    return out;
  }

  static fromBytes(bytes: Buffer): DeviceModel | undefined {
    if (bytes.length !== 1 + STORED_BYTES || bytes[0] !== STATE_VERSION) return undefined;
    const buffer = new ArrayBuffer(BYTES);
    const own = new Uint8Array(buffer);
    own.set(bytes.subarray(1, 1 + SLOTS_AT));
    own.set(bytes.subarray(1 + SLOTS_AT + PROBATION_BYTES), SLOTS_AT);
    const m = new DeviceModel(buffer);
    const stored = bytes.subarray(1 + SLOTS_AT, 1 + SLOTS_AT + PROBATION_BYTES);
    // Made only for a device with a record in use (a restart of 10,000 devices would otherwise make 10,000).
    let used = false;
    for (let j = 0; j < PROBATION; j++) if (stored.readDoubleLE((m.p(j) + P.contacts) * 8) > 0) used = true;
    if (used) new Uint8Array(m.probationRecords().buffer).set(stored);
    return m;
  }

  /** The probation records, made on first use. */
  probationRecords(): Float64Array {
    this.pv ??= new Float64Array(PROBATION * PROBATION_FIELDS);
    return this.pv;
  }

  /** Offset of message kind i's record. */
  k(i: number): number {
    return KIND_AT + i * KIND_FIELDS;
  }

  /** Offset of probation entry i's record in `pv`. */
  p(i: number): number {
    return i * PROBATION_FIELDS;
  }

  has(set: HashSet, h: number): boolean {
    const from = SET_AT[set];
    const size = this.v[F[set]] as number;
    for (let i = from; i < from + size; i++) if (this.hashes[i] === h) return true;
    return false;
  }

  /** Adds a hash; when the set is full it is marked overflowed instead (news detection then stops for it). */
  insert(set: HashSet, h: number): void {
    if (this.has(set, h)) return;
    const size = this.v[F[set]] as number;
    if (size === SET_CAP[set]) {
      if (set === 'destinations') this.v[F.destinationsOverflowed] = 1;
      else if (set === 'resources') this.v[F.resourcesOverflowed] = 1;
      return;
    }
    this.hashes[SET_AT[set] + size] = h;
    this.v[F[set]] = size + 1;
  }

  /** Empties the open window's accumulators. */
  resetWindow(): void {
    this.v.fill(0, F.wCount, F.wCatchup + 1);
    this.v[F.wRefused] = 0;
    for (let i = 0; i < KINDS; i++) {
      const at = this.k(i);
      this.v[at + K.wN] = 0;
      this.v[at + K.wLsum] = 0;
    }
    this.wNew = null;
    this.wNewResources = null;
    this.wSuspect = null;
  }

  resetHour(): void {
    this.v[F.hCount] = 0;
    this.v[F.hAuth] = 0;
    this.v[F.hActive] = 0;
    for (let i = 0; i < KINDS; i++) {
      const at = this.k(i);
      this.v[at + K.hN] = 0;
      this.v[at + K.hLsum] = 0;
    }
  }
}
