/**
 * The behaviour baselines are saved in steps while the gateway runs (anomaly/baseline-saver.ts): at 10,000 devices
 * one transaction of every baseline held the data path's thread for a third of a second every ten minutes
 * (issue 23). Every baseline still arrives, byte for byte; a device decommissioned meanwhile is not written back,
 * one the detector forgot is skipped; a stop writes everything at once and no step after it.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BaselineSaver, SAVE_STEP } from '../gateway/src/anomaly/baseline-saver.ts';
import { Detector } from '../gateway/src/anomaly/index.ts';
import { createLogger } from '../gateway/src/log.ts';
import { Store } from '../gateway/src/store/index.ts';

const NOW = '2026-12-06T12:00:00.000Z';
const DEVICES = 2 * SAVE_STEP + 200;

function setup(t: { after(fn: () => void): void }) {
  const store = Store.open(':memory:');
  t.after(() => store.close());
  const detector = new Detector({ learningMs: 3_600_000 });
  const ids: string[] = [];
  for (let i = 0; i < DEVICES; i++) {
    const id = `dev-${i}`;
    ids.push(id);
    store.devices.insert({ id, credentialKind: 'psk', state: 'active' }, NOW);
    detector.observe({
      ts: 1_000_000 + i,
      device: id,
      kind: 'message',
      bytes: 20 + (i % 50),
      resource: '/telemetry',
    });
  }
  const saver = new BaselineSaver(store, detector, createLogger('fatal'));
  const saved = () => new Map(store.baselines.all());
  return { store, detector, saver, ids, saved };
}

describe('BaselineSaver', () => {
  it('saves every baseline byte for byte, a step per turn of the event loop', async (t) => {
    const { detector, saver, ids, saved } = setup(t);
    const done = saver.saveInSteps(NOW);
    assert.equal(saved().size, SAVE_STEP, 'one step before the loop turns');
    await done;
    const rows = saved();
    assert.equal(rows.size, DEVICES);
    for (const id of ids) assert.deepEqual(rows.get(id), detector.exportState(id));
  });

  it('does not write back a device decommissioned while it saves, nor one the detector forgot', async (t) => {
    const { store, detector, saver, saved } = setup(t);
    const done = saver.saveInSteps(NOW);
    // Both are in a later step. Decommissioning erases the stored baseline with the device's state.
    store.devices.setState(`dev-${DEVICES - 1}`, 'decommissioned', NOW);
    store.baselines.delete(`dev-${DEVICES - 1}`);
    detector.forget(`dev-${DEVICES - 2}`);
    await done;
    const rows = saved();
    assert.equal(rows.has(`dev-${DEVICES - 1}`), false, 'decommissioned: not written back');
    assert.equal(rows.has(`dev-${DEVICES - 2}`), false, 'forgotten: not written');
    assert.equal(rows.size, DEVICES - 2);
    assert.equal(detector.exportState(`dev-${DEVICES - 1}`), undefined, 'and forgotten in memory');
  });

  it('a stop saves everything at once, and no step of a save in steps runs after it', async (t) => {
    const { store, saver, saved } = setup(t);
    const done = saver.saveInSteps(NOW);
    saver.saveNow(NOW);
    assert.equal(saved().size, DEVICES);
    // Were the save in steps still going, its later steps would write this row again.
    store.baselines.delete(`dev-${DEVICES - 1}`);
    await done; // resolves, does not hang
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
    assert.equal(saved().has(`dev-${DEVICES - 1}`), false);
  });

  it('runs one save at a time', async (t) => {
    const { saver, saved } = setup(t);
    const first = saver.saveInSteps(NOW);
    assert.equal(saver.saveInSteps(NOW), first);
    await first;
    assert.equal(saved().size, DEVICES);
  });
});
