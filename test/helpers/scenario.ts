import { Detector, type DetectorOptions, type Finding } from '../../gateway/src/anomaly/detector.ts';
import type { DetectorEvent } from '../../gateway/src/anomaly/events.ts';
import { prng } from './prng.ts';

/**
 * Seeded scenarios for the anomaly detector: benign device populations and attacks injected into them. The
 * evaluation (test/anomaly.test.ts, bench/anomaly.ts) runs the detector over them and counts what it finds.
 */

export type Archetype = 'periodic' | 'bursty' | 'daily' | 'firmware';
export type AttackKind =
  | 'flood'
  | 'slow-exfiltration'
  | 'new-destination'
  | 'port-scan'
  | 'off-hours'
  | 'credential-guessing'
  | 'mimicry';

/** Which finding kind proves each attack was seen for what it is. */
export const EXPECTED_FINDING: Record<AttackKind, string> = {
  flood: 'flood',
  'slow-exfiltration': 'size',
  'new-destination': 'new-destination',
  'port-scan': 'scan',
  'off-hours': 'off-hours',
  'credential-guessing': 'auth',
  mimicry: 'rate',
};

export interface DeviceSpec {
  id: string;
  archetype: Archetype;
}

const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;
/** Monday 2026-01-05 00:00 UTC: scenarios start on a weekday so the weekend comes on days 5 and 6. */
export const SCENARIO_START = Date.UTC(2026, 0, 5);

type Rng = ReturnType<typeof prng>;

function uniform(r: Rng, lo: number, hi: number): number {
  return lo + (hi - lo) * r.next();
}

function gaussian(r: Rng): number {
  const u = Math.max(r.next(), 1e-12);
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * r.next());
}

function isWeekend(t: number): boolean {
  const d = (Math.floor(t / DAY) + 4) % 7;
  return d === 0 || d === 6;
}

/** One device's benign traffic over [start, end): messages, its few regular connections. */
function benignDevice(spec: DeviceSpec, r: Rng, start: number, end: number, out: DetectorEvent[]): void {
  const id = spec.id;
  const size = Math.round(uniform(r, 40, 400));
  const msg = (ts: number, bytes: number) =>
    out.push({
      ts: Math.round(ts),
      device: id,
      kind: 'message',
      bytes: Math.max(1, Math.round(bytes)),
      resource: '/telemetry',
    });
  // Regular flows the gateway sees in conntrack: time sync every 6 h, a daily update check for some.
  const ntpPhase = uniform(r, 0, 6 * HOUR);
  for (let t = start + ntpPhase; t < end; t += 6 * HOUR) {
    out.push({
      ts: Math.round(t),
      device: id,
      kind: 'connection',
      dst: '10.20.0.1',
      dport: 123,
      proto: 'udp',
    });
  }
  if (r.next() < 0.5) {
    const phase = uniform(r, 0, 20 * HOUR);
    for (let t = start + phase; t < end; t += DAY) {
      out.push({
        ts: Math.round(t),
        device: id,
        kind: 'connection',
        dst: 'updates.vendor.example',
        dport: 443,
        proto: 'tcp',
      });
    }
  }
  switch (spec.archetype) {
    case 'periodic':
    case 'firmware': {
      const period = uniform(r, 30_000, 300_000);
      let bytes = size;
      // firmware: one update on day 2–6: reboot silence, a catch-up burst of buffered readings, slightly
      // different payloads afterwards (new firmware, new fields).
      const update =
        spec.archetype === 'firmware' ? start + uniform(r, 2 * DAY, 6 * DAY) : Number.POSITIVE_INFINITY;
      let updated = false;
      for (let t = start + uniform(r, 0, period); t < end; t += period * (1 + uniform(r, -0.05, 0.05))) {
        if (!updated && t >= update) {
          updated = true;
          const silence = uniform(r, 2 * MIN, 5 * MIN);
          const missed = Math.floor(silence / period);
          for (let i = 0; i <= missed; i++) msg(t + silence + i * 300, bytes * (1 + 0.05 * gaussian(r)));
          t += silence;
          bytes = size * 1.05;
          continue;
        }
        msg(t, bytes * (1 + 0.05 * gaussian(r)));
      }
      break;
    }
    case 'bursty': {
      const perHour = uniform(r, 2, 12);
      for (
        let t = start + uniform(r, 0, HOUR / perHour);
        t < end;
        t += (-Math.log(Math.max(r.next(), 1e-9)) * HOUR) / perHour
      ) {
        const n = 3 + r.int(28);
        let u = t;
        for (let i = 0; i < n; i++) {
          msg(u, size * Math.exp(0.5 * gaussian(r)));
          u += uniform(r, 100, 500);
        }
      }
      break;
    }
    case 'daily': {
      const from = uniform(r, 6, 9);
      const to = uniform(r, 17, 20);
      const period = uniform(r, 30_000, 120_000);
      const weekend = r.next() < 0.5 ? 0 : 0.3;
      for (let day = Math.floor(start / DAY) * DAY; day < end; day += DAY) {
        const factor = isWeekend(day) ? weekend : 1;
        if (factor === 0) continue;
        const a = day + (from + uniform(r, -1 / 6, 1 / 6)) * HOUR;
        const b = day + (to + uniform(r, -1 / 6, 1 / 6)) * HOUR;
        for (
          let t = Math.max(a, start);
          t < Math.min(b, end);
          t += (period / factor) * (1 + uniform(r, -0.1, 0.1))
        ) {
          msg(t, size * (1 + 0.1 * gaussian(r)));
        }
      }
      break;
    }
  }
}

export interface Population {
  devices: DeviceSpec[];
  events: DetectorEvent[];
  start: number;
  end: number;
}

/** `n` devices of mixed archetypes for `days` days; events sorted by time. */
export function benignPopulation(seed: number, n: number, days: number, start = SCENARIO_START): Population {
  const r = prng(seed);
  const archetypes: Archetype[] = [
    'periodic',
    'periodic',
    'periodic',
    'periodic',
    'bursty',
    'bursty',
    'daily',
    'daily',
    'daily',
    'firmware',
  ];
  const devices = Array.from({ length: n }, (_, i) => ({
    id: `dev-${String(i).padStart(4, '0')}`,
    archetype: archetypes[i % archetypes.length] as Archetype,
  }));
  const events: DetectorEvent[] = [];
  const end = start + days * DAY;
  for (const d of devices) benignDevice(d, r, start, end, events);
  events.sort((a, b) => a.ts - b.ts);
  return { devices, events, start, end };
}

export interface InjectedAttack {
  kind: AttackKind;
  device: string;
  start: number;
  end: number;
}

/** The attack's own events (to be merged into a population); `device` is what it compromises. */
export function attackEvents(
  kind: AttackKind,
  device: string,
  at: number,
  r: Rng,
  typical: { period: number; bytes: number },
): { events: DetectorEvent[]; end: number } {
  const events: DetectorEvent[] = [];
  const msg = (ts: number, bytes: number) =>
    events.push({
      ts: Math.round(ts),
      device,
      kind: 'message',
      bytes: Math.round(bytes),
      resource: '/telemetry',
    });
  switch (kind) {
    case 'flood': {
      for (let t = at; t < at + 3 * MIN; t += 50) msg(t, typical.bytes);
      return { events, end: at + 3 * MIN };
    }
    case 'slow-exfiltration': {
      // Same rhythm, each message carrying ~40 % more: a few bytes of stolen data at a time.
      for (let t = at; t < at + 6 * HOUR; t += typical.period)
        msg(t, typical.bytes * 1.4 * (1 + 0.05 * gaussian(r)));
      return { events, end: at + 6 * HOUR };
    }
    case 'new-destination':
      events.push({ ts: at, device, kind: 'connection', dst: '203.0.113.66', dport: 4444, proto: 'tcp' });
      return { events, end: at };
    case 'port-scan': {
      for (let p = 1; p <= 60; p++)
        events.push({
          ts: at + p * 400,
          device,
          kind: 'connection',
          dst: '10.30.0.5',
          dport: p * 7,
          proto: 'tcp',
        });
      return { events, end: at + 60 * 400 };
    }
    case 'off-hours': {
      for (let t = at; t < at + 20 * MIN; t += typical.period) msg(t, typical.bytes);
      return { events, end: at + 20 * MIN };
    }
    case 'credential-guessing': {
      for (let i = 0; i < 40; i++) events.push({ ts: at + i * 3000, device, kind: 'auth_failure' });
      return { events, end: at + 40 * 3000 };
    }
    case 'mimicry': {
      // 2.5 times the usual rate, for hours: every window stays under a flood threshold.
      for (let t = at; t < at + 4 * HOUR; t += typical.period / 1.5)
        msg(t, typical.bytes * (1 + 0.05 * gaussian(r)));
      return { events, end: at + 4 * HOUR };
    }
  }
}

/** The device's mean gap and median message size: what an attacker imitating it would use. */
export function typicalOf(
  events: readonly DetectorEvent[],
  device: string,
): { period: number; bytes: number } {
  const msgs = events.filter(
    (e): e is Extract<DetectorEvent, { kind: 'message' }> => e.device === device && e.kind === 'message',
  );
  const first = msgs[0]?.ts ?? 0;
  const last = msgs.at(-1)?.ts ?? 0;
  const sizes = msgs.map((m) => m.bytes).sort((a, b) => a - b);
  return {
    period: msgs.length > 1 ? (last - first) / (msgs.length - 1) : 60_000,
    bytes: sizes[Math.floor(sizes.length / 2)] ?? 100,
  };
}

/** Attacks that take over the device's own messages (the benign ones stop while it runs); others add to them. */
export const REPLACES: ReadonlySet<AttackKind> = new Set(['slow-exfiltration']);

/** A device's events with one attack injected. */
export function withAttack(
  events: readonly DetectorEvent[],
  device: string,
  kind: AttackKind,
  at: number,
  r: Rng,
): { events: DetectorEvent[]; attack: InjectedAttack } {
  const own = events.filter((e) => e.device === device);
  const a = attackEvents(kind, device, at, r, typicalOf(own, device));
  const kept = REPLACES.has(kind)
    ? own.filter((e) => e.kind !== 'message' || e.ts < at || e.ts >= a.end)
    : own;
  return { events: merge(kept, a.events), attack: { kind, device, start: at, end: a.end } };
}

/** Merges sorted event lists. */
export function merge(a: readonly DetectorEvent[], b: readonly DetectorEvent[]): DetectorEvent[] {
  return [...a, ...b].sort((x, y) => x.ts - y.ts);
}

export { DAY, HOUR, MIN };

/** Runs a fresh detector over events (sorted) and returns every finding, windows still open closed at `end`. */
export function runDetector(
  events: readonly DetectorEvent[],
  end: number,
  options: Partial<DetectorOptions> = {},
): Finding[] {
  const d = new Detector(options);
  const out: Finding[] = [];
  for (const e of events) for (const f of d.observe(e)) out.push(f);
  for (const f of d.flush(end)) out.push(f);
  return out;
}

/** Who an attack of this kind is tried on, and when (local time): where the attack means something. */
function attackPlan(
  kind: AttackKind,
  pop: Population,
  r: Rng,
  count: number,
): { device: DeviceSpec; at: number }[] {
  const day3 = pop.start + 3 * DAY;
  // Subtle attacks (bigger payloads, a raised rate) are measured against devices whose normal is regular, in
  // their active hours; the bench reports what happens on bursty devices too.
  const eligible = (a: Archetype) =>
    kind === 'off-hours'
      ? a === 'daily'
      : kind === 'slow-exfiltration' || kind === 'mimicry'
        ? a !== 'bursty'
        : true;
  return pop.devices
    .filter((d) => eligible(d.archetype))
    .slice(0, count)
    .map((device) => ({
      device,
      at:
        kind === 'off-hours'
          ? day3 + 3 * HOUR + Math.floor(r.next() * 30 * MIN)
          : kind === 'slow-exfiltration' || kind === 'mimicry'
            ? day3 + 10 * HOUR + Math.floor(r.next() * HOUR)
            : day3 + Math.floor(r.next() * DAY),
    }));
}

export interface AttackResult {
  kind: AttackKind;
  tried: number;
  detected: number;
  /** Median seconds from the attack's start to the first finding of the expected kind. */
  medianSecondsToDetect: number | null;
  /** One detected example: the finding's explanation. */
  example: string | null;
  missed: { device: string; archetype: Archetype }[];
}

/** Tries one attack kind on `count` devices of the population (each on its own detector) and scores it. */
export function evaluateAttack(
  pop: Population,
  kind: AttackKind,
  count: number,
  seed: number,
  bursty = false,
): AttackResult {
  const r = prng(seed);
  const plan = bursty
    ? pop.devices
        .filter((d) => d.archetype === 'bursty')
        .slice(0, count)
        .map((device) => ({ device, at: pop.start + 3 * DAY + 10 * HOUR }))
    : attackPlan(kind, pop, r, count);
  const times: number[] = [];
  const missed: AttackResult['missed'] = [];
  let example: string | null = null;
  for (const { device, at } of plan) {
    const { events, attack } = withAttack(pop.events, device.id, kind, at, r);
    const found = runDetector(events, pop.end).find(
      (f) =>
        f.ts >= attack.start &&
        f.ts <= attack.end + 15 * MIN &&
        f.reasons.some((x) => x.feature === EXPECTED_FINDING[kind]),
    );
    if (!found) {
      missed.push({ device: device.id, archetype: device.archetype });
      continue;
    }
    times.push((found.ts - attack.start) / 1000);
    example ??= found.reasons.find((x) => x.feature === EXPECTED_FINDING[kind])?.text ?? null;
  }
  times.sort((a, b) => a - b);
  return {
    kind,
    tried: plan.length,
    detected: times.length,
    medianSecondsToDetect: times.length > 0 ? (times[Math.floor(times.length / 2)] as number) : null,
    example,
    missed,
  };
}

export const ATTACKS: readonly AttackKind[] = [
  'flood',
  'slow-exfiltration',
  'new-destination',
  'port-scan',
  'off-hours',
  'credential-guessing',
  'mimicry',
];
