/**
 * The device page shows the device's policy profile (and whether the device overrides it) and the messages its
 * policy refused since the gateway started, by rule, with the last reason (issue 24). In process, through the
 * same policy service the data path calls.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { site } from './helpers/ui.ts';

describe('UI: policy on the device page', () => {
  it('shows the profile, the overrides and the refusals by rule', async (t) => {
    const { core, login } = site(t, {
      policy: { profiles: { thermo: { maxPayloadBytes: 8, contentFormats: [50] } } },
    });
    core.identity.addPskDevice({ id: 'dev-1', pskIdentity: 'dev-1', generate: true }, 'test');
    core.identity.addPskDevice({ id: 'dev-2', pskIdentity: 'dev-2', generate: true }, 'test');
    core.policy.assign('dev-1', { profile: 'thermo', overrides: { maxPayloadBytes: 4 } }, 'test');
    const post = (payload: string, contentFormat: number) =>
      core.policy.check(core.store.devices.get('dev-1'), {
        method: 'POST',
        resource: '/telemetry',
        contentFormat,
        payload: Buffer.from(payload),
      });
    assert.equal((await post('{"t":21.5}', 50)).allow, false);
    assert.equal((await post('{"t":2}', 50)).allow, false);
    assert.equal((await post('1', 0)).allow, false);
    assert.equal((await post('1', 50)).allow, true);
    const { b } = await login('tech', 'technician');
    const page = await b.page('GET', '/devices/dev-1');
    assert.equal(page.status, 200);
    assert.match(page.text, /<dd id="policy-profile">thermo, with device overrides<\/dd>/);
    assert.match(page.text, /3 since the gateway started \(size 2, contentFormat 1\)/);
    assert.match(page.text, /content format 0 is not allowed/);
    const other = await b.page('GET', '/devices/dev-2');
    assert.match(other.text, /none \(known and active only\)/);
    assert.match(other.text, /none since the gateway started/);
  });

  it('a technician sets the profile from the device page (audited); an unknown profile is refused', async (t) => {
    const { core, login } = site(t, { policy: { profiles: { thermo: { maxPayloadBytes: 8 } } } });
    core.identity.addPskDevice({ id: 'dev-1', pskIdentity: 'dev-1', generate: true }, 'test');
    const { b } = await login('tech', 'technician');
    assert.match((await b.page('GET', '/devices/dev-1')).text, /<option value="thermo">thermo<\/option>/);
    const set = await b.page('POST', '/devices/dev-1/profile', { profile: 'thermo' });
    assert.equal(set.status, 303);
    assert.equal(core.store.devices.get('dev-1')?.policyProfile, 'thermo');
    const entry = core.store.audit
      .search({ target: 'dev-1', limit: 5 })
      .find((e) => e.action === 'device.policy');
    assert.equal(entry?.actor, 'ui:tech');
    assert.match((await b.page('GET', '/devices/dev-1')).text, /<dd id="policy-profile">thermo<\/dd>/);
    const bad = await b.page('POST', '/devices/dev-1/profile', { profile: 'nosuch' });
    assert.equal(core.store.devices.get('dev-1')?.policyProfile, 'thermo', 'unchanged');
    assert.equal(bad.flash?.kind, 'error');
    assert.match(bad.flash?.text ?? '', /no profile nosuch in the configuration/);
    await b.page('POST', '/devices/dev-1/profile', { profile: '' });
    assert.equal(core.store.devices.get('dev-1')?.policyProfile, null);
  });
});
