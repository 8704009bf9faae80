import {
  ALERT_KINDS,
  DeviceModel,
  EXPECT_FIRMWARE,
  EXPECT_MANUAL,
  EXPECT_ONBOARDING,
  F,
  HOUR_BASE,
  K,
  LAST_RAISED,
  LAST_SEVERITY,
  KINDS as MESSAGE_KINDS,
  P,
  PROBATION,
} from './device-model.ts';
import type { DetectorEvent } from './events.ts';
import { ewmaRobust, ewmaUpdate, fnv1a } from './stats.ts';

export type Severity = 'low' | 'medium' | 'high';
export type FindingKind =
  | 'flood'
  | 'rate'
  | 'size'
  | 'auth'
  | 'off-hours'
  | 'scan'
  | 'new-destination'
  | 'new-resource'
  | 'beacon'
  | 'policy';

const KINDS: readonly FindingKind[] = [
  'flood',
  'rate',
  'size',
  'auth',
  'off-hours',
  'scan',
  'new-destination',
  'new-resource',
  'beacon',
  'policy',
];
const KIND_INDEX = new Map(KINDS.map((k, i) => [k, i]));
if (KINDS.length > ALERT_KINDS) throw new Error('more finding kinds than the model keeps alert times for');

/** One feature that departed from the device's baseline: what was seen against what was expected. */
export interface Reason {
  feature: FindingKind;
  severity: Severity;
  /** How far from normal, in the feature's own standardised units (z-score, CUSUM sum, or a fixed weight). */
  score: number;
  observed: string;
  expected: string;
  text: string;
}

export interface Finding {
  /** End of the window the finding is about (event time). */
  ts: number;
  device: string;
  score: number;
  severity: Severity;
  reasons: Reason[];
  /** Start of that window. */
  windowStart: number;
}

/** What one closed window held, reported whether or not it raised a finding (the UI charts it). */
export interface WindowSummary {
  device: string;
  windowStart: number;
  messages: number;
  bytes: number;
  authFailures: number;
  /** The highest reason score in the window, reported or held back by the cooldown; 0 when nothing was unusual. */
  score: number;
}

/** Why a device's behaviour is expected to change (a re-learning window). */
export type ExpectedChangeReason = 'firmware' | 'onboarding' | 'manual';

/** What the device page shows of a device's behaviour model. */
export interface BehaviourStatus {
  state: 'unknown' | 'learning' | 're-learning' | 'monitored';
  /** End of the (re-)learning period, ms since the epoch. */
  until: number | null;
  /** Why it re-learns, in words ("firmware campaign 3"). */
  because: string | null;
  messageKinds: number;
}

export interface DetectorOptions {
  /** Event time a device is only learned, never scored (cold start). */
  learningMs: number;
  windowMs: number;
  /** The same kind of finding for the same device is reported at most once per cooldown. */
  cooldownMs: number;
  /** Hour-of-day profiles are kept in this offset from UTC (the site's local time)... */
  utcOffsetMinutes: number;
  /** ...or in this IANA time zone, DST included (takes precedence over the offset). */
  timeZone?: string;
  /** How long an expected change (a firmware update, re-onboarding) re-learns the device by default. */
  relearnMs: number;
  /** The peer group (segment) a device is judged with for site-wide silences; one group by default. */
  groupOf?: (device: string) => string;
}

export const DEFAULT_DETECTOR_OPTIONS: DetectorOptions = {
  learningMs: 24 * 3600_000,
  windowMs: 60_000,
  cooldownMs: 3600_000,
  utcOffsetMinutes: 0,
  relearnMs: 24 * 3600_000,
};

/**
 * Thresholds, in standardised units so they mean the same for a device sending once an hour and one sending
 * ten times a second. Chosen from the evaluations (docs/anomaly.md), not per device.
 */
const T = {
  floodZ: 8,
  floodRatio: 4,
  floodExtra: 10,
  cusumK: 1.5,
  cusumCap: 8,
  peakFactor: 3,
  rateCusumH: 25,
  hourK: 0.75,
  hourCap: 4,
  hourH: 6,
  sizeZ: 8,
  sizeRatio: 1.3,
  sizeCusumH: 30,
  hourSizeK: 1.5,
  hourSizeCap: 6,
  hourSizeH: 8,
  gapCusumH: 60,
  authMin: 5,
  authZ: 5,
  /** Failures per window above the baseline that the window CUSUM lets pass. */
  authK: 0.25,
  authH: 12,
  authHourK: 2,
  /** Policy refusals: a window with this many at z ≥ 5, or the window CUSUM (k = usual + 0.5) at 20. */
  refusedMin: 10,
  refusedK: 0.5,
  refusedH: 20,
  authHourH: 10,
  scanDistinct: 10,
  /** Decayed count of new destinations (half-life NOVELTY_HALF_LIFE) that makes a slow scan. */
  slowScan: 8,
  /** Distinct new resources (decayed) that make probing rather than one new resource. */
  probing: 3,
  quietShare: 0.25,
  beaconContacts: 4,
  beaconCv: 0.35,
  /** A message this far (log scale) from every kind of its resource starts a kind of its own (×2.5). */
  newKindLog: Math.log(2.5),
  /** Messages a kind born after learning learns from before it is scored. */
  youngKind: 30,
};

const ALPHA_WINDOW = 1 / 500;
const ALPHA_MESSAGE = 1 / 1000;
const ALPHA_GAP = 1 / 300;
/** Hour-of-day statistics forget over ~3 days of that hour's windows, and over ~7 of its hours: habits move. */
const ALPHA_SLOT = 1 / 180;
const ALPHA_HOUR = 1 / 7;
/** The level of recent hours against their profile follows over ~2 days of hours. */
const ALPHA_LEVEL = 1 / 48;
/** Learning slows to this share for a feature that raised a finding within the cooldown. */
const ALERTING_SLOWDOWN = 0.1;
/** Clip for robust learning, in standard deviations. */
const CLIP = 3;
/** The busiest window seen decays to half in ~2 days of windows. */
const PEAK_DECAY = 0.99976;
/** Per window of the same hour of the week: ×0.74 a day (60 windows), so an old burst fades within a week. */
const SLOT_PEAK_DECAY = 0.995;
const MAX_IDLE_WINDOWS = 10_080;
const MAX_RHYTHM_GAP_MS = 3_600_000;
/** Messages of a backlog follow each other at most this far apart. */
const CATCHUP_GAP_MS = 10_000;
const NOVELTY_HALF_LIFE = 3 * 3_600_000;
const DAY_MS = 86_400_000;
const HOUR_MS = 3_600_000;
/** Site activity is counted in buckets of this length (distinct devices seen per bucket). */
const BUCKET_MS = 5 * 60_000;
/** A silence of the site must last this long to count as an outage whose catch-up is expected. */
const MIN_OUTAGE_MS = 10 * 60_000;
/** Fewer active devices than this share of the usual, in a group of at least SITE_MIN devices, is silence. */
const SILENT_SHARE = 0.25;
const SITE_MIN = 8;

function fmt(x: number): string {
  return Number.isInteger(x) ? String(x) : x.toFixed(Math.abs(x) < 10 ? 2 : 1);
}

function pct(ratio: number): string {
  const p = Math.round((ratio - 1) * 100);
  return `${p >= 0 ? '+' : ''}${p} %`;
}

function minutes(ms: number): string {
  return `${Math.round(ms / 60_000)} min`;
}

const SEVERITY_RANK: Record<Severity, number> = { low: 0, medium: 1, high: 2 };
const REASON_CODE: Record<ExpectedChangeReason, number> = {
  firmware: EXPECT_FIRMWARE,
  onboarding: EXPECT_ONBOARDING,
  manual: EXPECT_MANUAL,
};
/** Findings that still count during an expected change: blatant ones, not a learned baseline's drift. */
const BLATANT: ReadonlySet<FindingKind> = new Set(['flood', 'auth', 'scan', 'beacon']);

/**
 * A peer group's activity: how many distinct devices were seen per 5-minute bucket, against the usual. A run of
 * buckets where almost nobody was seen is a site-wide silence (a network outage); the catch-up after it is then
 * judged as a backlog, not as each device's flood. Also counts, per hour, how many devices' rate rose at once.
 */
class SiteGroup {
  bucket = -1;
  active = 0;
  /** Distinct devices per bucket, per hour of the week: an office site is quiet every night, not silent. */
  private readonly usual = new Float64Array(48);
  private readonly seen = new Float64Array(48);
  silentSince = Number.NaN;
  outageId = 0;
  outageStart = Number.NaN;
  outageEnd = Number.NaN;
  hour = -1;
  hourScored = 0;
  hourRaised = 0;

  constructor(private readonly slotOf: (t: number) => number) {}

  /** Devices usually seen in a bucket at `t`'s hour of the week; 0 until that hour was seen (no judgement). */
  private expectedAt(t: number): number {
    let s = this.slotOf(t);
    if (s >= 24 && this.seen[s]! < 24) s -= 24;
    return this.seen[s]! >= 12 ? this.usual[s]! : 0;
  }

  advance(ts: number): void {
    const b = Math.floor(ts / BUCKET_MS);
    if (b <= this.bucket) return;
    if (this.bucket >= 0) {
      this.closeBucket(this.active, this.bucket * BUCKET_MS);
      // Buckets nobody spoke in: silence, if the group is big enough for that to mean something.
      const next = (this.bucket + 1) * BUCKET_MS;
      if (b - this.bucket > 1 && this.expectedAt(next) >= SITE_MIN && Number.isNaN(this.silentSince)) {
        this.startSilence(next);
      }
    }
    this.bucket = b;
    this.active = 0;
  }

  private startSilence(at: number): void {
    this.silentSince = at;
    this.outageId++;
  }

  private closeBucket(active: number, start: number): void {
    const expected = this.expectedAt(start);
    if (expected >= SITE_MIN && active < SILENT_SHARE * expected) {
      if (Number.isNaN(this.silentSince)) this.startSilence(start);
      return;
    }
    const s = this.slotOf(start);
    this.seen[s]!++;
    const a = Math.max(1 / 36, 1 / this.seen[s]!);
    this.usual[s]! += a * (active - this.usual[s]!);
  }

  /** A device of the group was seen in the current bucket (once per bucket). */
  touch(): void {
    this.active++;
    if (
      !Number.isNaN(this.silentSince) &&
      this.active >= SILENT_SHARE * this.expectedAt(this.bucket * BUCKET_MS)
    ) {
      const start = this.bucket * BUCKET_MS;
      if (start - this.silentSince >= MIN_OUTAGE_MS) {
        this.outageStart = this.silentSince;
        this.outageEnd = start;
      }
      this.silentSince = Number.NaN;
    }
  }

  /** The outage whose catch-up `t` falls in (or the silence going on), if any. */
  outageAt(t: number): { id: number; start: number; end: number } | undefined {
    if (!Number.isNaN(this.silentSince) && t - this.silentSince >= MIN_OUTAGE_MS)
      return { id: this.outageId, start: this.silentSince, end: t };
    if (Number.isNaN(this.outageEnd)) return undefined;
    const length = this.outageEnd - this.outageStart;
    const grace = Math.min(3 * HOUR_MS, Math.max(30 * 60_000, length));
    if (t >= this.outageStart && t <= this.outageEnd + grace)
      return { id: this.outageId, start: this.outageStart, end: this.outageEnd };
    return undefined;
  }

  /** One device's hour: whether its rate rose; true when most of the group's devices rose in the same hour. */
  hourShared(hour: number, raised: boolean): boolean {
    if (hour !== this.hour) {
      this.hour = hour;
      this.hourScored = 0;
      this.hourRaised = 0;
    }
    this.hourScored++;
    if (raised) this.hourRaised++;
    return this.hourScored >= SITE_MIN && this.hourRaised >= 0.5 * this.hourScored;
  }
}

/** Per-window context for scoring, computed once. */
/** The window being scored: its length, and its messages (`c`: those not delivered as a catch-up backlog). */
interface ScoreWindow {
  W: number;
  secs: number;
  all: number;
  catchup: number;
  c: number;
  slot: number;
}

interface Context {
  id: string;
  end: number;
  relearning: boolean;
  outage: { id: number; start: number; end: number } | undefined;
}

/**
 * The behaviour detector: per-device baselines at several time scales (per message and message kind, per
 * window, per hour and per hour of the week), cumulative checks on every counted signal, the site's
 * silences, and expected changes; windowed scoring with explanations. Pure and synchronous; the same object
 * serves the live path (events from the data path, `flush` on a timer) and `portcullis detect --replay`.
 */
export class Detector {
  private readonly devices = new Map<string, DeviceModel>();
  private readonly groups = new Map<string, SiteGroup>();
  private readonly site = new SiteGroup((t) => this.slotOf(t));
  private readonly zoneCache = new Map<number, number>();
  private zoneFormat: Intl.DateTimeFormat | undefined;
  readonly options: DetectorOptions;
  /** Called for every closed window; must not throw (the service catches for it). */
  onWindow: ((w: WindowSummary) => void) | undefined;

  constructor(options: Partial<DetectorOptions> = {}) {
    this.options = { ...DEFAULT_DETECTOR_OPTIONS, ...options };
  }

  get deviceCount(): number {
    return this.devices.size;
  }

  private groupOf(device: string): SiteGroup {
    if (!this.options.groupOf) return this.site;
    const name = this.options.groupOf(device);
    let g = this.groups.get(name);
    if (!g) {
      g = new SiteGroup((t) => this.slotOf(t));
      this.groups.set(name, g);
    }
    return g;
  }

  /** Feeds one event; returns the findings of any windows this event closed. */
  observe(e: DetectorEvent): Finding[] {
    let m = this.devices.get(e.device);
    const group = this.groupOf(e.device);
    if (!m) {
      m = DeviceModel.create(e.ts, this.options.windowMs);
      this.devices.set(e.device, m);
    }
    group.advance(e.ts);
    const b = Math.floor(e.ts / BUCKET_MS);
    if (m.v[F.siteBucket] !== b) {
      m.v[F.siteBucket] = b;
      group.touch();
    }
    const out = e.ts >= m.v[F.windowStart]! + this.options.windowMs ? this.advance(e.device, m, e.ts) : [];
    const v = m.v;
    const learning = e.ts - v[F.firstTs]! < this.options.learningMs;
    const quiet = learning || e.ts < v[F.relearnUntil]!;
    switch (e.kind) {
      case 'message': {
        v[F.wCount]!++;
        v[F.wBytes]! += e.bytes;
        v[F.hCount]!++;
        const last = v[F.lastMessageTs]!;
        // A backlog is a quick run of messages right after a silence, no longer than what the silence would
        // have held; the first message after the silence is the device's own, the rest are delivered late.
        let catchup = false;
        const since = Number.isNaN(last) ? Number.POSITIVE_INFINITY : e.ts - last;
        if (!Number.isNaN(last) && since > this.silenceMs(m, last))
          v[F.catchupLeft] = this.backlog(m, last, e.ts);
        else if (v[F.catchupLeft]! > 0 && since <= CATCHUP_GAP_MS) {
          v[F.catchupLeft]!--;
          v[F.wCatchup]!++;
          v[F.hCatchup]!++;
          catchup = true;
        } else v[F.catchupLeft] = 0;
        const outage = group.outageAt(e.ts);
        if (outage) {
          if (v[F.siteRef] !== outage.id) {
            v[F.siteRef] = outage.id;
            v[F.siteCount] = 0;
          }
          v[F.siteCount]!++;
        }
        v[F.lastMessageTs] = e.ts;
        this.observeKind(m, e, quiet, catchup);
        const h = fnv1a(e.resource);
        if (!m.has('resources', h)) {
          if (quiet || v[F.resourcesOverflowed] === 1) m.insert('resources', h);
          else if (!m.has('probedResources', h)) {
            m.insert('probedResources', h);
            this.novelty(m, F.novelRes, e.ts);
            m.wNewResources ??= [];
            if (m.wNewResources.length < 3) m.wNewResources.push(e.resource);
          }
        }
        break;
      }
      case 'connection': {
        const key = `${e.proto}:${e.dst}:${e.dport}`;
        const h = fnv1a(key);
        if (m.has('destinations', h)) break;
        if (quiet || v[F.destinationsOverflowed] === 1) {
          m.insert('destinations', h);
          break;
        }
        const j = this.probation(m, h);
        if (j >= 0) {
          this.contact(m, j, e.ts, key);
          break;
        }
        v[F.wNewDistinct]!++;
        this.novelty(m, F.novelDest, e.ts);
        m.wNew ??= [];
        if (m.wNew.length < 5 && !m.wNew.includes(key)) m.wNew.push(key);
        this.admit(m, h, e.ts);
        break;
      }
      case 'auth_failure':
        v[F.wAuth]!++;
        v[F.hAuth]!++;
        break;
      case 'policy_refusal':
        // The message itself was observed too; the refusal is a signal of its own (probing, a changed device).
        v[F.wRefused]!++;
        break;
    }
    return out;
  }

  /** Closes every window that ended by `now` (the live path calls this on a timer). */
  flush(now: number): Finding[] {
    const out: Finding[] = [];
    this.site.advance(now);
    for (const g of this.groups.values()) g.advance(now);
    for (const [id, m] of this.devices) {
      if (now >= m.v[F.windowStart]! + this.options.windowMs) out.push(...this.advance(id, m, now));
    }
    return out;
  }

  /**
   * Opens a re-learning window for a device whose behaviour is expected to change (a firmware update it was
   * told to fetch, re-onboarding): its cumulative checks restart, its message kinds learn fast, new
   * destinations and resources are learned, and until `now + durationMs` only blatant findings (flood,
   * credential guessing, scan, beacon) are reported — explained as happening inside the window.
   */
  expectChange(
    device: string,
    now: number,
    reason: ExpectedChangeReason,
    ref = 0,
    durationMs = this.options.relearnMs,
  ): boolean {
    const m = this.devices.get(device);
    if (!m) return false;
    const v = m.v;
    v[F.relearnUntil] = Math.max(v[F.relearnUntil]!, now + durationMs);
    v[F.relearnReason] = REASON_CODE[reason];
    v[F.relearnRef] = ref;
    v[F.rateCusum] = 0;
    v[F.hourCusum] = 0;
    for (let i = 0; i < MESSAGE_KINDS; i++) {
      const at = m.k(i);
      v[at + K.n] = Math.min(v[at + K.n]!, 20);
      v[at + K.gn] = Math.min(v[at + K.gn]!, 20);
      v[at + K.gapCusum] = 0;
      v[at + K.sizeCusum] = 0;
      v[at + K.hourSizeCusum] = 0;
    }
    return true;
  }

  /** What the device page shows: learning, re-learning (and why, until when) or monitored. */
  behaviour(device: string, now: number): BehaviourStatus {
    const m = this.devices.get(device);
    if (!m) return { state: 'unknown', until: null, because: null, messageKinds: 0 };
    const v = m.v;
    let kinds = 0;
    for (let i = 0; i < MESSAGE_KINDS; i++) if (v[m.k(i) + K.born]! > 0) kinds++;
    const learnedAt = v[F.firstTs]! + this.options.learningMs;
    if (now < learnedAt) return { state: 'learning', until: learnedAt, because: null, messageKinds: kinds };
    if (now < v[F.relearnUntil]!)
      return {
        state: 're-learning',
        until: v[F.relearnUntil]!,
        because: this.because(m),
        messageKinds: kinds,
      };
    return { state: 'monitored', until: null, because: null, messageKinds: kinds };
  }

  private because(m: DeviceModel): string {
    const r = m.v[F.relearnReason];
    const ref = m.v[F.relearnRef]!;
    if (r === EXPECT_FIRMWARE) return ref > 0 ? `firmware campaign ${ref}` : 'a firmware update';
    if (r === EXPECT_ONBOARDING) return 're-onboarding';
    return 'a person asked for it';
  }

  /** Every device's baseline, for persisting. */
  *exportStates(): IterableIterator<[string, Buffer]> {
    for (const [id, m] of this.devices) yield [id, m.toBytes()];
  }

  /** One device's baseline, for persisting; undefined for a device without one (never seen, or forgotten). */
  exportState(device: string): Buffer | undefined {
    return this.devices.get(device)?.toBytes();
  }

  /** Restores a persisted baseline; false (and nothing changed) if it is from another layout version. */
  importState(device: string, state: Buffer): boolean {
    const m = DeviceModel.fromBytes(state);
    if (!m) return false;
    this.devices.set(device, m);
    return true;
  }

  deviceIds(): IterableIterator<string> {
    return this.devices.keys();
  }

  /** Forgets a device (decommissioned, or a person reset its baseline). */
  forget(device: string): void {
    this.devices.delete(device);
  }

  /**
   * Scores one event against the device's baseline without learning from it (the per-event score; windows
   * are scored by `observe`). For a message: how unusual its size is for its kind, and whether its resource
   * is new; for a connection: whether its destination is new or suspicious. 0 while learning or unknown.
   */
  scoreEvent(e: DetectorEvent): { score: number; learning: boolean; reasons: string[] } {
    const m = this.devices.get(e.device);
    if (!m || e.ts - m.v[F.firstTs]! < this.options.learningMs)
      return { score: 0, learning: true, reasons: [] };
    const v = m.v;
    const reasons: string[] = [];
    let score = 0;
    if (e.kind === 'message') {
      const i = this.nearestKind(m, e.resource, e.contentFormat, Math.log(e.bytes + 1));
      if (i >= 0) {
        const at = m.k(i);
        const mu = v[at + K.lmean]!;
        const sd = Math.max(Math.sqrt(v[at + K.lvar]!), 0.05);
        const z = (Math.log(e.bytes + 1) - mu) / sd;
        score = Math.max(score, Math.abs(z));
        if (Math.abs(z) >= 4)
          reasons.push(
            `size ${e.bytes} bytes, expected ${fmt(Math.exp(mu) - 1)} (×${fmt(Math.exp(sd))} typical spread)`,
          );
      }
      if (v[F.resourcesOverflowed] !== 1 && !m.has('resources', fnv1a(e.resource))) {
        score = Math.max(score, 3);
        reasons.push(`new resource ${e.resource}`);
      }
    } else if (e.kind === 'connection') {
      const key = `${e.proto}:${e.dst}:${e.dport}`;
      const h = fnv1a(key);
      if (v[F.destinationsOverflowed] !== 1 && !m.has('destinations', h)) {
        const j = this.probation(m, h);
        const suspicious = j >= 0 && m.pv?.[m.p(j) + P.suspicious] === 1;
        score = suspicious ? 8 : 5;
        reasons.push(`${suspicious ? 'suspicious' : 'new'} destination ${key}`);
      }
    } else {
      score = 1;
      reasons.push('failed handshake');
    }
    return { score: Math.round(score * 100) / 100, learning: false, reasons };
  }

  /** Whether the device is still in its learning period at `now`. */
  isLearning(device: string, now: number): boolean {
    const m = this.devices.get(device);
    return !m || now - m.v[F.firstTs]! < this.options.learningMs;
  }

  // --- per event -------------------------------------------------------------------------------------------

  /** A silence longer than this (2.5 typical gaps at this hour, at least a minute) may end with a backlog. */
  private silenceMs(m: DeviceModel, ts: number): number {
    const perWindow = Math.max(m.v[F.rate]!, this.expected(m, this.slotOf(ts)).mean, 1e-3);
    return Math.max(60_000, (2.5 * this.options.windowMs) / perWindow);
  }

  /** Messages the device would have sent over [from, to) by its hour-of-week profile, ×1.5 and +5. */
  private backlog(m: DeviceModel, from: number, to: number): number {
    const perHour = HOUR_MS / this.options.windowMs;
    let expected = 0;
    let t = from;
    const stop = Math.min(to, from + 48 * HOUR_MS);
    while (t < stop) {
      const next = Math.min(stop, (Math.floor(t / HOUR_MS) + 1) * HOUR_MS);
      const e = this.expectedHour(m, this.slotOf(t), perHour);
      expected += (e.mean * (next - t)) / HOUR_MS;
      t = next;
    }
    return Math.min(5000, Math.ceil(1.5 * expected + 2));
  }

  private nearestKind(m: DeviceModel, resource: string, cf: number | undefined, x: number): number {
    const key = this.kindKey(resource, cf);
    const v = m.v;
    let best = -1;
    let bestD = Number.POSITIVE_INFINITY;
    let any = -1;
    let anyD = Number.POSITIVE_INFINITY;
    for (let i = 0; i < MESSAGE_KINDS; i++) {
      const at = m.k(i);
      if (v[at + K.born] === 0) continue;
      const d = Math.abs(x - v[at + K.lmean]!);
      if (v[at + K.key] === key && d < bestD) {
        best = i;
        bestD = d;
      }
      if (d < anyD) {
        any = i;
        anyD = d;
      }
    }
    return best >= 0 ? best : any;
  }

  private kindKey(resource: string, cf: number | undefined): number {
    return (fnv1a(resource) ^ Math.imul((cf ?? 0xffff) + 1, 0x9e3779b1)) >>> 0;
  }

  /** The message's kind (its resource and format, then the nearest size cluster); learns its size and rhythm. */
  private observeKind(
    m: DeviceModel,
    e: Extract<DetectorEvent, { kind: 'message' }>,
    quiet: boolean,
    catchup: boolean,
  ): void {
    const v = m.v;
    const x = Math.log(e.bytes + 1);
    const key = this.kindKey(e.resource, e.contentFormat);
    let best = -1;
    let bestD = Number.POSITIVE_INFINITY;
    let free = -1;
    let any = -1;
    let anyD = Number.POSITIVE_INFINITY;
    for (let i = 0; i < MESSAGE_KINDS; i++) {
      const at = m.k(i);
      if (v[at + K.born] === 0) {
        if (free < 0) free = i;
        continue;
      }
      const d = Math.abs(x - v[at + K.lmean]!);
      if (v[at + K.key] === key && d < bestD) {
        best = i;
        bestD = d;
      }
      if (d < anyD) {
        any = i;
        anyD = d;
      }
    }
    let i = best;
    if (best >= 0 && quiet) {
      // New size clusters are learned only while (re-)learning; afterwards an odd size is scored against the
      // nearest kind, or a single outlier would start a kind that splits the old one's messages in two.
      const at = m.k(best);
      const tol = v[at + K.n]! >= 10 ? Math.max(T.newKindLog, 4 * Math.sqrt(v[at + K.lvar]!)) : T.newKindLog;
      if (bestD > tol && free >= 0) i = -1;
    }
    if (i < 0) {
      if (free >= 0) {
        i = free;
        const at = m.k(i);
        v[at + K.key] = key;
        v[at + K.lmean] = x;
        // (A kind is scored only once it has learned T.youngKind messages: a new kind first shows what it is.)
        v[at + K.born] = Math.max(e.ts, 1);
        v[at + K.lastTs] = Number.NaN;
      } else i = best >= 0 ? best : any;
    }
    const at = m.k(i);
    v[at + K.wN]!++;
    v[at + K.wLsum]! += x;
    v[at + K.hN]!++;
    v[at + K.hLsum]! += x;
    const scored = !quiet && v[at + K.n]! >= T.youngKind;
    const lastTs = v[at + K.lastTs]!;
    if (!catchup && !Number.isNaN(lastTs) && e.ts >= lastTs && e.ts - lastTs <= MAX_RHYTHM_GAP_MS) {
      const g = e.ts - lastTs;
      const gm = v[at + K.gmean]!;
      if (scored && v[at + K.gn]! > 10) {
        const z = (gm - g) / Math.max(Math.sqrt(v[at + K.gvar]!), 0.05 * gm, 1);
        v[at + K.gapCusum] = Math.max(0, v[at + K.gapCusum]! + Math.min(z, T.cusumCap) - T.cusumK);
      }
      const slow = this.alerting(m, 'rate', e.ts) ? ALERTING_SLOWDOWN : 1;
      ewmaRobust(v, at + K.gmean, ALPHA_GAP * slow, g, CLIP, 0.05 * gm + 1);
    }
    if (!catchup) v[at + K.lastTs] = e.ts;
    const slow = this.alerting(m, 'size', e.ts) ? ALERTING_SLOWDOWN : 1;
    ewmaRobust(v, at + K.lmean, (quiet ? 1 / 50 : ALPHA_MESSAGE) * slow, x, CLIP, 0.02);
  }

  private novelty(m: DeviceModel, at: number, ts: number): void {
    const v = m.v;
    const dt = Math.max(0, ts - v[at + 1]!);
    v[at] = v[at]! * 0.5 ** (dt / NOVELTY_HALF_LIFE) + 1;
    v[at + 1] = ts;
  }

  private decayed(m: DeviceModel, at: number, ts: number): number {
    return m.v[at]! * 0.5 ** (Math.max(0, ts - m.v[at + 1]!) / NOVELTY_HALF_LIFE);
  }

  private probation(m: DeviceModel, h: number): number {
    const pv = m.pv;
    if (!pv) return -1;
    for (let j = 0; j < PROBATION; j++) {
      const at = m.p(j);
      if (pv[at + P.contacts]! > 0 && pv[at + P.hash] === h) return j;
    }
    return -1;
  }

  /**
   * A destination first seen after learning goes on probation (replacing the oldest entry), not into the
   * known set: a slow scan cannot fill the known set and silence news, and repeated contact stays watched.
   */
  private admit(m: DeviceModel, h: number, ts: number): void {
    const v = m.probationRecords();
    let j = 0;
    let oldest = Number.POSITIVE_INFINITY;
    for (let i = 0; i < PROBATION; i++) {
      const at = m.p(i);
      if (v[at + P.contacts] === 0) {
        j = i;
        break;
      }
      // Suspicious entries are kept over plain ones.
      const age = v[at + P.last]! + (v[at + P.suspicious] === 1 ? 7 * DAY_MS : 0);
      if (age < oldest) {
        oldest = age;
        j = i;
      }
    }
    const at = m.p(j);
    v[at + P.hash] = h;
    v[at + P.first] = ts;
    v[at + P.last] = ts;
    v[at + P.contacts] = 1;
    v[at + P.gmean] = 0;
    v[at + P.gvar] = 0;
    // First seen while the device was already alerting (for anything else): it stays suspicious.
    let alerting = false;
    for (const k of KINDS) if (k !== 'new-destination' && this.alerting(m, k, ts)) alerting = true;
    v[at + P.suspicious] = alerting || this.windowLooksBad(m) ? 1 : 0;
  }

  /** Cheap check at admission time: the open window already holds failed handshakes or a scan's new destinations. */
  private windowLooksBad(m: DeviceModel): boolean {
    return m.v[F.wAuth]! >= T.authMin || m.v[F.wNewDistinct]! >= T.scanDistinct;
  }

  /** Another contact with a destination on probation: suspicious ones are reported, regular ones are beacons. */
  private contact(m: DeviceModel, j: number, ts: number, key: string): void {
    const v = m.probationRecords();
    const at = m.p(j);
    const n = v[at + P.contacts]! + 1;
    const g = ts - v[at + P.last]!;
    v[at + P.contacts] = n;
    v[at + P.last] = ts;
    if (g <= 0) return;
    // Gap statistics over the contacts (running mean/variance, the first gap included).
    const k = n - 1;
    const d = g - v[at + P.gmean]!;
    v[at + P.gmean]! += d / k;
    v[at + P.gvar] = v[at + P.gvar]! + (d * (g - v[at + P.gmean]!) - v[at + P.gvar]!) / k;
    const cv = Math.sqrt(Math.max(0, v[at + P.gvar]!)) / Math.max(v[at + P.gmean]!, 1);
    if (v[at + P.suspicious] === 1 || (n >= T.beaconContacts && cv <= T.beaconCv)) {
      m.wSuspect ??= [];
      if (m.wSuspect.length < 3 && !m.wSuspect.includes(key)) m.wSuspect.push(key);
    }
  }

  /** Whether `kind` was raised (reported or held back) within the cooldown. */
  private alerting(m: DeviceModel, kind: FindingKind, now: number): boolean {
    return now - m.v[LAST_RAISED + KIND_INDEX.get(kind)!]! < this.options.cooldownMs;
  }

  // --- per window and hour -------------------------------------------------------------------------------

  /** Closes the open window (and the hour, when the window ends one), then skips idle windows up to `ts`. */
  private advance(id: string, m: DeviceModel, ts: number): Finding[] {
    const W = this.options.windowMs;
    const v = m.v;
    const findings: Finding[] = [];
    const finding = this.closeWindow(id, m);
    if (finding) findings.push(finding);
    const nextStart = v[F.windowStart]! + W;
    const idle = Math.max(0, Math.floor((ts - nextStart) / W));
    if (idle > 0) {
      const n = Math.min(idle, MAX_IDLE_WINDOWS);
      for (let i = 0; i < n; i++) {
        const start = nextStart + i * W;
        const end = start + W;
        this.learnCount(m, start, 0, 0, this.alerting(m, 'rate', end));
        if (Math.floor(end / HOUR_MS) > v[F.hourIndex]!) {
          // An hour that ended in silence is scored like any other (most hours of a bursty device do).
          const scored = end - v[F.firstTs]! > this.options.learningMs && i < 48 * 60;
          const ctx: Context = {
            id,
            end,
            relearning: end <= v[F.relearnUntil]!,
            outage: this.groupOf(id).outageAt(end),
          };
          let reasons = this.closeHour(id, m, end, scored ? ctx : null);
          if (ctx.relearning) reasons = reasons.filter((r) => BLATANT.has(r.feature));
          const f = reasons.length > 0 ? this.report(m, reasons, ctx, start) : null;
          if (f) findings.push(f);
        }
      }
      v[F.rateCusum] = Math.max(0, v[F.rateCusum]! - n * T.cusumK);
      v[F.authCusum] = Math.max(0, v[F.authCusum]! - n * T.authK);
      v[F.peak] = v[F.peak]! * PEAK_DECAY ** n;
    }
    v[F.windowStart] = nextStart + idle * W;
    v[F.hourIndex] = Math.floor(v[F.windowStart]! / HOUR_MS);
    return findings;
  }

  /** Minutes east of UTC at `t`: the time zone's (DST included, cached per hour) or the fixed offset. */
  private offsetAt(t: number): number {
    const zone = this.options.timeZone;
    if (!zone) return this.options.utcOffsetMinutes;
    const h = Math.floor(t / HOUR_MS);
    let o = this.zoneCache.get(h);
    if (o === undefined) {
      this.zoneFormat ??= new Intl.DateTimeFormat('en-US', {
        timeZone: zone,
        hourCycle: 'h23',
        year: 'numeric',
        month: 'numeric',
        day: 'numeric',
        hour: 'numeric',
        minute: 'numeric',
      });
      const p: Record<string, number> = {};
      for (const x of this.zoneFormat.formatToParts(h * HOUR_MS)) p[x.type] = Number(x.value);
      o = Math.round((Date.UTC(p.year!, p.month! - 1, p.day!, p.hour!, p.minute!) - h * HOUR_MS) / 60_000);
      if (this.zoneCache.size > 4096) this.zoneCache.clear();
      this.zoneCache.set(h, o);
    }
    return o;
  }

  /** Hour-of-day slot: 0-23 weekdays, 24-47 weekends, in the site's local time. */
  private slotOf(t: number): number {
    const local = t + this.offsetAt(t) * 60_000;
    const day = Math.floor(local / DAY_MS);
    const hour = Math.floor((local - day * DAY_MS) / HOUR_MS);
    const weekday = (((day + 4) % 7) + 7) % 7; // 1970-01-01 was a Thursday; 0 = Sunday
    return weekday === 0 || weekday === 6 ? 24 + hour : hour;
  }

  /** Expected messages per window in a slot (weekend hours fall back to weekdays until seen twice). */
  private expected(m: DeviceModel, slot: number): { mean: number; variance: number; evidence: number } {
    const perHour = HOUR_MS / this.options.windowMs;
    let s = slot;
    if (s >= 24 && m.prof[96 + s]! < 2 * perHour) s -= 24;
    const evidence = m.prof[96 + s]!;
    if (evidence < perHour / 2) return { mean: m.v[F.rate]!, variance: m.v[F.rate + 1]!, evidence };
    return { mean: m.prof[s]!, variance: m.prof[48 + s]!, evidence };
  }

  /** Expected messages per hour in a slot: the same hour on other days. */
  private expectedHour(
    m: DeviceModel,
    slot: number,
    perHour: number,
  ): { mean: number; variance: number; evidence: number; own: boolean } {
    let s = slot;
    if (s >= 24 && m.prof[HOUR_BASE + 96 + s]! < 2) s -= 24;
    const evidence = m.prof[HOUR_BASE + 96 + s]!;
    if (evidence < 1) {
      const w = this.expected(m, slot);
      return { mean: w.mean * perHour, variance: w.variance * perHour, evidence: 0, own: false };
    }
    return { mean: m.prof[HOUR_BASE + s]!, variance: m.prof[HOUR_BASE + 48 + s]!, evidence, own: s === slot };
  }

  /**
   * One window's message count into the overall and the hour-of-day baselines. Not clipped: counts per window
   * are heavy-tailed on bursty devices, and clipping them would understate their spread; instead a window that
   * raised a rate finding (or came while the rate was alerting) is learned at a tenth of the pace.
   */
  private learnCount(
    m: DeviceModel,
    windowStart: number,
    count: number,
    auth: number,
    alerting: boolean,
    refused = 0,
  ): void {
    const v = m.v;
    const slow = alerting ? ALERTING_SLOWDOWN : 1;
    ewmaUpdate(v, F.rate, ALPHA_WINDOW * slow, count);
    ewmaUpdate(v, F.auth, ALPHA_WINDOW * slow, auth);
    ewmaUpdate(v, F.refused, ALPHA_WINDOW * slow, refused);
    const s = this.slotOf(windowStart);
    const n = m.prof[96 + s]! + 1;
    m.prof[96 + s] = n;
    const a = Math.max(ALPHA_SLOT, 1 / n) * slow;
    const mu = m.prof[s]!;
    const d = count - mu;
    m.prof[s] = mu + a * d;
    m.prof[48 + s] = (1 - a) * (m.prof[48 + s]! + a * d * d);
  }

  private closeWindow(id: string, m: DeviceModel): Finding | null {
    const v = m.v;
    const W = this.options.windowMs;
    const start = v[F.windowStart]!;
    const end = start + W;
    const learning = end - v[F.firstTs]! <= this.options.learningMs;
    const ctx: Context = {
      id,
      end,
      relearning: end <= v[F.relearnUntil]!,
      outage: this.groupOf(id).outageAt(end),
    };
    let reasons: Reason[] = learning ? [] : this.score(m, ctx);
    const crossesHour = Math.floor(end / HOUR_MS) > v[F.hourIndex]!;
    if (crossesHour) {
      const hourReasons = this.closeHour(id, m, end, learning ? null : ctx);
      if (hourReasons.length > 0) reasons = reasons.concat(hourReasons);
    }
    if (ctx.relearning) reasons = reasons.filter((r) => BLATANT.has(r.feature));
    this.onWindow?.({
      device: id,
      windowStart: start,
      messages: v[F.wCount]!,
      bytes: v[F.wBytes]!,
      authFailures: v[F.wAuth]!,
      score: reasons.length > 0 ? Math.max(...reasons.map((r) => r.score)) : 0,
    });
    for (const r of reasons) v[LAST_RAISED + KIND_INDEX.get(r.feature)!] = end;
    const rateRaised = reasons.some((r) => r.feature === 'rate' || r.feature === 'flood');
    // Learn from every window, robustly; a window that raised a rate finding is learned at a tenth of the
    // pace (and never as the busiest window lately), so a recurring benign burst is learned over days while a
    // sustained attack cannot teach the baseline in the hours it takes to be reported.
    const c = v[F.wCount]! - v[F.wCatchup]!;
    this.learnCount(m, start, c, v[F.wAuth]!, rateRaised || this.alerting(m, 'rate', end), v[F.wRefused]!);
    if (!rateRaised) v[F.peak] = Math.max(c, v[F.peak]! * PEAK_DECAY);
    // The busiest window at this hour of the week, from alerting windows too but capped at twice the flood
    // threshold: a nightly backup is judged against the last nights' after it recurs, a flood stays a flood.
    const slot = this.slotOf(start);
    const learnable = rateRaised ? Math.min(c, 2 * m.floodAt) : c;
    m.prof[HOUR_BASE + 144 + slot] = Math.max(m.prof[HOUR_BASE + 144 + slot]! * SLOT_PEAK_DECAY, learnable);
    if (ctx.relearning) {
      // Nothing accumulated inside an expected change counts after it: the new behaviour is the baseline.
      v[F.rateCusum] = 0;
      v[F.hourCusum] = 0;
      for (let i = 0; i < MESSAGE_KINDS; i++) {
        const at = m.k(i);
        v[at + K.sizeCusum] = 0;
        v[at + K.hourSizeCusum] = 0;
        v[at + K.gapCusum] = 0;
      }
    }
    m.resetWindow();
    return this.report(m, reasons, ctx, start);
  }

  /** The reasons not held back by the cooldown, as one finding (explained in context), or null. */
  private report(m: DeviceModel, reasons: Reason[], ctx: Context, start: number): Finding | null {
    const v = m.v;
    const end = ctx.end;
    for (const r of reasons) v[LAST_RAISED + KIND_INDEX.get(r.feature)!] = end;
    const reported = reasons.filter((r) => {
      const k = KIND_INDEX.get(r.feature)!;
      const rank = SEVERITY_RANK[r.severity];
      // Within the cooldown only a worse finding of the kind passes (one new resource, then probing).
      if (end - v[F.lastAlert + k]! < this.options.cooldownMs && rank <= v[LAST_SEVERITY + k]!) return false;
      v[F.lastAlert + k] = end;
      v[LAST_SEVERITY + k] = rank;
      return true;
    });
    if (reported.length === 0) return null;
    const note = this.note(m, ctx);
    if (note) for (const r of reported) r.text += note;
    const top = reported.reduce((a, b) =>
      SEVERITY_RANK[b.severity] > SEVERITY_RANK[a.severity] ||
      (b.severity === a.severity && b.score > a.score)
        ? b
        : a,
    );
    return {
      ts: end,
      windowStart: start,
      device: ctx.id,
      score: Math.round(Math.max(...reported.map((r) => r.score)) * 100) / 100,
      severity: top.severity,
      reasons: reported,
    };
  }

  /** What the explanation says about context: a re-learning window, a site-wide catch-up. */
  private note(m: DeviceModel, ctx: Context): string {
    if (ctx.relearning)
      return ` (inside the re-learning window after ${this.because(m)}, until ${new Date(m.v[F.relearnUntil]!).toISOString()})`;
    if (ctx.outage)
      return ` (while the site catches up after a ${minutes(ctx.outage.end - ctx.outage.start)} site-wide silence)`;
    return '';
  }

  /** The hour that `end` closes: hourly rate, per-kind size and failed handshakes against the same hour on other days. */
  private closeHour(id: string, m: DeviceModel, end: number, ctx: Context | null): Reason[] {
    const v = m.v;
    const perHour = HOUR_MS / this.options.windowMs;
    const hourStart = v[F.hourIndex]! * HOUR_MS;
    const slot = this.slotOf(hourStart);
    const count = v[F.hCount]! - v[F.hCatchup]!;
    const own = this.expectedHour(m, slot, perHour);
    // The busier neighbouring hour counts too (as per window): a schedule that moves by an hour is not news.
    const base = slot >= 24 ? 24 : 0;
    const before = this.expectedHour(m, base + ((slot - base + 23) % 24), perHour);
    const after = this.expectedHour(m, base + ((slot - base + 1) % 24), perHour);
    const nb = before.mean > after.mean ? before : after;
    const profile = nb.mean > own.mean ? { ...nb, own: own.own } : own;
    // The same hour on other days, scaled by how the last days ran against their profile: a device whose
    // rate drifts is followed within days, while one hour — or six — barely moves the level.
    const level = Math.exp(v[F.level]!);
    const e = { mean: profile.mean * level, variance: profile.variance * level * level };
    const reasons: Reason[] = [];
    const dispersion = Math.max(1, v[F.rate + 1]! / Math.max(v[F.rate]!, 1e-3));
    const sd = Math.sqrt(Math.max(e.variance, dispersion * e.mean, e.mean, (0.15 * e.mean) ** 2, 1));
    // Counts of bursty devices are heavy-tailed: compared in the square-root domain (variance-stabilised for
    // over-dispersed counts), and never more sharply than a 20 % change allows.
    const dz = Math.max(dispersion, e.variance / Math.max(e.mean, 1), 1);
    const z = Math.min(
      (2 * (Math.sqrt(count) - Math.sqrt(e.mean))) / Math.sqrt(dz),
      (count - e.mean) / Math.max(0.2 * e.mean, 1),
    );
    if (ctx) {
      const shared = this.groupOf(id).hourShared(v[F.hourIndex]!, z >= 3);
      if (!shared && !ctx.outage) {
        const s = Math.max(0, v[F.hourCusum]! + Math.min(z, T.hourCap) - T.hourK);
        v[F.hourCusum] = s;
        if (s >= T.hourH) {
          v[F.hourCusum] = 0;
          reasons.push({
            feature: 'rate',
            severity: 'medium',
            score: s,
            observed: `${count} messages in the hour to ${new Date(end).toISOString().slice(11, 16)} UTC, raised for hours (CUSUM ${fmt(s)})`,
            expected: `${fmt(e.mean)} ± ${fmt(sd)} per hour at this hour`,
            text: `sustained higher message rate over hours: ${count} messages in the last hour (${fmt(count / Math.max(e.mean, 1))}× normal), expected ${fmt(e.mean)} ± ${fmt(sd)} at this hour, raised for several hours (CUSUM ${fmt(s)})`,
          });
        }
      }
      this.hourSizeReasons(m, reasons);
      this.hourAuthReason(m, ctx, perHour, reasons);
    }
    this.learnHour(m, end, slot, count, profile, level, dispersion);
    m.resetHour();
    v[F.hCatchup] = 0;
    v[F.hourIndex] = Math.floor(end / HOUR_MS);
    return reasons;
  }

  /** Per message kind: the hour's mean size against the kind's (a creep hides from a per-window test). */
  private hourSizeReasons(m: DeviceModel, reasons: Reason[]): void {
    const v = m.v;
    for (let i = 0; i < MESSAGE_KINDS; i++) {
      const at = m.k(i);
      const n = v[at + K.hN]!;
      if (v[at + K.born] === 0 || n < 3 || v[at + K.n]! < T.youngKind) continue;
      const mu = v[at + K.lmean]!;
      const mean = v[at + K.hLsum]! / n;
      const zb = (mean - mu) / Math.sqrt(v[at + K.lvar]! / n + 0.05 ** 2);
      const s = Math.max(0, v[at + K.hourSizeCusum]! + Math.min(zb, T.hourSizeCap) - T.hourSizeK);
      v[at + K.hourSizeCusum] = s;
      if (s >= T.hourSizeH && !reasons.some((r) => r.feature === 'size')) {
        v[at + K.hourSizeCusum] = 0;
        const ratio = Math.exp(mean - mu);
        reasons.push({
          feature: 'size',
          severity: ratio >= 3 ? 'high' : 'medium',
          score: s,
          observed: `${fmt(Math.exp(mean) - 1)} bytes per message over ${n} messages in the last hour (${pct(ratio)})`,
          expected: `${fmt(Math.exp(mu) - 1)} bytes for this kind`,
          text: `messages of one kind grew for hours: ${fmt(Math.exp(mean) - 1)} bytes on average over ${n} in the last hour, ${pct(ratio)} against the ${fmt(Math.exp(mu) - 1)} bytes this kind normally carries (CUSUM ${fmt(s)})`,
        });
      }
    }
  }

  /** Failed handshakes per hour: guessing slower than any window notices. */
  private hourAuthReason(m: DeviceModel, ctx: Context, perHour: number, reasons: Reason[]): void {
    const v = m.v;
    const a = v[F.hAuth]!;
    const muA = v[F.auth]! * perHour;
    const sA = Math.max(0, v[F.authHourCusum]! + a - (muA + T.authHourK));
    v[F.authHourCusum] = ctx.outage ? Math.min(sA, T.authHourH - 1) : sA;
    if (v[F.authHourCusum]! >= T.authHourH) {
      v[F.authHourCusum] = 0;
      reasons.push({
        feature: 'auth',
        severity: 'high',
        score: sA,
        observed: `${a} failed handshakes in the last hour`,
        expected: `${fmt(muA)} per hour`,
        text: `slow credential guessing: ${a} failed DTLS handshakes in the last hour, expected ${fmt(muA)}, and more than normal for hours (CUSUM ${fmt(sA)})`,
      });
    }
  }

  /** Learn the hour into its slot of the profile and the level, robustly, and slowly while the rate is alerting. */
  private learnHour(
    m: DeviceModel,
    end: number,
    slot: number,
    count: number,
    profile: { mean: number; own: boolean },
    level: number,
    dispersion: number,
  ): void {
    const v = m.v;
    const slow = this.alerting(m, 'rate', end) ? ALERTING_SLOWDOWN : 1;
    // Only an hour judged by its own profile moves the level (a weekend hour read from the weekday profile
    // would teach the level that Monday is quiet).
    if (profile.own && profile.mean + count >= 2) {
      const r = Math.log((count + 1) / (profile.mean * level + 1));
      // Clipped: a holiday's silent hours or an attack's busy ones move the level by little.
      v[F.level]! += ALPHA_LEVEL * slow * Math.max(-0.25, Math.min(0.25, r));
      v[F.level] = Math.max(-1, Math.min(1, v[F.level]!));
    }
    const n = m.prof[HOUR_BASE + 96 + slot]! + 1;
    m.prof[HOUR_BASE + 96 + slot] = n;
    const a = Math.max(ALPHA_HOUR, 1 / n) * slow;
    const mu = m.prof[HOUR_BASE + slot]!;
    let x = count / level;
    if (n > 3) {
      // Clipped both ways: an attack hour cannot raise the profile much, nor a holiday sink it.
      const spread = CLIP * Math.sqrt(Math.max(m.prof[HOUR_BASE + 48 + slot]!, dispersion * mu, mu, 1));
      x = Math.max(mu - spread, Math.min(mu + spread, x));
    }
    const d = x - mu;
    m.prof[HOUR_BASE + slot] = mu + a * d;
    m.prof[HOUR_BASE + 48 + slot] = (1 - a) * (m.prof[HOUR_BASE + 48 + slot]! + a * d * d);
  }

  private score(m: DeviceModel, ctx: Context): Reason[] {
    const v = m.v;
    const all = v[F.wCount]!;
    const catchup = v[F.wCatchup]!;
    const W = this.options.windowMs;
    const w: ScoreWindow = {
      W,
      secs: W / 1000,
      all,
      catchup,
      c: all - catchup,
      slot: this.slotOf(v[F.windowStart]!),
    };
    const reasons: Reason[] = [];
    this.scoreRate(m, ctx, w, reasons);
    this.scoreKinds(m, w, reasons);
    this.scoreAuth(m, ctx, w, reasons);
    this.scoreRefused(m, ctx, w, reasons);
    this.scoreDestinations(m, ctx, w, reasons);
    this.scoreResources(m, ctx, reasons);
    this.scoreOffHours(m, w, reasons);
    return reasons;
  }

  /** Overall rate: a flood at once, or a sustained rise (CUSUM); during a site-wide catch-up, the backlog. */
  private scoreRate(m: DeviceModel, ctx: Context, w: ScoreWindow, reasons: Reason[]): void {
    const v = m.v;
    const { W, secs, catchup, c, slot } = w;
    const exp = this.expected(m, slot);
    // The busier neighbouring hour counts too: a schedule that moves by an hour (DST, a late start) is not a
    // sustained rate increase.
    const base = slot >= 24 ? 24 : 0;
    const prev = this.expected(m, base + ((slot - base + 23) % 24));
    const next = this.expected(m, base + ((slot - base + 1) % 24));
    const near = prev.mean > next.mean ? prev : next;
    const use = near.mean > exp.mean ? near : exp;
    const mu = use.mean;
    const sd = Math.sqrt(Math.max(use.variance, 0.25 * mu, 0.25));
    const z = (c - mu) / sd;
    const peak = v[F.peak]!;
    // During a site-wide catch-up, a device is judged by its backlog: what it sent since the silence began,
    // against what it would have sent over that time (its peers went silent too; they all catch up at once).
    let backlogOk = false;
    if (ctx.outage && v[F.siteRef] === ctx.outage.id) {
      const span = (ctx.end - ctx.outage.start) / W;
      backlogOk = v[F.siteCount]! <= 2 * Math.max(mu, v[F.rate]!) * span + T.floodExtra * 2;
    }
    const slotPeak = Math.max(
      m.prof[HOUR_BASE + 144 + slot]!,
      m.prof[HOUR_BASE + 144 + this.slotOf(v[F.windowStart]! - HOUR_MS)]!,
    );
    const floodAt = Math.max(
      T.floodRatio * mu,
      mu + T.floodExtra,
      T.peakFactor * Math.max(peak, slotPeak) + T.floodExtra,
    );
    m.floodAt = floodAt;
    if (z >= T.floodZ && c >= floodAt && !backlogOk) {
      const backlog = catchup > 0 ? `, besides ${catchup} delivered as a backlog after a silence` : '';
      reasons.push({
        feature: 'flood',
        severity: c >= 10 * mu + 20 ? 'high' : 'medium',
        score: z,
        observed: `${c} messages in ${secs} s${backlog}`,
        expected: `${fmt(mu)} ± ${fmt(sd)}, busiest lately ${fmt(peak)}`,
        text: `message flood: ${c} messages in ${secs} s${backlog}, expected ${fmt(mu)} ± ${fmt(sd)} at this hour and at most ${fmt(peak)} lately`,
      });
    } else if (!backlogOk) {
      const s = Math.max(0, v[F.rateCusum]! + Math.min(z, T.cusumCap) - T.cusumK);
      v[F.rateCusum] = s;
      if (s >= T.rateCusumH) {
        v[F.rateCusum] = 0;
        reasons.push({
          feature: 'rate',
          severity: 'medium',
          score: s,
          observed: `${c} messages in ${secs} s, raised for a while (CUSUM ${fmt(s)})`,
          expected: `${fmt(mu)} ± ${fmt(sd)}`,
          text: `sustained higher message rate: ${c} in the last ${secs} s and above normal for several windows, expected ${fmt(mu)} ± ${fmt(sd)} per window (CUSUM ${fmt(s)})`,
        });
      }
    }
  }

  /** Per message kind: rhythm (messages faster than the kind's period) and size. */
  private scoreKinds(m: DeviceModel, w: ScoreWindow, reasons: Reason[]): void {
    const v = m.v;
    const { secs, c } = w;
    let sizeDone = false;
    for (let i = 0; i < MESSAGE_KINDS; i++) {
      const at = m.k(i);
      if (v[at + K.born] === 0) continue;
      const gm = v[at + K.gmean]!;
      if (reasons.some((r) => r.feature === 'flood')) v[at + K.gapCusum] = 0;
      if (v[at + K.gapCusum]! >= T.gapCusumH && !reasons.some((r) => r.feature === 'rate')) {
        const s = v[at + K.gapCusum]!;
        v[at + K.gapCusum] = 0;
        reasons.push({
          feature: 'rate',
          severity: 'medium',
          score: s,
          observed: `${c} messages in ${secs} s, faster than the kind's period for a while (CUSUM ${fmt(s)})`,
          expected: `one every ${fmt(gm / 1000)} s ± ${fmt(Math.sqrt(v[at + K.gvar]!) / 1000)}`,
          text: `messages come faster than the device's rhythm: ${c} in the last ${secs} s, normally one every ${fmt(gm / 1000)} s ± ${fmt(Math.sqrt(v[at + K.gvar]!) / 1000)} (CUSUM ${fmt(s)})`,
        });
      }
      const n = v[at + K.wN]!;
      if (n === 0 || v[at + K.n]! < T.youngKind || sizeDone) continue;
      const lmu = v[at + K.lmean]!;
      const mean = v[at + K.wLsum]! / n;
      const zb = (mean - lmu) / Math.sqrt(v[at + K.lvar]! / n + 0.02 ** 2);
      const ratio = Math.exp(mean - lmu);
      const bytes = Math.exp(mean) - 1;
      const normal = Math.exp(lmu) - 1;
      // One message alone proves little unless it is far off (an outlier between two kinds is not a change).
      if (zb >= T.sizeZ && ratio >= T.sizeRatio && (n >= 2 || ratio >= 3)) {
        sizeDone = true;
        v[at + K.sizeCusum] = 0;
        reasons.push({
          feature: 'size',
          severity: ratio >= 3 ? 'high' : 'medium',
          score: zb,
          observed: `${fmt(bytes)} bytes per message (${pct(ratio)})`,
          expected: `${fmt(normal)} bytes for this kind`,
          text: `larger messages: ${fmt(bytes)} bytes on average over ${n}, ${pct(ratio)} against the ${fmt(normal)} bytes this kind of message normally carries`,
        });
        continue;
      }
      const s = Math.max(0, v[at + K.sizeCusum]! + Math.min(zb, T.cusumCap) - T.cusumK);
      v[at + K.sizeCusum] = s;
      if (s >= T.sizeCusumH) {
        sizeDone = true;
        v[at + K.sizeCusum] = 0;
        reasons.push({
          feature: 'size',
          severity: 'medium',
          score: s,
          observed: `${fmt(bytes)} bytes per message, raised for a while (CUSUM ${fmt(s)})`,
          expected: `${fmt(normal)} bytes for this kind`,
          text: `messages persistently larger than normal: ${fmt(bytes)} bytes now (${pct(ratio)}), expected ${fmt(normal)} for this kind of message (CUSUM ${fmt(s)})`,
        });
      }
    }
  }

  /** Failed handshakes: many at once, or a few per window for a long time. */
  private scoreAuth(m: DeviceModel, ctx: Context, w: ScoreWindow, reasons: Reason[]): void {
    const v = m.v;
    const { secs } = w;
    const a = v[F.wAuth]!;
    const muA = v[F.auth]!;
    const sdA = Math.sqrt(Math.max(v[F.auth + 1]!, muA, 0.2));
    if (a >= T.authMin && (a - muA) / sdA >= T.authZ) {
      v[F.authCusum] = 0;
      reasons.push({
        feature: 'auth',
        severity: 'high',
        score: (a - muA) / sdA,
        observed: `${a} failed handshakes in ${secs} s`,
        expected: `${fmt(muA)} ± ${fmt(sdA)}`,
        text: `credential guessing: ${a} failed DTLS handshakes in ${secs} s, expected ${fmt(muA)}`,
      });
    } else {
      let s = Math.max(0, v[F.authCusum]! + a - (muA + T.authK));
      // Reconnecting after a site-wide silence fails now and then; that alone is not guessing.
      if (ctx.outage) s = Math.min(s, T.authH - 1);
      v[F.authCusum] = s;
      if (s >= T.authH) {
        v[F.authCusum] = 0;
        reasons.push({
          feature: 'auth',
          severity: 'high',
          score: s,
          observed: `${a} failed handshakes in ${secs} s, above normal for a while (CUSUM ${fmt(s)})`,
          expected: `${fmt(muA)} per window`,
          text: `low-rate credential guessing: ${a} failed DTLS handshakes in the last ${secs} s, and failed handshakes above the usual ${fmt(muA)} per window for a while (${fmt(s)} more than allowed, CUSUM)`,
        });
      }
    }
  }

  /** Messages refused by the device's policy profile: many at once, or more than usual for a while. */
  private scoreRefused(m: DeviceModel, ctx: Context, w: ScoreWindow, reasons: Reason[]): void {
    const v = m.v;
    const { secs } = w;
    const rf = v[F.wRefused]!;
    const muR = v[F.refused]!;
    const sdR = Math.sqrt(Math.max(v[F.refused + 1]!, muR, 0.2));
    const zR = (rf - muR) / sdR;
    let sR = Math.max(0, v[F.refusedCusum]! + rf - (muR + T.refusedK));
    if (ctx.outage) sR = Math.min(sR, T.refusedH - 1);
    v[F.refusedCusum] = sR;
    if ((rf >= T.refusedMin && zR >= T.authZ) || sR >= T.refusedH) {
      v[F.refusedCusum] = 0;
      reasons.push({
        feature: 'policy',
        severity: 'medium',
        score: Math.max(zR, sR),
        observed: `${rf} messages refused by policy in ${secs} s (CUSUM ${fmt(sR)})`,
        expected: `${fmt(muR)} ± ${fmt(sdR)} per window`,
        text: `refused by its policy: ${rf} messages refused in the last ${secs} s, where ${fmt(muR)} per window is usual${sR >= T.refusedH ? `, and more than usual for a while (${fmt(sR)} above, CUSUM)` : ''}`,
      });
    }
  }

  /** New destinations: many at once is a scan, many over hours is a slow scan, one is news. */
  private scoreDestinations(m: DeviceModel, ctx: Context, w: ScoreWindow, reasons: Reason[]): void {
    const v = m.v;
    const { secs } = w;
    const novel = this.decayed(m, F.novelDest, ctx.end);
    const examples = (m.wNew ?? []).join(', ');
    if (v[F.wNewDistinct]! >= T.scanDistinct) {
      reasons.push({
        feature: 'scan',
        severity: 'high',
        score: v[F.wNewDistinct]!,
        observed: `${v[F.wNewDistinct]} new destinations in ${secs} s (e.g. ${examples})`,
        expected: 'destinations seen while learning',
        text: `scan: ${v[F.wNewDistinct]} destinations never seen before in ${secs} s, e.g. ${examples}`,
      });
    } else if (v[F.wNewDistinct]! > 0 && novel >= T.slowScan) {
      reasons.push({
        feature: 'scan',
        severity: 'high',
        score: novel,
        observed: `${fmt(novel)} new destinations (decayed over ${NOVELTY_HALF_LIFE / HOUR_MS} h), latest ${examples}`,
        expected: 'destinations seen while learning',
        text: `slow scan: about ${Math.round(novel)} destinations never seen before within the last hours (half-life ${NOVELTY_HALF_LIFE / HOUR_MS} h), latest ${examples}`,
      });
    } else if (v[F.wNewDistinct]! > 0) {
      reasons.push({
        feature: 'new-destination',
        severity: 'medium',
        score: 5,
        observed: examples,
        expected: 'destinations seen while learning',
        text: `talks to a destination never seen before: ${examples}`,
      });
    }
    if (m.wSuspect && m.wSuspect.length > 0) {
      const j = this.probation(m, fnv1a(m.wSuspect[0]!));
      const rec = j >= 0 ? m.pv?.subarray(m.p(j)) : undefined;
      const contacts = rec ? rec[P.contacts]! : 0;
      const every = rec ? rec[P.gmean]! / 1000 : 0;
      const suspicious = rec?.[P.suspicious] === 1;
      reasons.push({
        feature: 'beacon',
        severity: 'high',
        score: 8,
        observed: `${contacts} contacts with ${m.wSuspect.join(', ')}, every ${fmt(every)} s on average`,
        expected: 'no repeated contact with a destination on probation',
        text: suspicious
          ? `keeps contacting a destination first seen while the device was alerting: ${m.wSuspect.join(', ')}, ${contacts} contacts so far, every ${fmt(every)} s on average`
          : `beaconing: ${contacts} contacts with ${m.wSuspect.join(', ')} (never seen while learning), at a steady ${fmt(every)} s apart`,
      });
    }
  }

  /** Resources never used while learning: one is news, many within hours is probing. */
  private scoreResources(m: DeviceModel, ctx: Context, reasons: Reason[]): void {
    if (m.wNewResources && m.wNewResources.length > 0) {
      const probes = this.decayed(m, F.novelRes, ctx.end);
      const list = m.wNewResources.join(', ');
      reasons.push(
        probes >= T.probing
          ? {
              feature: 'new-resource',
              severity: 'medium',
              score: 3 + probes,
              observed: `${list}; about ${Math.round(probes)} new resources within the last hours`,
              expected: 'resources seen while learning',
              text: `resource probing: about ${Math.round(probes)} resources never used before within the last hours, latest ${list}`,
            }
          : {
              feature: 'new-resource',
              severity: 'low',
              score: 3,
              observed: list,
              expected: 'resources seen while learning',
              text: `uses ${m.wNewResources.length} resource${m.wNewResources.length === 1 ? '' : 's'} never seen before: ${list}`,
            },
      );
    }
  }

  /** Activity at an hour the device is normally (nearly) silent, neighbouring hours too (a schedule that moves an hour — DST — is not news): more messages this hour than its quiet baseline allows. */
  private scoreOffHours(m: DeviceModel, w: ScoreWindow, reasons: Reason[]): void {
    const v = m.v;
    const { W, all, slot } = w;
    const perHour = HOUR_MS / W;
    const hereHour = all > 0 ? this.expectedHour(m, slot, perHour) : undefined;
    // Cheap pre-check first (the overall rate is the average hour, roughly): most windows are in busy hours.
    if (hereHour && hereHour.mean < 0.5 * v[F.rate]! * perHour + 1) {
      const base = slot >= 24 ? 24 : 0;
      const hour = slot - base;
      // Quiet: far below the device's average hour of the day (not its busiest: one daily upload would make
      // every other hour look quiet).
      let busiest = 0;
      for (let h = 0; h < 24; h++) busiest += this.expectedHour(m, base + h, perHour).mean / 24;
      const quiet = T.quietShare * busiest;
      const here = hereHour;
      const before = this.expectedHour(m, base + ((hour + 23) % 24), perHour);
      const after = this.expectedHour(m, base + ((hour + 1) % 24), perHour);
      const hourCount = v[F.hCount]!;
      v[F.hActive]!++;
      const active = v[F.hActive]!;
      // Counted in active windows, not messages: a bursty device's one burst at night fills one window, a
      // device put to use at night fills many. A sparse sender has at most one message per window.
      const usual = Math.min(here.mean, perHour);
      const bursty = v[F.rate + 1]! > 2 * Math.max(v[F.rate]!, 1e-3);
      // A bursty device's hour that was silent the few times it was seen may still hold a burst (two windows).
      const allowed = Math.max(usual + 4 * Math.sqrt(usual) + (usual >= 0.5 ? 2 : 0), bursty ? 2 : 0);
      if (here.evidence >= 2 && here.mean < quiet && before.mean < quiet && after.mean < quiet) {
        if (active > allowed) {
          const hh = String(hour).padStart(2, '0');
          const when = slot >= 24 ? ' on a weekend' : '';
          reasons.push({
            feature: 'off-hours',
            severity: 'medium',
            score: 5,
            observed: `${hourCount} messages in ${active} windows at ${hh}:00-${hh}:59${when}`,
            expected: `${fmt(here.mean)} per hour at that hour (average hour ${fmt(busiest)})`,
            text: `active at an unusual hour: ${hourCount} messages in ${active} windows at ${hh}:00-${hh}:59${when}, where it normally sends ${fmt(here.mean)} per hour (${fmt(busiest)} in its average hour)`,
          });
        }
      }
    }
  }
}
