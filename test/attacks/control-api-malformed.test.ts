/**
 * Issue 19, finding 10 (control API part): malformed JSON, 5,000-deep nesting and refused secret fields answered
 * 500. Every malformed body on every route that takes one now answers 400 (415 for a body not sent as JSON) with
 * a stable ERR_CONTROL_* code, over the real socket, and the gateway serves on afterwards.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock } from '../../gateway/src/clock.ts';
import { call, controlSocket } from './control-api-helpers.ts';

const deep = (n: number) => `${'['.repeat(n)}${']'.repeat(n)}`;
const ALL = ['events:read', 'device:read', 'device:quarantine', 'uplink:publish', 'audit:write'];

const ROUTES = [
  '/v1/audit',
  '/v1/uplink/publish',
  '/v1/devices/s1/score',
  '/v1/devices/s1/quarantine',
  '/v1/devices/s1/release',
];

/** [what, body, status, code] — the same answer on every route. */
const MALFORMED: [string, string | Buffer, number, string][] = [
  ['truncated JSON', '{"action":', 400, 'ERR_CONTROL_JSON'],
  ['an empty body', '', 400, 'ERR_CONTROL_JSON'],
  ['not JSON at all', 'action=x', 400, 'ERR_CONTROL_JSON'],
  ['invalid UTF-8', Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), 400, 'ERR_CONTROL_JSON'],
  ['5,000-deep arrays', deep(5000), 400, 'ERR_CONTROL_JSON_DEPTH'],
  ['5,000-deep objects', `${'{"a":'.repeat(5000)}1${'}'.repeat(5000)}`, 400, 'ERR_CONTROL_JSON_DEPTH'],
  [
    'deep nesting inside a valid field',
    `{"action":"x","details":{"a":${deep(5000)}}}`,
    400,
    'ERR_CONTROL_JSON_DEPTH',
  ],
  ['null', 'null', 400, 'ERR_CONTROL_INVALID'],
  ['an array', '[]', 400, 'ERR_CONTROL_INVALID'],
  ['a string', '"x"', 400, 'ERR_CONTROL_INVALID'],
  ['an unknown field', '{"__proto__":{"admin":true},"zzz":1}', 400, 'ERR_CONTROL_INVALID'],
  [
    'a number out of range',
    '{"reason":1e400,"action":1e400,"topic":1e400,"kind":1e400}',
    400,
    'ERR_CONTROL_INVALID',
  ],
];

describe('attack: malformed bodies on the control API', () => {
  it('answers every malformed body on every route with 400 and a stable code, never 500', async (t) => {
    const clock = new ManualClock();
    const { socket, token, auditCount } = await controlSocket(t, clock);
    const all = token('all', ALL);
    const before = auditCount();
    for (const route of ROUTES) {
      clock.advance(1000); // the per-token call rate (50 a second) is not what this test is about
      for (const [what, body, status, code] of MALFORMED) {
        const r = await call(socket, all, 'POST', route, body);
        assert.equal(r.status, status, `${route}, ${what}: ${JSON.stringify(r.data)}`);
        assert.equal(r.data.error?.code, code, `${route}, ${what}`);
      }
      const wrongType = await call(socket, all, 'POST', route, '{}', 'text/plain');
      assert.equal(wrongType.status, 415, route);
      assert.equal(wrongType.data.error?.code, 'ERR_CONTROL_CONTENT_TYPE');
    }
    assert.equal(auditCount(), before, 'nothing was written');
    // Still serving.
    const ok = await call(socket, all, 'POST', '/v1/audit', '{"action":"still-here"}');
    assert.equal(ok.status, 201);
  });

  it('wrong types per field: 400 ERR_CONTROL_INVALID naming the field', async (t) => {
    const { socket, token } = await controlSocket(t, new ManualClock());
    const all = token('all', ALL);
    const cases: [string, unknown, RegExp][] = [
      ['/v1/audit', { action: 5 }, /^action: /],
      ['/v1/audit', { action: 'x', details: 'text' }, /^details: /],
      ['/v1/audit', { action: 'x', details: [1, 2] }, /^details: /],
      ['/v1/audit', { action: 'x', target: { a: 1 } }, /^target: /],
      ['/v1/audit', { action: 'Not An Action' }, /^action: /],
      ['/v1/uplink/publish', { topic: 'a', payload: 7 }, /^payload: /],
      ['/v1/uplink/publish', { topic: ['a'], payload: 'x' }, /^topic: /],
      ['/v1/uplink/publish', { topic: 'a', payload: 'x', encoding: 'hex' }, /^encoding: /],
      ['/v1/devices/s1/score', { kind: 'message', bytes: '10' }, /^bytes: /],
      ['/v1/devices/s1/score', { kind: 'nope' }, /^kind: /],
      ['/v1/devices/s1/quarantine', { reason: true }, /^reason: /],
      ['/v1/devices/s1/quarantine', { reason: 'x', mode: 'nuke' }, /^mode: /],
      ['/v1/devices/s1/release', { reason: 12 }, /^reason: /],
    ];
    for (const [route, body, message] of cases) {
      const r = await call(socket, all, 'POST', route, JSON.stringify(body));
      assert.equal(r.status, 400, `${route} ${JSON.stringify(body)}: ${JSON.stringify(r.data)}`);
      assert.equal(r.data.error?.code, 'ERR_CONTROL_INVALID');
      assert.match(r.data.error?.message ?? '', message);
    }
  });

  it('refuses secret-looking fields in audit details with 400 ERR_CONTROL_SECRET_FIELD, without echoing them', async (t) => {
    const { socket, token, auditCount } = await controlSocket(t, new ManualClock());
    const writer = token('writer', ['audit:write']);
    const before = auditCount();
    for (const details of [
      { password: 'hunter2-secret-value' },
      { device: { psk: 'aabbccdd00112233' } },
      { list: [{ token: 'pct_stolen' }] },
      { privateKey: '-----BEGIN' },
    ]) {
      const r = await call(socket, writer, 'POST', '/v1/audit', JSON.stringify({ action: 'x', details }));
      assert.equal(r.status, 400, JSON.stringify(details));
      assert.equal(r.data.error?.code, 'ERR_CONTROL_SECRET_FIELD');
      assert.doesNotMatch(JSON.stringify(r.data), /hunter2|aabbcc|pct_stolen|BEGIN/);
    }
    assert.equal(auditCount(), before);
  });
});
