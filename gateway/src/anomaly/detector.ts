import { DeviceModel } from './device-model.ts';
import type { DetectorEvent } from './events.ts';
import { fnv1a } from './stats.ts';

export type Severity = 'low' | 'medium' | 'high';
export type FindingKind =
  | 'flood'
  | 'rate'
  | 'size'
  | 'auth'
  | 'off-hours'
  | 'scan'
  | 'new-destination'
  | 'new-resource';

const KINDS: readonly FindingKind[] = [
  'flood',
  'rate',
  'size',
  'auth',
  'off-hours',
  'scan',
  'new-destination',
  'new-resource',
];

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

export interface DetectorOptions {
  /** Event time a device is only learned, never scored (cold start). */
  learningMs: number;
  windowMs: number;
  /** The same kind of finding for the same device is reported at most once per cooldown. */
  cooldownMs: number;
  /** Hour-of-day profiles are kept in this offset from UTC (the site's local time). */
  utcOffsetMinutes: number;
}

export const DEFAULT_DETECTOR_OPTIONS: DetectorOptions = {
  learningMs: 24 * 3600_000,
  windowMs: 60_000,
  cooldownMs: 3600_000,
  utcOffsetMinutes: 0,
};

/**
 * Thresholds, in standardised units so they mean the same for a device sending once an hour and one sending
 * ten times a second. Chosen from the scenario evaluation (docs/anomaly.md), not per device.
 */
const T = {
  floodZ: 8,
  floodRatio: 4,
  floodExtra: 10,
  cusumK: 1.5,
  cusumCap: 8,
  peakFactor: 3,
  offHoursRatio: 0.05,
  rateCusumH: 25,
  sizeZ: 8,
  sizeRatio: 1.3,
  sizeCusumH: 30,
  gapCusumH: 60,
  authMin: 5,
  authZ: 5,
  scanDistinct: 10,
};

/** Per-window statistics forget over ~8 hours of windows; per-message ones over ~500 messages. */
const ALPHA_WINDOW = 1 / 500;
const ALPHA_MESSAGE = 1 / 500;
/** Hour-of-day statistics forget over ~3 days of that hour's windows: habits may move. */
const ALPHA_SLOT = 1 / 180;
/** The busiest window seen decays to half in ~12 hours of windows. */
const PEAK_DECAY = 0.999;
/** Idle windows are learned one by one up to this many (a week at one-minute windows); beyond, nothing changes. */
const MAX_IDLE_WINDOWS = 10_080;
/** Longer silences are pauses (night, a weekend), not the rhythm of a device's messages. */
const MAX_RHYTHM_GAP_MS = 3_600_000;
const DAY_MS = 86_400_000;
const HOUR_MS = 3_600_000;

function fmt(x: number): string {
  return Number.isInteger(x) ? String(x) : x.toFixed(x < 10 ? 2 : 1);
}

const SEVERITY_RANK: Record<Severity, number> = { low: 0, medium: 1, high: 2 };

/**
 * The behaviour detector: per-device baselines, windowed scoring with explanations. Pure and synchronous; the
 * same object serves the live path (events from the data path, `flush` on a timer) and `portcullis detect
 * --replay` (events from a file, in their own time).
 */
export class Detector {
  private readonly devices = new Map<string, DeviceModel>();
  readonly options: DetectorOptions;
  /** Called for every closed window; must not throw (the service catches for it). */
  onWindow: ((w: WindowSummary) => void) | undefined;

  constructor(options: Partial<DetectorOptions> = {}) {
    this.options = { ...DEFAULT_DETECTOR_OPTIONS, ...options };
  }

  get deviceCount(): number {
    return this.devices.size;
  }

  /** Feeds one event; returns the findings of any windows this event closed. */
  observe(e: DetectorEvent): Finding[] {
    let m = this.devices.get(e.device);
    if (!m) {
      m = DeviceModel.create(e.ts, this.options.windowMs);
      this.devices.set(e.device, m);
    }
    const out = e.ts >= m.windowStart + this.options.windowMs ? this.advance(e.device, m, e.ts) : [];
    const learning = e.ts - m.firstTs < this.options.learningMs;
    switch (e.kind) {
      case 'message': {
        m.wCount++;
        m.wBytes += e.bytes;
        m.wBytesSq += e.bytes * e.bytes;
        if (
          !Number.isNaN(m.lastMessageTs) &&
          e.ts >= m.lastMessageTs &&
          e.ts - m.lastMessageTs <= MAX_RHYTHM_GAP_MS
        ) {
          const g = e.ts - m.lastMessageTs;
          m.wGapSum += g;
          m.wGapSq += g * g;
          m.wGaps++;
          if (!learning && m.observations('gap') > 1) {
            m.updateCusum(
              'gapCusum',
              (m.mean('gap') - g) / Math.max(m.std('gap'), 0.05 * m.mean('gap'), 1),
              T.cusumK,
              T.cusumCap,
            );
          }
        }
        m.lastMessageTs = e.ts;
        const h = fnv1a(e.resource);
        if (!m.hasResource(h)) {
          if (learning || m.resourcesOverflowed) m.addResource(h);
          else {
            m.wNewResources ??= [];
            if (m.wNewResources.length < 3 && !m.wNewResources.includes(e.resource))
              m.wNewResources.push(e.resource);
          }
        }
        break;
      }
      case 'connection': {
        const key = `${e.proto}:${e.dst}:${e.dport}`;
        const h = fnv1a(key);
        if (m.hasDestination(h)) break;
        if (learning || m.destinationsOverflowed) {
          m.addDestination(h);
          break;
        }
        m.wNewDistinct++;
        m.wNew ??= [];
        if (m.wNew.length < 5 && !m.wNew.includes(key)) m.wNew.push(key);
        m.addDestination(h);
        break;
      }
      case 'auth_failure':
        m.wAuth++;
        break;
    }
    return out;
  }

  /** Closes every window that ended by `now` (the live path calls this on a timer). */
  flush(now: number): Finding[] {
    const out: Finding[] = [];
    for (const [id, m] of this.devices) {
      if (now >= m.windowStart + this.options.windowMs) out.push(...this.advance(id, m, now));
    }
    return out;
  }

  /** Every device's baseline, for persisting. */
  *exportStates(): IterableIterator<[string, Buffer]> {
    for (const [id, m] of this.devices) yield [id, m.toBytes()];
  }

  /** Restores a persisted baseline; false (and nothing changed) if it is from another layout version. */
  importState(device: string, state: Buffer): boolean {
    const m = DeviceModel.fromBytes(state);
    if (!m) return false;
    this.devices.set(device, m);
    return true;
  }

  /** Forgets a device (decommissioned, or a person reset its baseline). */
  deviceIds(): IterableIterator<string> {
    return this.devices.keys();
  }

  forget(device: string): void {
    this.devices.delete(device);
  }

  /**
   * Scores one event against the device's baseline without learning from it (the per-event score; windows
   * are scored by `observe`). For a message: how unusual its size is, and whether its resource is new; for a
   * connection: whether its destination is new. 0 while learning or for an unknown device.
   */
  scoreEvent(e: DetectorEvent): { score: number; learning: boolean; reasons: string[] } {
    const m = this.devices.get(e.device);
    if (!m || e.ts - m.firstTs < this.options.learningMs) return { score: 0, learning: true, reasons: [] };
    const reasons: string[] = [];
    let score = 0;
    if (e.kind === 'message') {
      if (m.observations('size') > 0) {
        const mu = m.mean('size');
        const z = (e.bytes - mu) / Math.max(m.std('size'), 0.05 * mu, 1);
        score = Math.max(score, Math.abs(z));
        if (Math.abs(z) >= 4)
          reasons.push(`size ${e.bytes} bytes, expected ${fmt(mu)} ± ${fmt(m.std('size'))}`);
      }
      if (!m.resourcesOverflowed && !m.hasResource(fnv1a(e.resource))) {
        score = Math.max(score, 3);
        reasons.push(`new resource ${e.resource}`);
      }
    } else if (e.kind === 'connection') {
      const key = `${e.proto}:${e.dst}:${e.dport}`;
      if (!m.destinationsOverflowed && !m.hasDestination(fnv1a(key))) {
        score = 5;
        reasons.push(`new destination ${key}`);
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
    return !m || now - m.firstTs < this.options.learningMs;
  }

  /** Closes the open window, then skips idle windows up to the one containing `ts`. */
  private advance(id: string, m: DeviceModel, ts: number): Finding[] {
    const W = this.options.windowMs;
    const finding = this.closeWindow(id, m);
    const nextStart = m.windowStart + W;
    const idle = Math.max(0, Math.floor((ts - nextStart) / W));
    if (idle > 0) {
      // Idle windows are observations too (zero messages), hour by hour; size has nothing to learn from them.
      const n = Math.min(idle, MAX_IDLE_WINDOWS);
      for (let i = 0; i < n; i++) this.learnCount(m, nextStart + i * W, 0, 0);
      m.setCusum('rateCusum', Math.max(0, m.cusum('rateCusum') - n * T.cusumK));
    }
    m.windowStart = nextStart + idle * W;
    return finding ? [finding] : [];
  }

  /** Hour-of-day slot: 0-23 weekdays, 24-47 weekends, in the site's offset from UTC. */
  private slotOf(t: number): number {
    const local = t + this.options.utcOffsetMinutes * 60_000;
    const day = Math.floor(local / DAY_MS);
    const hour = Math.floor((local % DAY_MS) / HOUR_MS);
    const weekday = (day + 4) % 7; // 1970-01-01 was a Thursday; 0 = Sunday
    return weekday === 0 || weekday === 6 ? 24 + hour : hour;
  }

  /**
   * Expected messages per window in a slot. A weekend hour speaks for itself only after two weekends' worth of
   * windows; until then the same weekday hour answers (a 24-hour learning period sees no weekend). Falls back
   * to the device's overall rate where the hour has not been seen for half an hour yet.
   */
  private expected(m: DeviceModel, slot: number): { mean: number; variance: number; evidence: number } {
    const perHour = HOUR_MS / this.options.windowMs;
    let s = slot;
    if (s >= 24 && m.slots[96 + s]! < 2 * perHour) s -= 24;
    const evidence = m.slots[96 + s]!;
    if (evidence < perHour / 2) return { mean: m.mean('rate'), variance: m.variance('rate'), evidence };
    return { mean: m.slots[s]!, variance: m.slots[48 + s]!, evidence };
  }

  /** One window's message count into the overall and the hour-of-day baselines. */
  private learnCount(m: DeviceModel, windowStart: number, count: number, auth: number): void {
    m.update('rate', ALPHA_WINDOW, count);
    m.update('auth', ALPHA_WINDOW, auth);
    m.peak = Math.max(count, m.peak * PEAK_DECAY);
    const s = this.slotOf(windowStart);
    const n = m.slots[96 + s]! + 1;
    m.slots[96 + s] = n;
    const a = Math.max(ALPHA_SLOT, 1 / n);
    const d = count - m.slots[s]!;
    m.slots[s]! += a * d;
    m.slots[48 + s] = (1 - a) * (m.slots[48 + s]! + a * d * d);
  }

  private closeWindow(id: string, m: DeviceModel): Finding | null {
    const W = this.options.windowMs;
    const end = m.windowStart + W;
    const learning = end - m.firstTs <= this.options.learningMs;
    const reasons: Reason[] = learning ? [] : this.score(m);
    this.onWindow?.({
      device: id,
      windowStart: m.windowStart,
      messages: m.wCount,
      bytes: m.wBytes,
      authFailures: m.wAuth,
      score: reasons.length > 0 ? Math.max(...reasons.map((r) => r.score)) : 0,
    });
    const now = end;
    const reported = reasons.filter((r) => {
      const k = KINDS.indexOf(r.feature);
      if (now - m.lastAlert(k) < this.options.cooldownMs) return false;
      m.setLastAlert(k, now);
      return true;
    });
    // Never learn from a window that looked anomalous, reported or not: an attacker must not teach the baseline.
    if (reasons.length === 0) this.learn(m);
    if (reasons.some((r) => r.feature === 'rate' || r.feature === 'flood')) {
      m.setCusum('rateCusum', 0);
      m.setCusum('gapCusum', 0);
    }
    if (reasons.some((r) => r.feature === 'size')) m.setCusum('sizeCusum', 0);
    m.resetWindow();
    if (reported.length === 0) return null;
    const top = reported.reduce((a, b) =>
      SEVERITY_RANK[b.severity] > SEVERITY_RANK[a.severity] ||
      (b.severity === a.severity && b.score > a.score)
        ? b
        : a,
    );
    return {
      ts: end,
      windowStart: m.windowStart,
      device: id,
      score: Math.round(Math.max(...reported.map((r) => r.score)) * 100) / 100,
      severity: top.severity,
      reasons: reported,
    };
  }

  private learn(m: DeviceModel): void {
    this.learnCount(m, m.windowStart, m.wCount, m.wAuth);
    if (m.wCount > 0) {
      const mean = m.wBytes / m.wCount;
      m.updateBatch('size', ALPHA_MESSAGE, m.wCount, mean, Math.max(0, m.wBytesSq / m.wCount - mean * mean));
    }
    if (m.wGaps > 0) {
      const mean = m.wGapSum / m.wGaps;
      m.updateBatch('gap', ALPHA_MESSAGE, m.wGaps, mean, Math.max(0, m.wGapSq / m.wGaps - mean * mean));
    }
  }

  private score(m: DeviceModel): Reason[] {
    const reasons: Reason[] = [];
    const W = this.options.windowMs;
    const secs = W / 1000;
    const c = m.wCount;
    // Message rate: against the per-window baseline, with a Poisson-like floor so a quiet device's first
    // extra message is not a catastrophe.
    const slot = this.slotOf(m.windowStart);
    const exp = this.expected(m, slot);
    const mu = exp.mean;
    const sd = Math.sqrt(Math.max(exp.variance, 0.25 * mu, 0.25));
    const z = (c - mu) / sd;
    const usual =
      m.observations('gap') > 1 && m.mean('gap') > 0
        ? ` (normally one every ${fmt(m.mean('gap') / 1000)} s ± ${fmt(m.std('gap') / 1000)})`
        : '';
    if (
      z >= T.floodZ &&
      c >= Math.max(T.floodRatio * mu, mu + T.floodExtra, T.peakFactor * m.peak + T.floodExtra)
    ) {
      reasons.push({
        feature: 'flood',
        severity: c >= 10 * mu + 20 ? 'high' : 'medium',
        score: z,
        observed: `${c} messages in ${secs} s`,
        expected: `${fmt(mu)} ± ${fmt(sd)}, busiest lately ${fmt(m.peak)}`,
        text: `message flood: ${c} messages in ${secs} s, expected ${fmt(mu)} ± ${fmt(sd)} at this hour and at most ${fmt(m.peak)} lately${usual}`,
      });
    } else {
      const s = m.updateCusum('rateCusum', z, T.cusumK, T.cusumCap);
      if (s >= T.rateCusumH) {
        reasons.push({
          feature: 'rate',
          severity: 'medium',
          score: s,
          observed: `${c} messages in ${secs} s, raised for a while (CUSUM ${fmt(s)})`,
          expected: `${fmt(mu)} ± ${fmt(sd)}`,
          text: `sustained higher message rate: ${c} in the last ${secs} s and above normal for several windows, expected ${fmt(mu)} ± ${fmt(sd)} per window${usual}`,
        });
      }
    }
    if (
      m.cusum('gapCusum') >= T.gapCusumH &&
      !reasons.some((r) => r.feature === 'flood' || r.feature === 'rate')
    ) {
      const now = c > 0 && m.wGaps > 0 ? `every ${fmt(m.wGapSum / m.wGaps / 1000)} s` : 'faster';
      reasons.push({
        feature: 'rate',
        severity: 'medium',
        score: m.cusum('gapCusum'),
        observed: `messages ${now}, for a while (CUSUM ${fmt(m.cusum('gapCusum'))})`,
        expected: `one every ${fmt(m.mean('gap') / 1000)} s ± ${fmt(m.std('gap') / 1000)}`,
        text: `messages come faster than the device's rhythm: ${now} lately, normally one every ${fmt(m.mean('gap') / 1000)} s ± ${fmt(m.std('gap') / 1000)}`,
      });
    }
    // Message size (exfiltration hides in bigger payloads).
    if (c > 0 && m.observations('size') > 0) {
      const mean = m.wBytes / c;
      const mu_b = m.mean('size');
      const sd_b = Math.sqrt(m.variance('size') / c + (0.02 * mu_b) ** 2 + 1);
      const zb = (mean - mu_b) / sd_b;
      if (zb >= T.sizeZ && mean >= T.sizeRatio * mu_b) {
        reasons.push({
          feature: 'size',
          severity: mean >= 3 * mu_b ? 'high' : 'medium',
          score: zb,
          observed: `${fmt(mean)} bytes per message`,
          expected: `${fmt(mu_b)} ± ${fmt(m.std('size'))}`,
          text: `larger messages: ${fmt(mean)} bytes on average over ${c}, expected ${fmt(mu_b)} ± ${fmt(m.std('size'))}`,
        });
      } else {
        const s = m.updateCusum('sizeCusum', zb, T.cusumK, T.cusumCap);
        if (s >= T.sizeCusumH) {
          reasons.push({
            feature: 'size',
            severity: 'medium',
            score: s,
            observed: `${fmt(mean)} bytes per message, raised for a while (CUSUM ${fmt(s)})`,
            expected: `${fmt(mu_b)} ± ${fmt(m.std('size'))}`,
            text: `messages persistently larger than normal: ${fmt(mean)} bytes now, expected ${fmt(mu_b)} ± ${fmt(m.std('size'))}`,
          });
        }
      }
    }
    // Authentication failures (credential guessing).
    const a = m.wAuth;
    const sdA = Math.sqrt(Math.max(m.variance('auth'), m.mean('auth'), 0.2));
    if (a >= T.authMin && (a - m.mean('auth')) / sdA >= T.authZ) {
      reasons.push({
        feature: 'auth',
        severity: 'high',
        score: (a - m.mean('auth')) / sdA,
        observed: `${a} failed handshakes in ${secs} s`,
        expected: `${fmt(m.mean('auth'))} ± ${fmt(sdA)}`,
        text: `credential guessing: ${a} failed DTLS handshakes in ${secs} s, expected ${fmt(m.mean('auth'))}`,
      });
    }
    // New destinations: one is news, many at once is a scan.
    if (m.wNewDistinct >= T.scanDistinct) {
      reasons.push({
        feature: 'scan',
        severity: 'high',
        score: m.wNewDistinct,
        observed: `${m.wNewDistinct} new destinations in ${secs} s (e.g. ${(m.wNew ?? []).join(', ')})`,
        expected: 'destinations seen while learning',
        text: `scan: ${m.wNewDistinct} destinations never seen before in ${secs} s, e.g. ${(m.wNew ?? []).join(', ')}`,
      });
    } else if (m.wNewDistinct > 0) {
      reasons.push({
        feature: 'new-destination',
        severity: 'medium',
        score: 5,
        observed: (m.wNew ?? []).join(', '),
        expected: 'destinations seen while learning',
        text: `talks to a destination never seen before: ${(m.wNew ?? []).join(', ')}`,
      });
    }
    if (m.wNewResources && m.wNewResources.length > 0) {
      reasons.push({
        feature: 'new-resource',
        severity: 'low',
        score: 3,
        observed: m.wNewResources.join(', '),
        expected: 'resources seen while learning',
        text: `uses a resource never seen before: ${m.wNewResources.join(', ')}`,
      });
    }
    // Activity at an hour it is normally silent (neighbouring hours too, so a schedule that drifts a few
    // minutes is not news). Silent means: far below the device's own overall rate.
    if (c > 0 || a > 0) {
      const base = slot >= 24 ? 24 : 0;
      const hour = slot - base;
      const quiet = T.offHoursRatio * m.mean('rate');
      const here = exp;
      const before = this.expected(m, base + ((hour + 23) % 24));
      const after = this.expected(m, base + ((hour + 1) % 24));
      const perHour = HOUR_MS / W;
      if (here.evidence >= perHour / 2 && here.mean < quiet && before.mean < quiet && after.mean < quiet) {
        const hh = String(hour).padStart(2, '0');
        const when = slot >= 24 ? ' on a weekend' : '';
        reasons.push({
          feature: 'off-hours',
          severity: 'medium',
          score: 5,
          observed: `${c} messages at ${hh}:00-${hh}:59${when}`,
          expected: `${fmt(here.mean)} per window at that hour (overall ${fmt(m.mean('rate'))})`,
          text: `active at an unusual hour: ${c} messages at ${hh}:00-${hh}:59${when}, where it normally sends ${fmt(here.mean)} per ${secs} s (${fmt(m.mean('rate'))} overall)`,
        });
      }
    }
    return reasons;
  }
}
