/**
 * identity's change stamp (what the session review, the CRL reload, the firewall reconciler and the pull
 * manager poll) moves for writes they depend on, from any connection — and not for the uplink queue's or
 * last_seen's, which come from another connection under load once the queue commits off the main thread
 * (issue 23; migration 25's triggers).
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { ManualClock } from '../gateway/src/clock.ts';
import { parseConfig } from '../gateway/src/config/index.ts';
import { Core } from '../gateway/src/core.ts';
import { DeviceCache } from '../gateway/src/identity/device-cache.ts';
import { DATABASE_FILE, Store } from '../gateway/src/store/index.ts';
import { tempDir } from './helpers/tmp.ts';

/** The gateway's Core, a second one as the CLI opens it, and a bare connection as the queue writer's. */
function twoProcesses(t: TestContext) {
  const dir = tempDir(t);
  const clock = new ManualClock(Date.UTC(2026, 11, 6, 9));
  const config = parseConfig(
    { dataDir: join(dir, 'var'), policy: { profiles: { slow: { contentFormats: [50] } } } },
    dir,
  );
  const gateway = Core.open(config, clock);
  t.after(() => gateway.close());
  const cli = Core.open(config, clock);
  t.after(() => cli.close());
  const writer = Store.open(join(config.dataDir, DATABASE_FILE));
  t.after(() => writer.close());
  cli.identity.addPskDevice({ id: 's1', pskIdentity: 's1', generate: true }, 'test');
  return { gateway, cli, writer };
}

/** Past the device cache's recheck window (1 ms), after which another process's identity write shows. */
const settle = () => new Promise((r) => setTimeout(r, 5));

function enqueue(store: Store, n: number): number[] {
  const ids: number[] = [];
  store.transaction(() => {
    for (let i = 0; i < n; i++) {
      ids.push(
        store.queue.enqueue({
          deviceId: 's1',
          topic: 'site/devices/s1/telemetry',
          payload: Buffer.from([i]),
          properties: {},
          enqueuedAt: '2026-12-06T09:00:00.000Z',
        }),
      );
    }
    store.devices.touch('s1', '2026-12-06T09:00:01.000Z');
  });
  return ids;
}

describe('identity change stamp (migration 25)', () => {
  it('does not move for queue inserts, PUBACK deletes and last_seen from another connection', (t) => {
    const { gateway, writer } = twoProcesses(t);
    const before = gateway.identity.changeStamp;
    const dataVersion = gateway.store.dataVersion();
    const ids = enqueue(writer, 20);
    writer.transaction(() => {
      for (const id of ids) writer.queue.delete(id);
    });
    assert.equal(gateway.store.devices.get('s1')?.lastSeen, '2026-12-06T09:00:01.000Z');
    assert.equal(gateway.identity.changeStamp, before);
    // PRAGMA data_version, the stamp's former source, did move: a review would have run for nothing.
    assert.notEqual(gateway.store.dataVersion(), dataVersion);
  });

  it('moves when another process decommissions a device', (t) => {
    const { gateway, cli } = twoProcesses(t);
    const before = gateway.identity.changeStamp;
    cli.identity.decommission('s1', 'cli', 'sold');
    assert.notEqual(gateway.identity.changeStamp, before);
  });

  it('moves when another process assigns a policy profile (policy.assign writes devices itself)', (t) => {
    const { gateway, cli } = twoProcesses(t);
    const before = gateway.identity.changeStamp;
    cli.policy.assign('s1', { profile: 'slow' }, 'cli');
    assert.notEqual(gateway.identity.changeStamp, before);
  });

  it('moves when another process quarantines or releases a device, or adds one', (t) => {
    const { gateway, cli } = twoProcesses(t);
    let stamp = gateway.identity.changeStamp;
    const moved = () => {
      const now = gateway.identity.changeStamp;
      const changed = now !== stamp;
      stamp = now;
      return changed;
    };
    cli.identity.quarantine('s1', { mode: 'observe', reason: 'test' }, 'cli');
    assert.ok(moved(), 'quarantine');
    cli.identity.release('s1', 'cli');
    assert.ok(moved(), 'release');
    cli.identity.addPskDevice({ id: 's2', pskIdentity: 's2', generate: true }, 'cli');
    assert.ok(moved(), 'a new device and its credential');
  });
});

/** deviceFor keeps each credential's device while the stamp stands (issue 23: a reading no longer reads it). */
describe('the device behind a credential (device-cache.ts)', () => {
  const psk = (id: string) => ({ kind: 'psk', identity: Buffer.from(id) }) as const;

  it('answers one frozen device per credential while only readings and last_seen are written', (t) => {
    const { gateway, writer } = twoProcesses(t);
    const first = gateway.identity.deviceFor(psk('s1'));
    assert.equal(first?.state, 'active');
    enqueue(writer, 5);
    assert.equal(gateway.identity.deviceFor(psk('s1')), first, 'the same object: nothing was read again');
    assert.ok(Object.isFrozen(first) && Object.isFrozen(first?.policyOverrides));
    assert.throws(() => {
      (first as { state: string }).state = 'decommissioned';
    }, TypeError);
  });

  it("answers this process's own writes at once, whichever module made them", (t) => {
    const { gateway } = twoProcesses(t);
    assert.equal(gateway.identity.deviceFor(psk('s1'))?.state, 'active');
    gateway.identity.quarantine('s1', { mode: 'observe', reason: 'test' }, 'anomaly');
    assert.equal(gateway.identity.deviceFor(psk('s1'))?.state, 'quarantined');
    gateway.identity.release('s1', 'test');
    gateway.policy.assign('s1', { profile: 'slow' }, 'test');
    assert.equal(gateway.identity.deviceFor(psk('s1'))?.policyProfile, 'slow');
    // A repository write beside identity's service (the TEMP triggers see every write of the connection).
    gateway.store.devices.setState('s1', 'decommissioned', '2026-12-06T09:00:02.000Z');
    assert.equal(gateway.identity.deviceFor(psk('s1'))?.state, 'decommissioned');
  });

  it("answers another process's changes within a millisecond: quarantine, profile, decommission", async (t) => {
    const { gateway, cli } = twoProcesses(t);
    assert.equal(gateway.identity.deviceFor(psk('s1'))?.state, 'active');
    cli.identity.quarantine('s1', { mode: 'observe', reason: 'test' }, 'cli');
    await settle();
    assert.equal(gateway.identity.deviceFor(psk('s1'))?.state, 'quarantined');
    cli.identity.release('s1', 'cli');
    cli.policy.assign('s1', { profile: 'slow' }, 'cli');
    await settle();
    assert.equal(gateway.identity.deviceFor(psk('s1'))?.policyProfile, 'slow');
    cli.identity.decommission('s1', 'cli', 'sold');
    await settle();
    assert.equal(gateway.identity.deviceFor(psk('s1')), undefined, 'its credential is revoked');
  });

  it('does not keep a device read inside a transaction that rolls back', async (t) => {
    const { gateway, cli } = twoProcesses(t);
    assert.throws(() =>
      gateway.store.transaction(() => {
        gateway.store.devices.setState('s1', 'quarantined', '2026-12-06T09:00:02.000Z');
        assert.equal(gateway.identity.deviceFor(psk('s1'))?.state, 'quarantined');
        throw new Error('rolled back');
      }),
    );
    assert.equal(gateway.identity.deviceFor(psk('s1'))?.state, 'active');
    // The counter moved back with the rollback; one write of another process moves it to the value the rolled-back
    // read saw, so a device kept from that read would now be answered as current.
    cli.store.devices.setState('s1', 'active', '2026-12-06T09:00:03.000Z');
    await settle();
    assert.equal(gateway.identity.deviceFor(psk('s1'))?.state, 'active');
  });
});

/**
 * The cache on its own, on two real connections, with its re-read of identity_version put off for good: what it
 * answers then comes from the TEMP triggers and from versions its callers read, not from a millisecond passing.
 */
describe("device cache: this connection's triggers and a reviewer's version", () => {
  const NOW = '2026-12-06T09:00:00.000Z';
  function stores(t: TestContext) {
    const file = join(tempDir(t), 'gw.db');
    const own = Store.open(file);
    t.after(() => own.close());
    const other = Store.open(file);
    t.after(() => other.close());
    own.devices.insert({ id: 'd1', credentialKind: 'psk', state: 'active' }, NOW);
    const cache = new DeviceCache(
      () => own.devices.identityVersion(),
      () => own.inTransaction,
      (invalidate) => own.devices.onIdentityWrite(invalidate),
      Number.POSITIVE_INFINITY,
    );
    const load = () => own.devices.get('d1');
    return { own, other, cache, load };
  }

  it('calls back at once for identity writes of this connection, not for last_seen or firmware', (t) => {
    const { own } = stores(t);
    let calls = 0;
    assert.equal(
      own.devices.onIdentityWrite(() => calls++),
      true,
    );
    own.devices.setState('d1', 'quarantined', NOW);
    assert.equal(calls, 1, 'a state change');
    own.credentials.insert({ deviceId: 'd1', kind: 'psk', lookup: 'd1' }, NOW);
    assert.equal(calls, 2, 'a credential');
    own.devices.touch('d1', NOW);
    own.devices.setFirmwareVersion('d1', '1.2.3', NOW);
    assert.equal(calls, 2, 'last_seen and firmware_version are not identity');
  });

  it('drops what it keeps when this connection writes, and only then', (t) => {
    const { own, cache, load } = stores(t);
    assert.equal(cache.get('psk:d1', load)?.state, 'active');
    own.devices.setState('d1', 'quarantined', NOW);
    assert.equal(cache.get('psk:d1', load)?.state, 'quarantined');
  });

  it("answers another connection's write once a reviewer has read the version that moved", (t) => {
    const { own, other, cache, load } = stores(t);
    assert.equal(cache.get('psk:d1', load)?.state, 'active');
    other.devices.setState('d1', 'decommissioned', NOW);
    assert.equal(cache.get('psk:d1', load)?.state, 'active', 'kept: nothing re-read the version yet');
    cache.observe(own.devices.identityVersion());
    assert.equal(cache.get('psk:d1', load)?.state, 'decommissioned');
  });

  it('freezes what it hands out, overrides and all', (t) => {
    const { own, cache, load } = stores(t);
    own.devices.setPolicy('d1', null, { resources: ['/telemetry'], rate: { perSecond: 1, burst: 2 } }, NOW);
    const d = cache.get('psk:d1', load);
    assert.ok(d && Object.isFrozen(d));
    const overrides = d.policyOverrides as { resources: string[]; rate: object };
    assert.ok(Object.isFrozen(overrides.resources) && Object.isFrozen(overrides.rate));
  });
});

describe("the data path's device", () => {
  it('carries its standing, segment and policy, not its history (issue 23)', async (t) => {
    const { gateway, cli, writer } = twoProcesses(t);
    enqueue(writer, 1); // last_seen written
    const psk = { kind: 'psk' as const, identity: Buffer.from('s1') };
    const d = gateway.identity.deviceFor(psk);
    assert.ok(d);
    // What each cached device kept and no data-path reader asked for: ~0.15 KiB a device at 10,000.
    for (const history of ['firstSeen', 'lastSeen', 'firmwareVersion', 'createdAt', 'updatedAt'])
      assert.equal(history in d, false, history);
    assert.equal(d.id, 's1');
    assert.equal(d.state, 'active');
    assert.equal(d.quarantine, null);
    // The full row is still there for whoever shows the device.
    assert.equal(gateway.store.devices.get('s1')?.lastSeen, '2026-12-06T09:00:01.000Z');

    cli.identity.quarantine('s1', { mode: 'isolate', reason: 'test' }, 'tech');
    // Another process's write shows once the cache reads identity's version again, within a millisecond (the
    // test above); the quarantine's commit alone may take less than that.
    await settle();
    const q = gateway.identity.deviceFor(psk);
    assert.equal(q?.state, 'quarantined');
    assert.equal(q?.quarantine?.mode, 'isolate');
    assert.equal(q?.quarantine?.reason, 'test');
    assert.ok(q?.quarantine?.since);
  });
});
