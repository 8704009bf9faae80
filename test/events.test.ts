/**
 * The gateway's event stream: a listener that names its types gets only those, and the data path asks whether
 * anyone wants a `device.message` before building one for a reading (issue 23).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type GatewayEvent, GatewayEvents } from '../gateway/src/events.ts';

const message: GatewayEvent = {
  type: 'device.message',
  ts: '2026-12-06T09:00:00.000Z',
  deviceId: 'd1',
  resource: '/telemetry',
  contentFormat: null,
  payload: '',
  size: 0,
  allowed: true,
};
const state: GatewayEvent = {
  type: 'device.state',
  ts: '2026-12-06T09:00:00.000Z',
  deviceId: 'd1',
  from: 'active',
  to: 'quarantined',
  actor: 'test',
};

describe('gateway events', () => {
  it('gives a listener only the types it named, and wants() says so', () => {
    const events = new GatewayEvents();
    const got: string[] = [];
    const off = events.on((e) => got.push(e.type), ['device.state', 'alert']);
    assert.equal(events.wants('device.message'), false, 'no reading builds an event nobody takes');
    assert.equal(events.wants('device.state'), true);
    events.emit(message);
    events.emit(state);
    assert.deepEqual(got, ['device.state']);
    off();
    assert.equal(events.wants('device.state'), false);
    assert.equal(events.listenerCount, 0);
  });

  it('gives a listener without types every event, and counts each listener once', () => {
    const events = new GatewayEvents();
    const got: string[] = [];
    const listener = (e: GatewayEvent) => got.push(e.type);
    const off = events.on(listener);
    events.on(listener);
    assert.equal(events.wants('device.message'), true);
    events.emit(message);
    assert.deepEqual(got, ['device.message']);
    off();
    off();
    assert.equal(events.wants('device.message'), false);
  });

  it("keeps a listener's failure its own: the others still get the event", () => {
    const events = new GatewayEvents();
    let got = 0;
    events.on(() => {
      throw new Error('broken listener');
    });
    events.on(() => got++);
    events.emit(state);
    assert.equal(got, 1);
  });
});
