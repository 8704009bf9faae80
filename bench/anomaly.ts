// `npm run bench -- anomaly`: detector cost per event and memory per device at 10,000 devices, against the
// simplest per-device detector (a fixed-window counter with a static threshold) on the same event stream in
// the same run; plus the detection quality on the seeded scenarios (test/helpers/scenario.ts: the blatant set)
// and on the realistic site (test/helpers/realistic.ts: 200 devices, 10 days, benign shifts, subtle attacks);
// and the periodic save of every baseline: the longest turn of the event loop it takes, in steps against the
// same save in one transaction.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { BaselineSaver } from '../gateway/src/anomaly/baseline-saver.ts';
import { Detector, type DetectorEvent } from '../gateway/src/anomaly/index.ts';
import { createLogger } from '../gateway/src/log.ts';
import { Store } from '../gateway/src/store/index.ts';
import { prng } from '../test/helpers/prng.ts';
import { evaluateSite, realisticSite, SHIFTS, SUBTLE_ATTACKS } from '../test/helpers/realistic.ts';
import { ATTACKS, benignPopulation, evaluateAttack, runDetector } from '../test/helpers/scenario.ts';
import { parseOptions, round } from './lib/load.ts';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

/** The peer: what a simple gateway rule does — count messages per device per minute, alert above a number. */
class ThresholdCounter {
  private readonly windows = new Map<string, { start: number; count: number }>();
  alerts = 0;
  observe(e: DetectorEvent): void {
    const start = Math.floor(e.ts / 60_000) * 60_000;
    const w = this.windows.get(e.device);
    if (!w || w.start !== start) {
      if (w && w.count > 100) this.alerts++;
      this.windows.set(e.device, { start, count: 1 });
      return;
    }
    w.count++;
  }
}

/** A stream of `n` events over `devices` devices: periodic senders with jitter, some connections, in time order. */
function* stream(devices: number, n: number, seed: number): Generator<DetectorEvent> {
  const r = prng(seed);
  const ids = Array.from({ length: devices }, (_, i) => `dev-${i}`);
  const start = Date.UTC(2026, 0, 5);
  const step = 60_000 / devices;
  for (let i = 0; i < n; i++) {
    const device = ids[i % devices] as string;
    const ts = start + Math.floor(i * step + r.next() * step);
    yield i % 50 === 0
      ? { ts, device, kind: 'connection', dst: '10.20.0.1', dport: 123, proto: 'udp' }
      : { ts, device, kind: 'message', bytes: 80 + r.int(40), resource: '/telemetry' };
  }
}

function time(n: number, devices: number, observe: (e: DetectorEvent) => void): number {
  const events = [...stream(devices, n, 1)];
  const t0 = performance.now();
  for (const e of events) observe(e);
  return ((performance.now() - t0) * 1000) / n;
}

function heapPerDevice(devices: number, make: () => { observe(e: DetectorEvent): unknown }): number {
  // Typed arrays keep their bytes outside the JS heap: count both.
  const used = () => {
    const m = process.memoryUsage();
    return m.heapUsed + m.arrayBuffers;
  };
  gc();
  const before = used();
  const d = make();
  for (const e of stream(devices, devices * 3, 2)) d.observe(e);
  gc();
  const after = used();
  // Keep `d` alive until measured.
  return (after - before) / devices + (d ? 0 : 1);
}

export async function anomalyBench(argv: string[]) {
  const o = parseOptions('anomaly', argv, {
    devices: 10_000,
    events: 2_000_000,
    rounds: 3,
    siteDevices: 200,
    siteDays: 10,
    perAttack: 3,
  });
  const detectorUs: number[] = [];
  const peerUs: number[] = [];
  for (let round_ = 0; round_ < o.rounds; round_++) {
    process.stderr.write(`anomaly: throughput round ${round_ + 1}/${o.rounds}…\n`);
    // Learning is over for most of the stream, so scoring is measured, not only learning.
    const d = new Detector({ learningMs: 3600_000 });
    detectorUs.push(time(o.events, o.devices, (e) => d.observe(e)));
    const p = new ThresholdCounter();
    peerUs.push(time(o.events, o.devices, (e) => p.observe(e)));
  }
  process.stderr.write('anomaly: memory…\n');
  const peerBytes = heapPerDevice(o.devices, () => new ThresholdCounter());
  const detectorBytes = heapPerDevice(o.devices, () => new Detector());
  const persisted = (() => {
    const d = new Detector();
    for (const e of stream(1, 5, 3)) d.observe(e);
    return [...d.exportStates()][0]?.[1].length ?? 0;
  })();
  process.stderr.write('anomaly: scenarios (100 devices, 7 days, 3 seeds)…\n');
  const benign = [1, 2, 3].map((seed) => {
    const pop = benignPopulation(seed, 100, 7);
    return runDetector(pop.events, pop.end).length / (100 * 6);
  });
  const pop = benignPopulation(1, 100, 7);
  const attacks = ATTACKS.map((kind) => {
    const r = evaluateAttack(pop, kind, 20, 42);
    return {
      kind,
      detected: `${r.detected}/${r.tried}`,
      medianSecondsToDetect: r.medianSecondsToDetect && round(r.medianSecondsToDetect, 0),
      example: r.example,
    };
  });
  const onBursty = (['slow-exfiltration', 'mimicry'] as const).map((kind) => {
    const r = evaluateAttack(pop, kind, 10, 42, true);
    return { kind, detected: `${r.detected}/${r.tried}` };
  });
  const realistic = realisticQuality(o.siteDevices, o.siteDays, o.perAttack);
  process.stderr.write(`anomaly: saving ${o.devices} baselines, in steps and in one transaction…\n`);
  const save = await baselineSave(o.devices);
  const us = median(detectorUs);
  return {
    bench: 'anomaly',
    devices: o.devices,
    events: o.events,
    detector: {
      microsecondsPerEvent: round(us, 3),
      eventsPerSecond: Math.round(1e6 / us),
      bytesPerDevice: Math.round(detectorBytes),
      persistedBytesPerDevice: persisted,
    },
    peer: {
      name: 'fixed-window counter, static threshold',
      microsecondsPerEvent: round(median(peerUs), 3),
      bytesPerDevice: Math.round(peerBytes),
    },
    costOverPeer: round(us / median(peerUs), 2),
    targets: { under5MicrosecondsPerEvent: us <= 5, under4KBPerDevice: detectorBytes <= 4096 },
    quality: {
      falseAlertsPerDeviceDay: benign.map((x) => round(x, 4)),
      attacks,
      subtleAttacksOnBurstyDevices: onBursty,
    },
    realistic,
    baselineSave: save,
  };
}

/**
 * The periodic save at `devices` devices on a database file: the longest stretch the event loop is held (a 1 ms
 * timer's longest gap), saved in steps (the gateway) against the same baselines in one transaction (the peer),
 * alternated over three rounds.
 */
async function baselineSave(devices: number) {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-bench-baselines-'));
  const store = Store.open(join(dir, 'p.db'));
  const now = new Date().toISOString();
  const detector = new Detector();
  for (const e of stream(devices, devices, 5)) {
    store.devices.insert({ id: e.device, credentialKind: 'psk', state: 'active' }, now);
    detector.observe(e);
  }
  const saver = new BaselineSaver(store, detector, createLogger('fatal'));
  const held = async (save: () => Promise<void> | void) => {
    let longest = 0;
    let last = performance.now();
    const tick = setInterval(() => {
      const t = performance.now();
      longest = Math.max(longest, t - last);
      last = t;
    }, 1);
    const t0 = performance.now();
    await save();
    const total = performance.now() - t0;
    longest = Math.max(longest, performance.now() - last);
    clearInterval(tick);
    return { longest, total };
  };
  const inSteps: Array<{ longest: number; total: number }> = [];
  const oneTransaction: Array<{ longest: number; total: number }> = [];
  for (let r = 0; r < 3; r++) {
    oneTransaction.push(await held(() => void store.baselines.saveAll(detector.exportStates(), now)));
    inSteps.push(await held(() => saver.saveInSteps(now)));
  }
  store.close();
  rmSync(dir, { recursive: true, force: true });
  const longest = median(inSteps.map((x) => x.longest));
  const peerLongest = median(oneTransaction.map((x) => x.longest));
  return {
    devices,
    longestTurnMs: round(longest, 1),
    totalMs: round(median(inSteps.map((x) => x.total)), 1),
    peer: {
      name: 'the same baselines in one transaction',
      longestTurnMs: round(peerLongest, 1),
      totalMs: round(median(oneTransaction.map((x) => x.total)), 1),
    },
    longestTurnOverPeer: round(longest / peerLongest, 3),
  };
}

/**
 * The realistic site: three seeds with every benign shift and the seven subtle attacks (each on `perAttack`
 * devices); then, on seed 1, false alerts with no shift, with each shift alone, and two ablations — the
 * firmware campaign without its notice to the detector, DST with only a fixed UTC offset configured.
 */
function realisticQuality(devices: number, days: number, perAttack: number) {
  const rate = (x: number) => round(x, 4);
  const seeds = [1, 2, 3].map((seed) => {
    process.stderr.write(`anomaly: realistic site, seed ${seed} (${devices} devices, ${days} days)…\n`);
    const site = realisticSite({ seed, devices, days, shifts: SHIFTS, perAttack });
    const r = evaluateSite(site);
    return { seed, events: r.events, r };
  });
  const attacks = SUBTLE_ATTACKS.map((kind) => {
    const all = seeds.flatMap((s) => s.r.attacks.filter((a) => a.kind === kind));
    const times = all
      .flatMap((a) => (a.secondsToDetect === null ? [] : [a.secondsToDetect]))
      .sort((a, b) => a - b);
    return {
      kind,
      caught: `${times.length}/${all.length}`,
      medianMinutesToDetect: times.length
        ? round((times[Math.floor(times.length / 2)] as number) / 60, 1)
        : null,
      maxMinutesToDetect: times.length ? round((times.at(-1) as number) / 60, 1) : null,
      example: all.find((a) => a.example)?.example ?? null,
    };
  });
  const benign = (label: string, shifts: readonly (typeof SHIFTS)[number][], opts = {}) => {
    process.stderr.write(`anomaly: realistic site, benign ${label}…\n`);
    const r = evaluateSite(realisticSite({ seed: 1, devices, days, shifts, perAttack: 0 }), opts);
    return {
      shifts: label,
      falseAlerts: r.falseAlerts,
      perDeviceDay: rate(r.falsePerDeviceDay),
      byKind: r.falseByKind,
    };
  };
  const byShift = [
    benign('none', []),
    ...SHIFTS.map((s) => benign(s, [s])),
    benign('all', SHIFTS),
    benign('firmware, without the campaign notice', ['firmware'], { hook: false }),
    benign('dst, fixed UTC offset only (no anomaly.timeZone)', ['dst'], {
      detector: { timeZone: undefined },
    }),
  ];
  return {
    site: { devices, days, perAttack, seeds: seeds.map((s) => ({ seed: s.seed, events: s.events })) },
    attacks,
    falseAlertsPerDeviceDay: seeds.map((s) => ({
      seed: s.seed,
      falseAlerts: s.r.falseAlerts,
      deviceDays: round(s.r.deviceDays, 0),
      perDeviceDay: rate(s.r.falsePerDeviceDay),
      byKind: s.r.falseByKind,
    })),
    benignShifts: byShift,
  };
}
