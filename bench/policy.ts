/**
 * `npm run bench -- policy`: what the per-message policy costs.
 *
 * 1. µs per decision of the policy engine (in process, 1,000 devices, round-robin): no profile, a profile with
 *    every rule but a schema, and with a JSON Schema on a JSON and on a CBOR payload — against the check the
 *    data path made before profiles (known and active: `authorizeTelemetry`) in the same run.
 * 2. End to end (`--e2eSeconds` per phase): one real gateway (`portcullis start`, mosquitto behind it), two
 *    groups of PSK sensors over DTLS — one without a profile, one whose profile has every rule and a JSON Schema —
 *    driven in alternating phases (after a warm-up of each: off, on, off, on… `--pairs` times) with the same load; messages acknowledged per second (an
 *    acknowledgement comes after the durable queue's commit), and the ratio on/off.
 */

import { encode as encodeCbor } from 'cbor-x';
import { generate } from 'coap-packet';
import { systemClock } from '../gateway/src/clock.ts';
import { resolveConfig } from '../gateway/src/config/index.ts';
import { policySchema } from '../gateway/src/config/policy-schema.ts';
import { Core } from '../gateway/src/core.ts';
import { PolicyEngine, type PolicyRequest } from '../gateway/src/policy/engine.ts';
import { authorizeTelemetry } from '../gateway/src/policy/index.ts';
import type { Device } from '../gateway/src/store/index.ts';
import type { TestDtlsClient } from '../test/helpers/dtls-test-client.ts';
import { makeGatewayHome } from '../test/helpers/gateway.ts';
import { startBroker } from '../test/helpers/mosquitto.ts';
import { makePki } from '../test/helpers/pki.ts';
import { siteDevice } from '../test/helpers/site-model.ts';
import { parseOptions, round } from './lib/load.ts';
import { openPskSessions } from './lib/sessions.ts';

const log = (msg: string) => process.stderr.write(`[bench policy] ${msg}\n`);

const SCHEMA = {
  type: 'object',
  required: ['t', 'seq'],
  properties: {
    t: { type: 'number', minimum: -40, maximum: 85 },
    rh: { type: 'number', minimum: 0, maximum: 100 },
    seq: { type: 'integer', minimum: 0 },
  },
  additionalProperties: false,
};

const RULES = {
  resources: [
    { path: '/telemetry', methods: ['POST'] },
    { path: '/commands', methods: ['GET'] },
  ],
  contentFormats: [50, 60],
  maxPayloadBytes: 256,
  rate: { perSecond: 100_000, burst: 100_000 },
  timeWindows: [{ from: '00:00', to: '24:00' }],
};

function timeIt(n: number, op: (i: number) => void): number {
  for (let i = 0; i < Math.min(n, 20_000); i++) op(i); // warm-up (JIT, caches)
  const t0 = performance.now();
  for (let i = 0; i < n; i++) op(i);
  return ((performance.now() - t0) * 1000) / n;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
}

function micro(n: number) {
  const config = policySchema.parse({
    profiles: {
      rules: { ...RULES, segments: ['sensors'] },
      schema: { ...RULES, segments: ['sensors'], schema: SCHEMA },
    },
  });
  const make = (profile: string | null) =>
    Array.from({ length: 1000 }, (_, i) => siteDevice(`d${i}`, null, { policyProfile: profile }));
  const plain = make(null);
  const withRules = make('rules');
  const withSchema = make('schema');
  const json = Buffer.from(JSON.stringify({ t: 21.5, rh: 40, seq: 12345 }));
  const cbor = encodeCbor({ t: 21.5, rh: 40, seq: 12345 });
  const req = (payload: Buffer, contentFormat: number): PolicyRequest => ({
    method: 'POST',
    resource: '/telemetry',
    contentFormat,
    payload,
  });
  const jsonReq = req(json, 50);
  const cborReq = req(cbor, 60);
  const now = Date.now();
  const engine = new PolicyEngine(config);
  const run = (devices: Device[], r: PolicyRequest) => () =>
    timeIt(n, (i) => {
      const d = engine.decide(devices[i % 1000], r, now + i);
      if (!d.allow) throw new Error(`refused: ${d.reason}`);
    });
  const cases = {
    knownAndActive: () => timeIt(n, (i) => authorizeTelemetry(plain[i % 1000])),
    noProfile: run(plain, jsonReq),
    rulesNoSchema: run(withRules, jsonReq),
    schemaJson: run(withSchema, jsonReq),
    schemaCbor: run(withSchema, cborReq),
  };
  const out: Record<string, number> = {};
  for (const [name, f] of Object.entries(cases)) out[name] = round(median([f(), f(), f()]), 3);
  return {
    decisions: n,
    usPerDecision: out,
    overKnownAndActiveUs: Object.fromEntries(
      Object.entries(out).map(([k, v]) => [k, round(v - (out.knownAndActive as number), 3)]),
    ),
  };
}

async function e2e(sensors: number, inflight: number, seconds: number, pairs: number) {
  const pki = makePki();
  const broker = await startBroker({ caPath: pki.caPath, server: pki.broker });
  const home = await makeGatewayHome(pki, broker, 'gw-bench-policy', {
    dtlsLimits:
      '{handshakesPerSecondPerSource: 100000, maxHandshakesPerSource: 1000, maxHandshakesPerPrefix: 1000, maxSessionsPerSource: 100000}',
    extraConfig: [`policy: ${JSON.stringify({ profiles: { bench: { ...RULES, schema: SCHEMA } } })}`],
  });
  const clients: TestDtlsClient[] = [];
  let gateway: Awaited<ReturnType<typeof home.start>> | null = null;
  try {
    const keyOf = (i: number) => Buffer.from(`bench-sensor-key-${String(i).padStart(6, '0')}`);
    const core = Core.open(resolveConfig(home.config).config, systemClock);
    try {
      for (let i = 0; i < 2 * sensors; i++) {
        core.identity.addPskDevice(
          { id: `s${i}`, pskIdentity: `s${i}`, pskHex: keyOf(i).toString('hex') },
          'bench',
        );
        // Every other sensor takes the profile (every rule and the JSON Schema): the two groups' sessions are
        // made interleaved, so neither group is the older or the newer half of the session table.
        if (i % 2 === 1) core.policy.assign(`s${i}`, { profile: 'bench' }, 'bench');
      }
    } finally {
      core.close();
    }
    gateway = await home.start();
    log(`opening ${2 * sensors} DTLS sessions`);
    clients.push(...(await openPskSessions(home.dtlsPort, 2 * sensors, 16, keyOf)));
    const mids = new Array<number>(2 * sensors).fill(0);
    const phase = async (group: 0 | 1) => {
      let sent = 0;
      let refused = 0;
      const until = performance.now() + seconds * 1000;
      const t0 = performance.now();
      await Promise.all(
        Array.from({ length: inflight }, async (_, w) => {
          for (let k = w; performance.now() < until; k += inflight) {
            const i = 2 * (k % sensors) + group;
            const c = clients[i] as TestDtlsClient;
            mids[i] = ((mids[i] as number) + 1) & 0xffff;
            c.send(
              generate({
                code: 'POST',
                messageId: mids[i],
                token: Buffer.from([w & 0xff, k & 0xff]),
                confirmable: true,
                options: [
                  { name: 'Uri-Path', value: Buffer.from('telemetry') },
                  { name: 'Content-Format', value: Buffer.from([50]) },
                ],
                payload: Buffer.from(JSON.stringify({ t: 21.5, rh: 40, seq: k })),
              }),
            );
            const answer = await c.receive();
            // Code byte: 2.04 = 0x44.
            if (answer[1] !== 0x44) refused++;
            sent++;
          }
        }),
      );
      return { sent, refused, perSecond: sent / ((performance.now() - t0) / 1000) };
    };
    log('warm-up (both groups)');
    await phase(0);
    await phase(1);
    const runs: { off: number[]; on: number[]; refused: number } = { off: [], on: [], refused: 0 };
    for (let p = 0; p < 2 * pairs; p++) {
      const group = (p % 2) as 0 | 1;
      log(`phase ${p + 1}/${2 * pairs}: profiles ${group ? 'on' : 'off'}`);
      const r = await phase(group);
      runs.refused += r.refused;
      (group ? runs.on : runs.off).push(r.perSecond);
    }
    const off = runs.off.reduce((a, b) => a + b, 0) / runs.off.length;
    const on = runs.on.reduce((a, b) => a + b, 0) / runs.on.length;
    return {
      sensorsPerGroup: sensors,
      inflight,
      secondsPerPhase: seconds,
      acknowledgedPerSecond: { profilesOff: round(off, 0), profilesOn: round(on, 0) },
      phases: { off: runs.off.map((x) => round(x, 0)), on: runs.on.map((x) => round(x, 0)) },
      refused: runs.refused,
      ratioOnOff: round(on / off, 3),
      // Each pair (off then on, back to back) as its own ratio: less exposed to the shared machine's drift.
      medianPairRatio: round(median(runs.on.map((x, k) => x / (runs.off[k] as number))), 3),
    };
  } finally {
    for (const c of clients) c?.close();
    await gateway?.stop();
    await broker.dispose();
    home.dispose();
    pki.dispose();
  }
}

export async function policyBench(argv: string[]): Promise<unknown> {
  const s = parseOptions('policy', argv, {
    decisions: 200_000,
    sensors: 100,
    inflight: 32,
    e2eSeconds: 2,
    pairs: 5,
  });
  log(`${s.decisions} decisions per case`);
  const perDecision = micro(s.decisions);
  const endToEnd = await e2e(s.sensors, s.inflight, s.e2eSeconds, s.pairs);
  return { bench: 'policy', settings: s, perDecision, endToEnd };
}
