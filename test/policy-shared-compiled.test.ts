/**
 * Devices without policy overrides share their profile's compiled policy (issue 23: a compiled copy per device
 * was ~350 bytes each). Sharing must not leak one device's overrides or state into another's decision, and a
 * profile replaced by a fleet document must reach every device at its next message.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { policySchema } from '../gateway/src/config/policy-schema.ts';
import { PolicyEngine, type PolicyRequest } from '../gateway/src/policy/engine.ts';
import { siteDevice } from './helpers/site-model.ts';

const config = policySchema.parse({
  timeZone: 'UTC',
  defaultProfile: 'narrow',
  profiles: {
    narrow: { resources: [{ path: '/telemetry', methods: ['POST'] }] },
    wide: {
      resources: [
        { path: '/telemetry', methods: ['POST'] },
        { path: '/status', methods: ['POST'] },
      ],
    },
  },
});
const at = Date.parse('2026-01-05T11:00:00Z');
const to = (resource: string): PolicyRequest => ({
  method: 'POST',
  resource,
  contentFormat: null,
  payload: Buffer.from('1'),
});

describe('policy engine: compiled policies shared by profile', () => {
  it('devices of one profile decide alike; an override and another profile stay their own', () => {
    const e = new PolicyEngine(config);
    const a = siteDevice('a', null, { policyProfile: 'narrow' });
    const b = siteDevice('b', null, { policyProfile: 'narrow' });
    const byDefault = siteDevice('d', null, { policyProfile: null });
    const wide = siteDevice('w', null, { policyProfile: 'wide' });
    const overridden = siteDevice('o', null, {
      policyProfile: 'narrow',
      policyOverrides: { resources: [{ path: '/status', methods: ['POST'] }] },
    });
    for (const d of [a, b, byDefault]) {
      assert.equal(e.decide(d, to('/telemetry'), at).allow, true, d.id);
      assert.equal(e.decide(d, to('/status'), at).allow, false, d.id);
    }
    assert.equal(e.decide(wide, to('/status'), at).allow, true);
    assert.equal(e.decide(overridden, to('/status'), at).allow, true);
    assert.equal(e.decide(overridden, to('/telemetry'), at).allow, false);
    // Asked again after the others compiled theirs: still its own profile's answer.
    assert.equal(e.decide(a, to('/status'), at).allow, false);
    assert.equal(e.decide(wide, to('/status'), at).allow, true);
  });

  it('a device that moves to another profile, and a replaced profile, apply at the next message', () => {
    const e = new PolicyEngine(config);
    const a = siteDevice('a', null, { policyProfile: 'narrow' });
    const b = siteDevice('b', null, { policyProfile: 'narrow' });
    assert.equal(e.decide(a, to('/status'), at).allow, false);
    assert.equal(e.decide(b, to('/status'), at).allow, false);
    assert.equal(e.decide({ ...a, policyProfile: 'wide' }, to('/status'), at).allow, true);
    assert.equal(e.decide(b, to('/status'), at).allow, false, 'the other device keeps its profile');
    e.replaceProfiles({
      ...config.profiles,
      narrow: { resources: [{ path: '/status', methods: ['POST'] }] },
    });
    assert.equal(e.decide(b, to('/status'), at).allow, true);
    assert.equal(e.decide(b, to('/telemetry'), at).allow, false);
  });

  it('overrides given to a device and taken away again apply at its next message', () => {
    const e = new PolicyEngine(config);
    const a = siteDevice('a', null, { policyProfile: 'narrow' });
    const b = siteDevice('b', null, { policyProfile: 'narrow' });
    const widened = { ...a, policyOverrides: { resources: [{ path: '/status', methods: ['POST'] }] } };
    assert.equal(e.decide(a, to('/status'), at).allow, false);
    assert.equal(e.decide(widened, to('/status'), at).allow, true);
    assert.equal(e.decide(b, to('/status'), at).allow, false, 'the profile itself is unchanged');
    assert.equal(e.decide(a, to('/status'), at).allow, false, 'overrides removed: the profile again');
    const narrowed = { ...a, policyOverrides: { resources: [{ path: '/telemetry', methods: ['PUT'] }] } };
    assert.equal(e.decide(narrowed, to('/telemetry'), at).allow, false, 'other overrides: compiled anew');
    assert.equal(e.decide(widened, to('/status'), at).allow, true);
  });
});
