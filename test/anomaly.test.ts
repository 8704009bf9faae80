/**
 * Behaviour monitoring: the detector against seeded scenarios (every attack class found and explained, benign
 * populations quiet), its cold start, what it refuses to learn, persistence, the replay command, and the live
 * service's alerts, responses and SIEM export (rsyslog, TLS). The DTLS flood end to end is anomaly-e2e.test.ts.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { AnomalyService, Detector, type DetectorEvent } from '../gateway/src/anomaly/index.ts';
import { ManualClock } from '../gateway/src/clock.ts';
import { parseConfig } from '../gateway/src/config/index.ts';
import { Core } from '../gateway/src/core.ts';
import { createLogger } from '../gateway/src/log.ts';
import { runCli } from './helpers/cli.ts';
import {
  ATTACKS,
  benignPopulation,
  DAY,
  EXPECTED_FINDING,
  evaluateAttack,
  HOUR,
  MIN,
  runDetector,
  SCENARIO_START,
} from './helpers/scenario.ts';
import { tempDir } from './helpers/tmp.ts';

const msg = (ts: number, device = 'd1', bytes = 100): DetectorEvent => ({
  ts,
  device,
  kind: 'message',
  bytes,
  resource: '/telemetry',
});

/** A device sending every `period` ms from `from` to `to`. */
function steady(from: number, to: number, period = 60_000, device = 'd1'): DetectorEvent[] {
  const out: DetectorEvent[] = [];
  for (let t = from; t < to; t += period) out.push(msg(t, device));
  return out;
}

function flood(at: number, n = 500, device = 'd1'): DetectorEvent[] {
  return Array.from({ length: n }, (_, i) => msg(at + i * 50, device));
}

describe('behaviour detector on generated scenarios', () => {
  const pop = benignPopulation(1, 100, 7);

  it('raises at most 0.01 false alerts per device-day on 100 benign devices over 7 days', () => {
    const findings = runDetector(pop.events, pop.end);
    // The first day is learning; six days of 100 devices are scored.
    const perDeviceDay = findings.length / (100 * 6);
    assert.ok(
      perDeviceDay <= 0.01,
      `${findings.length} false alerts (${perDeviceDay} per device-day): ${findings.map((f) => f.reasons[0]?.text).join(' | ')}`,
    );
  });

  for (const kind of ATTACKS) {
    it(`detects ${kind} and says why`, () => {
      const r = evaluateAttack(pop, kind, 10, 42);
      assert.ok(r.detected >= 9, `${r.detected}/${r.tried} detected; missed ${JSON.stringify(r.missed)}`);
      assert.ok(r.example && r.example.length > 20, 'an explanation');
      // The explanation names what was seen against what was expected.
      const expectedWord: Record<string, RegExp> = {
        flood: /messages in 60 s, expected/,
        size: /bytes.*expected/,
        'new-destination': /never seen before: tcp:203\.0\.113\.66:4444/,
        scan: /\d+ destinations never seen before/,
        'off-hours': /unusual hour: .* 0[2-4]:00/,
        auth: /failed DTLS handshakes/,
        rate: /faster than the device's rhythm|higher message rate/,
      };
      assert.match(r.example, expectedWord[EXPECTED_FINDING[kind]] as RegExp);
    });
  }
});

describe('behaviour detector: learning and drift', () => {
  const opts = { learningMs: 6 * HOUR };

  it('only learns during the learning period (cold start): a flood then is not reported, the same flood after is', () => {
    const early = [...steady(SCENARIO_START, SCENARIO_START + HOUR), ...flood(SCENARIO_START + HOUR)].sort(
      (a, b) => a.ts - b.ts,
    );
    assert.deepEqual(runDetector(early, SCENARIO_START + 2 * HOUR, opts), []);
    const later = [
      ...steady(SCENARIO_START, SCENARIO_START + 8 * HOUR),
      ...flood(SCENARIO_START + 7 * HOUR),
    ].sort((a, b) => a.ts - b.ts);
    const found = runDetector(later, SCENARIO_START + 9 * HOUR, opts);
    assert.equal(found.length, 1);
    assert.equal(found[0]?.reasons[0]?.feature, 'flood');
    assert.equal(found[0]?.severity, 'high');
  });

  it('never learns from a window that alerted: the same flood is news again after the cooldown', () => {
    const events = [
      ...steady(SCENARIO_START, SCENARIO_START + 12 * HOUR),
      ...flood(SCENARIO_START + 7 * HOUR),
      ...flood(SCENARIO_START + 9 * HOUR),
    ].sort((a, b) => a.ts - b.ts);
    const found = runDetector(events, SCENARIO_START + 13 * HOUR, opts).filter(
      (f) => f.reasons[0]?.feature === 'flood',
    );
    assert.equal(found.length, 2);
  });

  it('reports the same kind for the same device at most once per cooldown', () => {
    const events = [
      ...steady(SCENARIO_START, SCENARIO_START + 12 * HOUR),
      ...flood(SCENARIO_START + 7 * HOUR),
      ...flood(SCENARIO_START + 7 * HOUR + 10 * MIN),
    ].sort((a, b) => a.ts - b.ts);
    assert.equal(runDetector(events, SCENARIO_START + 13 * HOUR, opts).length, 1);
  });

  it('follows slow drift without alerting: a rate that doubles over two weeks', () => {
    const events: DetectorEvent[] = [];
    for (let t = SCENARIO_START; t < SCENARIO_START + 14 * DAY; ) {
      events.push(msg(t));
      t += 60_000 / (1 + (t - SCENARIO_START) / (14 * DAY));
    }
    assert.deepEqual(runDetector(events, SCENARIO_START + 14 * DAY, { learningMs: DAY }), []);
  });

  it('scores a single event against the baseline without learning from it', () => {
    const d = new Detector(opts);
    for (const e of steady(SCENARIO_START, SCENARIO_START + 7 * HOUR)) d.observe(e);
    const at = SCENARIO_START + 7 * HOUR;
    assert.equal(d.scoreEvent(msg(at)).score, 0, 'a usual message');
    const big = d.scoreEvent(msg(at, 'd1', 1000));
    assert.ok(big.score > 8);
    assert.match(big.reasons[0] ?? '', /size 1000 bytes, expected 100/);
    assert.match(
      d.scoreEvent({ ts: at, device: 'd1', kind: 'connection', dst: '192.0.2.5', dport: 23, proto: 'tcp' })
        .reasons[0] ?? '',
      /new destination tcp:192\.0\.2\.5:23/,
    );
    assert.equal(d.scoreEvent(msg(at, 'd1', 1000)).score, big.score, 'scoring did not learn');
    assert.deepEqual(d.scoreEvent(msg(at, 'new-device')), { score: 0, learning: true, reasons: [] });
  });

  it('keeps its baselines across a restart: exported state scores the rest of the stream the same way', () => {
    const events = [
      ...steady(SCENARIO_START, SCENARIO_START + 10 * HOUR),
      ...flood(SCENARIO_START + 9 * HOUR),
    ].sort((a, b) => a.ts - b.ts);
    const cut = events.findIndex((e) => e.ts >= SCENARIO_START + 8 * HOUR);
    const whole = runDetector(events, SCENARIO_START + 11 * HOUR, opts);
    const a = new Detector(opts);
    for (const e of events.slice(0, cut)) a.observe(e);
    const b = new Detector(opts);
    for (const [id, state] of a.exportStates()) assert.equal(b.importState(id, state), true);
    const resumed = [
      ...events.slice(cut).flatMap((e) => b.observe(e)),
      ...b.flush(SCENARIO_START + 11 * HOUR),
    ];
    assert.deepEqual(resumed, whole);
    assert.equal(
      b.importState('x', Buffer.from([99, 1, 2])),
      false,
      'another layout is refused, not misread',
    );
  });
});

describe('portcullis detect --replay', () => {
  it('writes findings as JSON lines, reports malformed lines by number and ignores unknown fields', async (t) => {
    const dir = tempDir(t);
    const file = join(dir, 'events.jsonl');
    const iso = (ms: number) => new Date(ms).toISOString();
    const lines = [
      ...steady(SCENARIO_START, SCENARIO_START + 3 * HOUR).map((e) =>
        JSON.stringify({ ...e, ts: iso(e.ts), extra: 'ignored' }),
      ),
      '{"ts": "yesterday", "device": "d1", "kind": "message", "bytes": 5}',
      'not json',
      '{"ts":"2026-01-05T01:00:00Z","device":"d1","kind":"teleport"}',
      ...flood(SCENARIO_START + 3 * HOUR).map((e) => JSON.stringify({ ...e, ts: iso(e.ts) })),
      JSON.stringify({
        ts: iso(SCENARIO_START + 3 * HOUR + 2 * MIN),
        device: 'd1',
        kind: 'connection',
        dst: '203.0.113.9',
        dport: 22,
        proto: 'tcp',
      }),
    ];
    writeFileSync(file, `${lines.join('\n')}\n`);
    const r = await runCli(['detect', '--replay', file, '--learning-hours', '2'], { cwd: dir });
    assert.equal(r.code, 0, r.stderr);
    const malformedAt = lines.findIndex((l) => l.includes('yesterday')) + 1;
    assert.match(r.stderr, new RegExp(`line ${malformedAt}: ts: .*\\(skipped\\)`));
    assert.match(r.stderr, new RegExp(`line ${malformedAt + 1}: not JSON`));
    assert.match(r.stderr, new RegExp(`line ${malformedAt + 2}: kind: `));
    assert.match(r.stderr, /3 malformed lines skipped/);
    const out = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.deepEqual(
      out.map((o) => o.reasons.map((x: { feature: string }) => x.feature)),
      [['flood'], ['new-destination']],
    );
    for (const o of out) {
      assert.deepEqual(Object.keys(o), ['ts', 'device', 'score', 'severity', 'reasons']);
      assert.equal(o.device, 'd1');
      assert.ok(typeof o.score === 'number');
    }
    assert.equal(out[0].severity, 'high');
    assert.match(out[1].reasons[0].text, /203\.0\.113\.9:22/);
  });

  it('refuses a missing file with a clear error', async (t) => {
    const r = await runCli(['detect', '--replay', join(tempDir(t), 'nope.jsonl')]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /ENOENT|no such file/);
  });
});

describe('behaviour alerts and automatic responses', () => {
  function setup(t: Parameters<typeof tempDir>[0], responses: unknown[]) {
    const dir = tempDir(t);
    const clock = new ManualClock(SCENARIO_START);
    const config = parseConfig(
      {
        dataDir: join(dir, 'var'),
        segments: [
          {
            name: 'sensors',
            role: 'sensors',
            vlanId: 20,
            parentInterface: 'lan0',
            subnet: '10.20.0.0/24',
            gatewayAddress: '10.20.0.1',
          },
        ],
        anomaly: { learningHours: 6, responses, siem: { jsonlFile: join(dir, 'alerts.jsonl') } },
      },
      dir,
    );
    const core = Core.open(config, clock);
    t.after(() => core.close());
    for (const id of ['d1', 'cam']) {
      core.identity.addPskDevice(
        {
          id,
          pskIdentity: id,
          pskHex: '11'.repeat(16),
          segment: 'sensors',
          type: id === 'cam' ? 'camera' : 'thermometer',
        },
        'test',
      );
    }
    const makeService = () =>
      new AnomalyService({
        config,
        store: core.store,
        audit: core.audit,
        identity: core.identity,
        segmentation: core.segmentation,
        clock,
        logger: createLogger('fatal'),
      });
    const service = makeService();
    const feed = async (events: DetectorEvent[]) => {
      for (const e of events) {
        clock.set(e.ts);
        service.observe(e);
      }
      await service.idle();
    };
    return { dir, core, service, feed, makeService };
  }

  it('stores one alert per kind until acknowledged, explains it, exports it, and audits the acknowledgement', async (t) => {
    const { dir, core, feed } = setup(t, []);
    await feed(
      [
        ...steady(SCENARIO_START, SCENARIO_START + 12 * HOUR),
        ...flood(SCENARIO_START + 7 * HOUR),
        ...flood(SCENARIO_START + 9 * HOUR),
      ].sort((a, b) => a.ts - b.ts),
    );
    const open = core.store.alerts.list({ open: true });
    assert.equal(open.length, 1, 'two floods fold into one open alert');
    assert.equal(open[0]?.kind, 'anomaly.flood');
    assert.equal(open[0]?.count, 2);
    assert.match(open[0]?.explanation ?? '', /message flood: 50\d messages in 60 s, expected 1 ± 0.50/);
    const exported = readFileSync(join(dir, 'alerts.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.equal(exported.length, 2);
    assert.equal(exported[0].type, 'portcullis.alert');
    assert.equal(exported[0].alertId, open[0]?.id);
    assert.deepEqual(exported[0].kinds, ['flood']);
    assert.equal(exported[0].response, 'alert');
    const config = join(dir, 'config.yaml');
    writeFileSync(
      config,
      `dataDir: ${join(dir, 'var')}\nsegments: [{name: sensors, role: sensors, vlanId: 20, parentInterface: lan0, subnet: 10.20.0.0/24, gatewayAddress: 10.20.0.1}]\n`,
    );
    const ack = await runCli(['--config', config, 'alerts', 'ack', String(open[0]?.id)], { cwd: dir });
    assert.equal(ack.code, 0, ack.stderr);
    const again = await runCli(['--config', config, 'alerts', 'ack', String(open[0]?.id)], { cwd: dir });
    assert.match(again.stderr, /already acknowledged/);
    const actions = [...core.store.audit.iterate()].map((e) => e.action);
    assert.equal(actions.at(-1), 'alert.acknowledge');
  });

  it('quarantines on a high finding when the policy says so, audited as the anomaly engine, and a person can release it', async (t) => {
    const { core, feed } = setup(t, [{ segment: 'sensors', minSeverity: 'high', action: 'quarantine' }]);
    await feed(
      [...steady(SCENARIO_START, SCENARIO_START + 8 * HOUR), ...flood(SCENARIO_START + 7 * HOUR)].sort(
        (a, b) => a.ts - b.ts,
      ),
    );
    const d = core.store.devices.get('d1');
    assert.equal(d?.state, 'quarantined');
    assert.equal(d?.quarantine?.mode, 'observe');
    assert.match(d?.quarantine?.reason ?? '', /^anomaly alert \d+: message flood/);
    const entry = [...core.store.audit.iterate()].find((e) => e.action === 'device.quarantine');
    assert.equal(entry?.actor, 'anomaly');
    assert.equal(core.identity.release('d1', 'cli:tech').state, 'active', 'reversible');
  });

  it('matches responses by device class and severity: a medium finding on a camera only alerts; revoke isolates', async (t) => {
    const { core, feed } = setup(t, [
      { type: 'camera', minSeverity: 'high', action: 'revoke' },
      { minSeverity: 'high', action: 'rate-limit', perSecond: 2, durationMinutes: 30 },
    ]);
    const base = [
      ...steady(SCENARIO_START, SCENARIO_START + 9 * HOUR, 60_000, 'cam'),
      ...steady(SCENARIO_START, SCENARIO_START + 9 * HOUR, 60_000, 'd1'),
    ];
    const newDestination: DetectorEvent = {
      ts: SCENARIO_START + 7 * HOUR,
      device: 'cam',
      kind: 'connection',
      dst: '203.0.113.1',
      dport: 23,
      proto: 'tcp',
    };
    await feed(
      [
        ...base,
        newDestination,
        ...flood(SCENARIO_START + 8 * HOUR, 500, 'cam'),
        ...flood(SCENARIO_START + 8 * HOUR, 500, 'd1'),
      ].sort((a, b) => a.ts - b.ts),
    );
    const cam = core.store.devices.get('cam');
    assert.equal(cam?.state, 'quarantined', 'the flood (high) revoked the camera');
    assert.equal(cam?.quarantine?.mode, 'isolate');
    assert.ok(core.store.alerts.list({ deviceId: 'cam' }).some((a) => a.kind === 'anomaly.new-destination'));
    assert.equal(
      core.store.devices.get('d1')?.state,
      'active',
      'the thermometer is rate-limited, not quarantined',
    );
    const limits = core.store.rateLimits.active(new Date(SCENARIO_START + 8 * HOUR + 10 * MIN).toISOString());
    assert.deepEqual(
      limits.map((l) => [l.deviceId, l.perSecond]),
      [['d1', 2]],
    );
    const audited = [...core.store.audit.iterate()]
      .filter((e) => e.actor === 'anomaly')
      .map((e) => `${e.action} ${e.target}`);
    assert.deepEqual(audited.sort(), ['device.quarantine cam', 'device.rate-limit d1']);
  });

  it('restores baselines saved at stop, so a restart does not start learning again', async (t) => {
    const { service, feed, makeService } = setup(t, []);
    await feed(steady(SCENARIO_START, SCENARIO_START + 7 * HOUR));
    await service.stop();
    const again = makeService();
    assert.equal(again.detector.isLearning('d1', SCENARIO_START + 7 * HOUR), false);
  });
});
