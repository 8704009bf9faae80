import {
  Detector,
  type DetectorOptions,
  type Finding,
  type FindingKind,
} from '../../gateway/src/anomaly/detector.ts';
import type { DetectorEvent } from '../../gateway/src/anomaly/events.ts';
import { prng } from './prng.ts';

/**
 * A seeded, realistic site for the behaviour detector (issue 27): devices that send more than one kind of
 * message, bursty event-driven ones, weekday-daytime ones with a night heartbeat, chatty ones — and the
 * benign changes every site has (drift, loss and dropouts, a holiday, the DST switch, a firmware campaign,
 * late joiners, a site-wide outage with its catch-up), plus seven subtle attacks. The evaluation runs one
 * detector over the whole site (site context needs the peers) and counts what it finds.
 */

export type Shift = 'drift' | 'loss' | 'holiday' | 'dst' | 'firmware' | 'late-joiners' | 'outage';
export const SHIFTS: readonly Shift[] = [
  'drift',
  'loss',
  'holiday',
  'dst',
  'firmware',
  'late-joiners',
  'outage',
];

export type SubtleAttack =
  | 'low-rate-guessing'
  | 'rate-increase'
  | 'slow-scan'
  | 'beaconing'
  | 'size-creep'
  | 'off-hours-use'
  | 'resource-probing';
export const SUBTLE_ATTACKS: readonly SubtleAttack[] = [
  'low-rate-guessing',
  'rate-increase',
  'slow-scan',
  'beaconing',
  'size-creep',
  'off-hours-use',
  'resource-probing',
];
/** The finding kind that shows the attack was seen for what it is. */
export const SUBTLE_EXPECTED: Record<SubtleAttack, FindingKind> = {
  'low-rate-guessing': 'auth',
  'rate-increase': 'rate',
  'slow-scan': 'scan',
  beaconing: 'beacon',
  'size-creep': 'size',
  'off-hours-use': 'off-hours',
  'resource-probing': 'new-resource',
};

type Archetype = 'periodic' | 'multimodal' | 'bursty' | 'daytime' | 'chatty';

export interface SiteDevice {
  id: string;
  archetype: Archetype;
  /** When it joined (late joiners start later). */
  joined: number;
  firmwareAt: number | null;
  attack: SiteAttack | null;
}

export interface SiteAttack {
  kind: SubtleAttack;
  device: string;
  start: number;
  end: number;
}

export interface ExpectedChange {
  device: string;
  at: number;
  campaign: number;
}

export interface Site {
  devices: SiteDevice[];
  events: DetectorEvent[];
  start: number;
  end: number;
  /** The firmware campaign's notices: what the gateway knows in advance. */
  changes: ExpectedChange[];
  attacks: SiteAttack[];
  /** The site's standard offset from UTC (the detector's configuration; DST moves the devices by an hour). */
  utcOffsetMinutes: number;
  shifts: ReadonlySet<Shift>;
}

export interface SiteOptions {
  seed: number;
  devices: number;
  days: number;
  shifts: readonly Shift[];
  /** Devices each subtle attack is tried on (0: a benign site). */
  perAttack: number;
}

const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;
/** Monday 2026-03-23 00:00 local (CET, UTC+1); the DST switch is Sunday 2026-03-29 at 02:00 local. */
const OFFSET = 60;
export const SITE_START = Date.UTC(2026, 2, 23) - OFFSET * MIN;
const DST_AT = SITE_START + 6 * DAY + 2 * HOUR;
const HOLIDAY = 3; // Thursday: daytime devices keep a weekend
const OUTAGE_AT = SITE_START + 4 * DAY + 10 * HOUR; // Friday 10:00 local
const OUTAGE_MS = 40 * MIN;
const FIRMWARE_AT = SITE_START + 5 * DAY + 11 * HOUR; // Saturday 11:00 local
const ATTACK_DAY = 7; // Monday after the DST switch

type Rng = ReturnType<typeof prng>;
const uniform = (r: Rng, lo: number, hi: number) => lo + (hi - lo) * r.next();
const logUniform = (r: Rng, lo: number, hi: number) => Math.exp(uniform(r, Math.log(lo), Math.log(hi)));
function gaussian(r: Rng): number {
  const u = Math.max(r.next(), 1e-12);
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * r.next());
}
const exponential = (r: Rng, mean: number) => -Math.log(Math.max(r.next(), 1e-12)) * mean;

/** Local time of `t` at the site (the devices follow the wall clock, DST included). */
function localOffset(t: number, dst: boolean): number {
  return (dst && t >= DST_AT - OFFSET * MIN ? OFFSET + 60 : OFFSET) * MIN;
}

function localHour(t: number, dst: boolean): number {
  const l = t + localOffset(t, dst);
  return (l - Math.floor(l / DAY) * DAY) / HOUR;
}

function localDay(t: number, dst: boolean): number {
  return Math.floor((t + localOffset(t, dst) - (SITE_START + OFFSET * MIN)) / DAY);
}

/** A weekend day, or the holiday when that shift is on. */
function dayOff(t: number, s: ReadonlySet<Shift>): boolean {
  const d = localDay(t, s.has('dst'));
  const weekday = (d + 1) % 7; // day 0 is a Monday; 0 = Sunday
  return weekday === 0 || weekday === 6 || (s.has('holiday') && d === HOLIDAY);
}

const PROBES = ['/.well-known/core', '/admin', '/config', '/debug', '/fw/list', '/shell', '/logs', '/keys'];

/** One device's traffic over [joined, end). */
function deviceEvents(d: SiteDevice, r: Rng, end: number, s: ReadonlySet<Shift>, out: DetectorEvent[]): void {
  const id = d.id;
  const dst = s.has('dst');
  const outage = s.has('outage');
  const loss = s.has('loss') ? 0.02 : 0;
  const drift = s.has('drift') ? uniform(r, -0.06, 0.06) : 0;
  const sizeDrift = s.has('drift') ? uniform(r, 0, 0.1) : 0;
  const span = end - d.joined;
  const a = d.attack;
  const push = (e: DetectorEvent) => {
    if (e.ts >= d.joined && e.ts < end) out.push(e);
  };
  // Buffered during the outage and sent right after it (the devices that buffer), or lost.
  const buffers = r.next() < 0.8;
  let backlog = 0;
  const msg = (ts: number, bytes: number, resource = '/telemetry', contentFormat = 60) => {
    if (outage && ts >= OUTAGE_AT && ts < OUTAGE_AT + OUTAGE_MS) {
      if (buffers && backlog < 400) {
        backlog++;
        push({
          ts: Math.round(OUTAGE_AT + OUTAGE_MS + uniform(r, 2, 20) * 1000 + backlog * uniform(r, 100, 300)),
          device: id,
          kind: 'message',
          bytes: Math.max(1, Math.round(bytes)),
          resource,
          contentFormat,
        });
      }
      return;
    }
    if (loss > 0 && r.next() < loss) return;
    let b = bytes * (1 + (sizeDrift * (ts - d.joined)) / span);
    if (d.firmwareAt !== null && ts >= d.firmwareAt) b *= 1.2;
    if (
      a?.kind === 'size-creep' &&
      ts >= a.start &&
      ts < a.end &&
      resource === '/telemetry' &&
      contentFormat === 60
    )
      b *= 1 + 0.5 * Math.min(1, (ts - a.start) / (6 * HOUR));
    push({
      ts: Math.round(ts),
      device: id,
      kind: 'message',
      bytes: Math.max(1, Math.round(b)),
      resource,
      contentFormat,
    });
  };
  const conn = (ts: number, dstAddr: string, dport: number, proto: 'tcp' | 'udp' = 'tcp') => {
    if (outage && ts >= OUTAGE_AT && ts < OUTAGE_AT + OUTAGE_MS) return;
    push({ ts: Math.round(ts), device: id, kind: 'connection', dst: dstAddr, dport, proto });
  };
  // Connections: time sync every 6 h; some talk to a cloud broker (two addresses) hourly; updates daily.
  const ntp = uniform(r, 0, 6 * HOUR);
  for (let t = d.joined + ntp; t < end; t += 6 * HOUR) conn(t, '10.20.0.1', 123, 'udp');
  if (r.next() < 0.4) {
    const ph = uniform(r, 0, HOUR);
    let k = 0;
    for (let t = d.joined + ph; t < end; t += HOUR * uniform(r, 0.9, 1.1)) {
      const newFirmware = d.firmwareAt !== null && t >= d.firmwareAt;
      conn(t, newFirmware ? '198.51.100.20' : k++ % 2 ? '198.51.100.10' : '198.51.100.11', 8883);
    }
  }
  if (r.next() < 0.5) {
    const ph = uniform(r, 0, 20 * HOUR);
    for (let t = d.joined + ph; t < end; t += DAY) conn(t, '192.0.2.80', 443);
  }
  // Benign failed handshakes: now and then (a session that resumed badly), and on reconnecting after the outage.
  for (let t = d.joined + exponential(r, 4 * DAY); t < end; t += exponential(r, 4 * DAY))
    push({ ts: Math.round(t), device: id, kind: 'auth_failure' });
  if (outage && r.next() < 0.3) {
    const n = 1 + r.int(3);
    for (let i = 0; i < n; i++)
      push({
        ts: Math.round(OUTAGE_AT + OUTAGE_MS + uniform(r, 1, 60) * 1000),
        device: id,
        kind: 'auth_failure',
      });
  }
  // Short dropouts (loss): a few minutes of nothing, once or twice a day; half the devices deliver the backlog.
  const dropouts: [number, number][] = [];
  if (loss > 0) {
    for (let t = d.joined + exponential(r, 16 * HOUR); t < end; t += exponential(r, 16 * HOUR))
      dropouts.push([t, t + uniform(r, 2, 15) * MIN]);
  }
  const dropped = (t: number) => dropouts.some(([x, y]) => t >= x && t < y);
  const dropBuffers = r.next() < 0.5;
  const periodic = (
    from: number,
    to: number,
    period0: number,
    jitter: number,
    each: (t: number, i: number) => void,
  ) => {
    let i = 0;
    for (let t = from + uniform(r, 0, period0); t < to; i++) {
      const p = period0 * (1 + (drift * (t - d.joined)) / span);
      const fw = d.firmwareAt !== null && t >= d.firmwareAt ? 0.9 : 1;
      if (!dropped(t)) each(t, i);
      else if (dropBuffers) {
        // Buffered readings go out right after the dropout, a few hundred milliseconds apart.
        const [x, y] = dropouts.find(([x0, y0]) => t >= x0 && t < y0) ?? [t, t];
        each(y + 500 + (t - x) / 1000, i);
      }
      t += p * fw * (1 + uniform(r, -jitter, jitter));
    }
  };
  // A firmware update: a reboot silence of 2-5 minutes, then the readings it buffered.
  const reboot = (t: number) => d.firmwareAt !== null && t >= d.firmwareAt && t < d.firmwareAt + 4 * MIN;
  switch (d.archetype) {
    case 'periodic':
    case 'multimodal': {
      const period = logUniform(r, 30_000, 600_000);
      const size = logUniform(r, 40, 300);
      const every = 5 + r.int(16);
      const statusCf = r.next() < 0.5 ? 50 : 60;
      const statusSize = size * uniform(r, 4, 8);
      periodic(d.joined, end, period, 0.05, (t, i) => {
        const at = reboot(t) ? (d.firmwareAt as number) + 4 * MIN + (i % 20) * 300 : t;
        if (d.archetype === 'multimodal' && i % every === 0)
          msg(at, statusSize * (1 + 0.05 * gaussian(r)), '/telemetry', statusCf);
        else msg(at, size * (1 + 0.05 * gaussian(r)));
      });
      break;
    }
    case 'chatty': {
      const period = uniform(r, 3000, 10_000);
      const size = logUniform(r, 20, 80);
      periodic(d.joined, end, period, 0.1, (t) => msg(t, size * (1 + 0.1 * gaussian(r))));
      break;
    }
    case 'bursty': {
      const perHour = uniform(r, 2, 10);
      const size = logUniform(r, 60, 400);
      const upload = r.next() < 0.4 ? uniform(r, 0, 6 * HOUR) : null;
      const burst = (t: number) => {
        const n = 1 + Math.min(30, Math.floor(exponential(r, 6)));
        let u = t;
        for (let i = 0; i < n; i++) {
          msg(u, size * Math.exp(0.4 * gaussian(r)));
          u += uniform(r, 100, 600);
        }
      };
      // Event rate follows the day: busier in daytime, quieter at night.
      for (let t = d.joined; t < end; ) {
        const h = localHour(t, dst);
        const f = h >= 7 && h < 20 ? 1.5 : 0.4;
        t += exponential(r, HOUR / (perHour * f));
        if (t < end) burst(t);
      }
      if (a?.kind === 'rate-increase') {
        // Twice as many extra bursts as it normally has, for hours: three times its rate, no single flood.
        for (let t = a.start; t < a.end; ) {
          const h = localHour(t, dst);
          const f = h >= 7 && h < 20 ? 1.5 : 0.4;
          t += exponential(r, HOUR / (2 * perHour * f));
          if (t < a.end) burst(t);
        }
      }
      if (upload !== null) {
        for (let t = d.joined + upload; t < end; t += 6 * HOUR) {
          const n = 20 + r.int(21);
          for (let i = 0; i < n; i++) msg(t + i * 200, uniform(r, 1000, 2000), '/telemetry', 42);
        }
      }
      break;
    }
    case 'daytime': {
      const from = uniform(r, 6, 9);
      const to = uniform(r, 17, 20);
      const period = uniform(r, 30_000, 120_000);
      const size = logUniform(r, 60, 300);
      const weekend = r.next() < 0.5 ? 0 : 0.3;
      const heartbeat = r.next() < 0.8 ? uniform(r, 15, 60) * MIN : null;
      const polls = r.next() < 0.5;
      for (let day = d.joined - (d.joined % DAY) - DAY; day < end; day += DAY) {
        // Local midnight of this day, DST included.
        const midnight = day - localOffset(day + 12 * HOUR, dst);
        const off = dayOff(midnight + 12 * HOUR, s);
        const factor = off ? weekend : 1;
        const a0 = midnight + (from + uniform(r, -1 / 6, 1 / 6)) * HOUR;
        const b0 = midnight + (to + uniform(r, -1 / 6, 1 / 6)) * HOUR;
        if (factor > 0) {
          periodic(a0, b0, period / factor, 0.1, (t) => msg(t, size * (1 + 0.1 * gaussian(r))));
          if (polls) periodic(a0, b0, 5 * MIN, 0.05, (t) => msg(t, 0, '/commands', 0));
        }
        if (heartbeat !== null) {
          for (let t = b0 + uniform(r, 0, heartbeat); t < a0 + DAY; t += heartbeat * uniform(r, 0.95, 1.05))
            msg(t, 20 + r.int(5), '/telemetry', 60);
        }
      }
      if (a?.kind === 'off-hours-use') {
        periodic(a.start, a.end, period, 0.1, (t) => msg(t, size * (1 + 0.1 * gaussian(r))));
      }
      break;
    }
  }
  if (!a) return;
  switch (a.kind) {
    case 'low-rate-guessing':
      for (let t = a.start; t < a.end; t += uniform(r, 20_000, 60_000))
        push({ ts: Math.round(t), device: id, kind: 'auth_failure' });
      break;
    case 'slow-scan': {
      let i = 0;
      for (let t = a.start; t < a.end; t += uniform(r, 3, 8) * MIN, i++)
        conn(t, `10.20.${1 + (i % 7)}.${10 + ((i * 37) % 200)}`, [22, 23, 80, 443, 502, 1883, 5683][i % 7]!);
      break;
    }
    case 'beaconing':
      for (let t = a.start; t < a.end; t += 300_000 * uniform(r, 0.9, 1.1)) conn(t, '203.0.113.50', 443);
      break;
    case 'resource-probing':
      for (let i = 0; i < PROBES.length; i++)
        push({
          ts: Math.round(a.start + (i * (a.end - a.start)) / PROBES.length),
          device: id,
          kind: 'message',
          bytes: 0,
          resource: PROBES[i]!,
        });
      break;
    default:
      break;
  }
}

/** The attacks' timing: after the DST switch, on the Monday (local time), in the devices' active hours. */
function attackWindow(kind: SubtleAttack, r: Rng): [number, number] {
  const day = SITE_START + ATTACK_DAY * DAY - HOUR; // local midnight (CEST now)
  const at = day + uniform(r, 8, 11) * HOUR;
  switch (kind) {
    case 'off-hours-use':
      return [day + 2 * HOUR + uniform(r, 0, 10) * MIN, day + 2 * HOUR + 50 * MIN];
    case 'low-rate-guessing':
      return [at, at + 4 * HOUR];
    case 'rate-increase':
      return [at, at + 6 * HOUR];
    case 'slow-scan':
      return [at, at + 3 * HOUR];
    case 'beaconing':
      return [at, at + 6 * HOUR];
    case 'size-creep':
      return [at, at + 10 * HOUR];
    case 'resource-probing':
      return [at, at + 2 * HOUR];
  }
}

const ELIGIBLE: Record<SubtleAttack, readonly Archetype[]> = {
  'low-rate-guessing': ['periodic', 'multimodal', 'bursty', 'daytime', 'chatty'],
  'rate-increase': ['bursty'],
  'slow-scan': ['periodic', 'multimodal', 'bursty', 'daytime', 'chatty'],
  beaconing: ['periodic', 'multimodal', 'bursty', 'daytime', 'chatty'],
  'size-creep': ['periodic', 'multimodal', 'daytime'],
  'off-hours-use': ['daytime'],
  'resource-probing': ['periodic', 'multimodal', 'bursty', 'daytime', 'chatty'],
};

/** A site of `devices` devices over `days` days with the given benign shifts and attacks. */
export function realisticSite(o: SiteOptions): Site {
  const r = prng(o.seed);
  const shifts = new Set(o.shifts);
  const mix: Archetype[] = [
    'periodic',
    'periodic',
    'periodic',
    'multimodal',
    'multimodal',
    'multimodal',
    'bursty',
    'bursty',
    'bursty',
    'daytime',
    'daytime',
    'daytime',
    'daytime',
    'bursty',
    'periodic',
    'multimodal',
    'daytime',
    'daytime',
    'periodic',
    'chatty',
  ];
  const start = SITE_START;
  const end = start + o.days * DAY;
  const devices: SiteDevice[] = Array.from({ length: o.devices }, (_, i) => ({
    id: `dev-${String(i).padStart(4, '0')}`,
    archetype: mix[i % mix.length]!,
    joined: start,
    firmwareAt: null,
    attack: null,
  }));
  // Attacks on devices that are there from the start, one attack per device.
  const attacks: SiteAttack[] = [];
  const taken = new Set<number>();
  for (const kind of SUBTLE_ATTACKS) {
    for (let k = 0; k < o.perAttack; k++) {
      const i =
        devices.findIndex(
          (d, j) => !taken.has(j) && ELIGIBLE[kind].includes(d.archetype) && (j * 7 + k) % 3 === 0,
        ) ?? -1;
      const j =
        i >= 0 ? i : devices.findIndex((d, jj) => !taken.has(jj) && ELIGIBLE[kind].includes(d.archetype));
      if (j < 0) continue;
      taken.add(j);
      const [s0, e0] = attackWindow(kind, r);
      const a = { kind, device: devices[j]!.id, start: s0, end: Math.min(e0, end) };
      devices[j]!.attack = a;
      attacks.push(a);
    }
  }
  const changes: ExpectedChange[] = [];
  devices.forEach((d, i) => {
    if (taken.has(i)) return;
    if (shifts.has('late-joiners') && i % 20 === 7) d.joined = start + uniform(r, 1, 3) * DAY;
    if (
      shifts.has('firmware') &&
      (d.archetype === 'periodic' || d.archetype === 'multimodal') &&
      i % 5 === 0
    ) {
      d.firmwareAt = FIRMWARE_AT + uniform(r, 0, 2) * HOUR;
      // The campaign told the device a few minutes before it rebooted into the new image.
      changes.push({ device: d.id, at: d.firmwareAt - uniform(r, 1, 10) * MIN, campaign: 1 });
    }
  });
  const events: DetectorEvent[] = [];
  for (const d of devices) deviceEvents(d, r, end, shifts, events);
  events.sort((x, y) => x.ts - y.ts);
  return { devices, events, start, end, changes, attacks, utcOffsetMinutes: OFFSET, shifts };
}

export interface AttackOutcome {
  kind: SubtleAttack;
  device: string;
  caught: boolean;
  secondsToDetect: number | null;
  example: string | null;
}

export interface SiteEvaluation {
  falseAlerts: number;
  deviceDays: number;
  falsePerDeviceDay: number;
  /** False alerts by finding kind. */
  falseByKind: Record<string, number>;
  falseExamples: string[];
  attacks: AttackOutcome[];
  events: number;
}

/**
 * One detector over the whole site (the gateway's view), the firmware campaign's notices fed as expected
 * changes when `hook` (the live gateway does). False alerts: findings on devices never attacked, per scored
 * device-day (after each device's learning day).
 */
export function evaluateSite(
  site: Site,
  o: { hook?: boolean; detector?: Partial<DetectorOptions> } = {},
): SiteEvaluation {
  // The gateway is configured with the site's time zone (anomaly.timeZone), so DST moves its hour profiles
  // too; a site without the DST shift keeps standard time all along (a fixed offset).
  const zone = site.shifts.has('dst') ? { timeZone: 'Europe/Berlin' } : {};
  const d = new Detector({ utcOffsetMinutes: site.utcOffsetMinutes, ...zone, ...o.detector });
  const findings: Finding[] = [];
  const changes = o.hook === false ? [] : [...site.changes].sort((a, b) => a.at - b.at);
  let c = 0;
  for (const e of site.events) {
    while (c < changes.length && changes[c]!.at <= e.ts) {
      const ch = changes[c++]!;
      d.expectChange(ch.device, ch.at, 'firmware', ch.campaign);
    }
    for (const f of d.observe(e)) findings.push(f);
  }
  for (const f of d.flush(site.end)) findings.push(f);
  const attacked = new Map(site.attacks.map((a) => [a.device, a]));
  const learningMs = d.options.learningMs;
  let deviceDays = 0;
  for (const dev of site.devices)
    if (!attacked.has(dev.id)) deviceDays += Math.max(0, site.end - dev.joined - learningMs) / DAY;
  const falseFindings = findings.filter((f) => !attacked.has(f.device));
  const falseByKind: Record<string, number> = {};
  for (const f of falseFindings)
    for (const r of f.reasons) falseByKind[r.feature] = (falseByKind[r.feature] ?? 0) + 1;
  const attacks = site.attacks.map((a): AttackOutcome => {
    const want = SUBTLE_EXPECTED[a.kind];
    const f = findings.find(
      (x) =>
        x.device === a.device &&
        x.ts >= a.start &&
        x.ts <= a.end + 15 * MIN &&
        x.reasons.some((y) => y.feature === want),
    );
    return {
      kind: a.kind,
      device: a.device,
      caught: f !== undefined,
      secondsToDetect: f ? Math.round((f.ts - a.start) / 1000) : null,
      example: f?.reasons.find((y) => y.feature === want)?.text ?? null,
    };
  });
  return {
    falseAlerts: falseFindings.length,
    deviceDays,
    falsePerDeviceDay: deviceDays > 0 ? falseFindings.length / deviceDays : 0,
    falseByKind,
    falseExamples: falseFindings
      .slice(0, 12)
      .map((f) => `${f.device} ${new Date(f.ts).toISOString()}: ${f.reasons.map((x) => x.text).join('; ')}`),
    attacks,
    events: site.events.length,
  };
}
