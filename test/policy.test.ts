/**
 * Device profiles (issue 24): the policy engine's rules one by one, each with the message it lets through and
 * the one it refuses (the CoAP code and rule named), effective policy and field sources, time windows in the
 * site's time zone, the rate bucket and its Max-Age, CBOR checked against the JSON Schema, fail-closed cases.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { encode as encodeCbor } from 'cbor-x';
import { parseConfig } from '../gateway/src/config/index.ts';
import { policySchema } from '../gateway/src/config/policy-schema.ts';
import { PolicyEngine, type PolicyRequest } from '../gateway/src/policy/engine.ts';
import type { Device } from '../gateway/src/store/index.ts';
import { siteDevice } from './helpers/site-model.ts';

const config = policySchema.parse({
  timeZone: 'Europe/Berlin',
  profiles: {
    thermo: {
      resources: [
        { path: '/telemetry', methods: ['POST'] },
        { path: '/fw/*', methods: ['GET'] },
      ],
      contentFormats: [50, 60],
      maxPayloadBytes: 64,
      schema: {
        type: 'object',
        required: ['t'],
        properties: { t: { type: 'number', minimum: -40, maximum: 85 } },
        additionalProperties: false,
      },
      rate: { perSecond: 1, burst: 2 },
      timeWindows: [{ days: ['mon', 'tue', 'wed', 'thu', 'fri'], from: '06:00', to: '22:00' }],
      segments: ['sensors'],
    },
    open: {},
  },
});

// Monday 2026-01-05 12:00 in Berlin is 11:00 UTC (CET, +1).
const MON_NOON = Date.parse('2026-01-05T11:00:00Z');
const json = (v: unknown) => Buffer.from(JSON.stringify(v));
const post = (payload: Buffer, contentFormat: number | null = 50): PolicyRequest => ({
  method: 'POST',
  resource: '/telemetry',
  contentFormat,
  payload,
});
const dev = (over: Partial<Device> = {}) => siteDevice('t1', null, { policyProfile: 'thermo', ...over });

function refusedBy(d: ReturnType<PolicyEngine['decide']>, rule: string, code: string) {
  assert.equal(d.allow, false, `expected a refusal by ${rule}`);
  if (d.allow) return;
  assert.equal(d.rule, rule, d.reason);
  assert.equal(d.code, code);
}

describe('policy engine: every rule kind allows and refuses', () => {
  const good = post(json({ t: 21.5 }));

  it('a message that fits the profile is allowed, by the profile', () => {
    const e = new PolicyEngine(config);
    assert.deepEqual(e.decide(dev(), good, MON_NOON), { allow: true, by: 'profile:thermo' });
  });

  it('identity 4.01 and state 4.03', () => {
    const e = new PolicyEngine(config);
    refusedBy(e.decide(undefined, good, MON_NOON), 'identity', '4.01');
    refusedBy(e.decide(dev({ state: 'quarantined' }), good, MON_NOON), 'state', '4.03');
  });

  it('resource 4.03 and method 4.05 (collections too)', () => {
    const e = new PolicyEngine(config);
    refusedBy(
      e.decide(dev(), { ...good, resource: '/commands', method: 'GET' }, MON_NOON),
      'resource',
      '4.03',
    );
    refusedBy(e.decide(dev(), { ...good, method: 'PUT' }, MON_NOON), 'method', '4.05');
    const fw = { method: 'GET', resource: '/fw/abc', contentFormat: null, payload: Buffer.alloc(0) } as const;
    assert.equal(e.decide(dev(), fw, MON_NOON).allow, true);
    refusedBy(e.decide(dev(), { ...fw, resource: '/fw/' }, MON_NOON), 'resource', '4.03');
  });

  it('time windows are read in the site time zone: 22:30 Berlin is refused though it is 21:30 UTC', () => {
    const e = new PolicyEngine(config);
    refusedBy(e.decide(dev(), good, Date.parse('2026-01-05T21:30:00Z')), 'time', '4.03');
    refusedBy(e.decide(dev(), good, Date.parse('2026-01-10T11:00:00Z')), 'time', '4.03'); // Saturday
    assert.equal(e.decide(dev(), good, Date.parse('2026-01-05T05:30:00Z')).allow, true); // 06:30 Berlin
  });

  it('a window across midnight opens at from and closes at to the next day', () => {
    const night = policySchema.parse({
      timeZone: 'UTC',
      profiles: { n: { timeWindows: [{ days: ['mon'], from: '22:00', to: '02:00' }] } },
    });
    const e = new PolicyEngine(night);
    const d = dev({ policyProfile: 'n' });
    assert.equal(e.decide(d, good, Date.parse('2026-01-05T23:00:00Z')).allow, true);
    assert.equal(e.decide(d, good, Date.parse('2026-01-06T01:00:00Z')).allow, true);
    refusedBy(e.decide(d, good, Date.parse('2026-01-06T03:00:00Z')), 'time', '4.03');
  });

  it('segment 4.03: a device not placed, or placed elsewhere', () => {
    const e = new PolicyEngine(config);
    refusedBy(e.decide(dev({ segment: null }), good, MON_NOON), 'segment', '4.03');
    refusedBy(e.decide(dev({ segment: 'office' }), good, MON_NOON), 'segment', '4.03');
  });

  it('content format 4.15, size 4.13', () => {
    const e = new PolicyEngine(config);
    refusedBy(e.decide(dev(), post(json({ t: 1 }), 0), MON_NOON), 'contentFormat', '4.15');
    refusedBy(e.decide(dev(), post(json({ t: 1 }), null), MON_NOON), 'contentFormat', '4.15');
    refusedBy(e.decide(dev(), post(json({ t: 1, pad: 'x'.repeat(80) })), MON_NOON), 'size', '4.13');
  });

  it('schema 4.00: JSON and CBOR are checked against the same JSON Schema; the reason names no payload value', () => {
    const e = new PolicyEngine(config);
    refusedBy(e.decide(dev(), post(json({ t: 'hot' })), MON_NOON), 'schema', '4.00');
    refusedBy(e.decide(dev(), post(Buffer.from('{not json')), MON_NOON), 'schema', '4.00');
    assert.equal(e.decide(dev(), post(encodeCbor({ t: 20 }), 60), MON_NOON).allow, true);
    const bad = e.decide(dev(), post(encodeCbor({ t: 900, secret: 'hunter2' }), 60), MON_NOON);
    refusedBy(bad, 'schema', '4.00');
    assert.doesNotMatch(JSON.stringify(bad), /hunter2|900/);
    refusedBy(e.decide(dev(), post(Buffer.from([0xff, 0xff]), 60), MON_NOON), 'schema', '4.00');
  });

  it("content format and schema apply to readings, not to the gateway's own resources (a firmware report)", () => {
    const e = new PolicyEngine(
      policySchema.parse({
        profiles: {
          p: {
            resources: [
              { path: '/telemetry', methods: ['POST'] },
              { path: '/fw/report', methods: ['POST'] },
            ],
            contentFormats: [60],
            maxPayloadBytes: 32,
            schema: { type: 'object', required: ['t'] },
          },
        },
      }),
    );
    const d = dev({ policyProfile: 'p' });
    const report = {
      method: 'POST',
      resource: '/fw/report',
      contentFormat: null,
      payload: json({ result: 'ok' }),
    } as const;
    assert.equal(e.decide(d, report, MON_NOON).allow, true);
    refusedBy(e.decide(d, { ...report, payload: Buffer.alloc(40) }, MON_NOON), 'size', '4.13');
    refusedBy(e.decide(d, post(json({ result: 'ok' }), 60), MON_NOON), 'schema', '4.00');
  });

  it('rate 4.29 with Max-Age: the burst passes, the next waits, a token returns after 1/perSecond', () => {
    const e = new PolicyEngine(config);
    const d = dev();
    assert.equal(e.decide(d, good, MON_NOON).allow, true);
    assert.equal(e.decide(d, good, MON_NOON).allow, true);
    const third = e.decide(d, good, MON_NOON);
    refusedBy(third, 'rate', '4.29');
    assert.equal(!third.allow && third.maxAge, 1);
    // A dry run (policy test) does not take a token.
    assert.equal(e.decide(d, good, MON_NOON + 1000, true).allow, true);
    assert.equal(e.decide(d, good, MON_NOON + 1000).allow, true);
    refusedBy(e.decide(d, good, MON_NOON + 1000), 'rate', '4.29');
  });

  it('refused messages take no rate token (the rate is the last rule)', () => {
    const e = new PolicyEngine(config);
    const d = dev();
    for (let i = 0; i < 5; i++) refusedBy(e.decide(d, post(json({ t: 'x' })), MON_NOON), 'schema', '4.00');
    assert.equal(e.decide(d, good, MON_NOON).allow, true);
  });
});

describe('policy engine: effective policy, overrides, fail closed', () => {
  it('a device override replaces one field; each field names its source', () => {
    const e = new PolicyEngine(config);
    const d = dev({ policyOverrides: { maxPayloadBytes: 8 } });
    const eff = e.effective(d);
    assert.equal(eff.profile, 'thermo');
    assert.equal(eff.sources.maxPayloadBytes, 'device');
    assert.equal(eff.sources.rate, 'profile:thermo');
    assert.equal(eff.sources.decision, 'unset');
    const r = e.decide(d, post(json({ t: 21.5 })), MON_NOON);
    refusedBy(r, 'size', '4.13');
    assert.equal(!r.allow && r.by, 'device');
  });

  it('a device without a profile takes the default; without a default it is checked for known and active only', () => {
    const withDefault = new PolicyEngine(policySchema.parse({ ...config, defaultProfile: 'thermo' }));
    const bare = siteDevice('b', null);
    assert.equal(withDefault.effective(bare).profileFrom, 'default');
    refusedBy(withDefault.decide(bare, post(json({ t: 1 }), 0), MON_NOON), 'contentFormat', '4.15');
    const none = new PolicyEngine(config);
    assert.deepEqual(none.decide(bare, post(Buffer.from('anything'), 0), MON_NOON), {
      allow: true,
      by: 'gateway',
    });
  });

  it('a profile missing from the configuration, or overrides that are not profile fields, refuse every message', () => {
    const e = new PolicyEngine(config);
    refusedBy(e.decide(dev({ policyProfile: 'gone' }), post(json({ t: 1 })), MON_NOON), 'profile', '4.03');
    refusedBy(
      e.decide(dev({ policyOverrides: { bogus: 1 } }), post(json({ t: 1 })), MON_NOON),
      'profile',
      '4.03',
    );
  });

  it('a schema that does not compile is a configuration error (config check and start)', () => {
    const bad = { profiles: { x: { schema: { type: 'nonsense' } } } };
    assert.throws(
      () => parseConfig({ policy: bad }, '/tmp'),
      (err: Error) => /policy\.profiles\.x\.schema: not a JSON Schema ajv compiles/.test(err.message),
    );
    // The engine checks again when handed a section that did not come through the configuration.
    assert.throws(
      () => new PolicyEngine({ ...policySchema.parse({}), ...bad } as never),
      (err: Error & { code?: string }) => err.code === 'ERR_POLICY_SCHEMA_INVALID',
    );
    assert.throws(() => policySchema.parse({ defaultProfile: 'nope' }), /defaultProfile/);
    assert.throws(() => policySchema.parse({ timeZone: 'Mars/Olympus' }), /time zone/);
    // A profile's segment must exist: otherwise its devices would be refused forever without a word at start.
    assert.throws(
      () => parseConfig({ policy: { profiles: { a: { segments: ['nope'] } } } }, '/tmp'),
      (err: Error) => /policy\.profiles\.a\.segments\.0: no segment nope in segments/.test(err.message),
    );
  });
});
