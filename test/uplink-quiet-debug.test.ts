/**
 * mqtt.js's `debug` in the uplink (quiet-debug.ts): a logger that does nothing where `DEBUG` is unset, the real
 * one where a technician sets it. Each case loads the uplink's connection module in a fresh process, as the
 * uplink thread and the TPM child do, and reports which `debug` mqtt's packages got.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';

const probe = `
import { createRequire } from 'node:module';
await import('./gateway/src/uplink/connection.ts');
const root = createRequire(import.meta.url + '/../package.json');
const fromMqtt = createRequire(root.resolve('mqtt'));
const fromPacket = createRequire(fromMqtt.resolve('mqtt-packet'));
const report = (factory) => {
  const d = factory('mqttjs:client');
  return { enabled: d.enabled, returns: d('connect %s', 'x'), hasFormatters: typeof factory.formatters === 'object' };
};
process.stdout.write(JSON.stringify({ mqtt: report(fromMqtt('debug')), packet: report(fromPacket('debug')) }));
`;

function loadWith(env: Record<string, string>): {
  mqtt: { enabled: boolean; hasFormatters: boolean };
  packet: { enabled: boolean; hasFormatters: boolean };
  stderr: string;
} {
  const { DEBUG: _, ...rest } = process.env;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', probe], {
    env: { ...rest, ...env },
    encoding: 'utf8',
  });
  assert.equal(r.status, 0, r.stderr);
  return { ...JSON.parse(r.stdout), stderr: r.stderr };
}

describe('the uplink gives mqtt.js a quiet debug', () => {
  it('replaces the debug mqtt and mqtt-packet load when DEBUG is unset', () => {
    const r = loadWith({});
    // The quiet one has no formatters table (the real factory always has one) and is never enabled.
    assert.deepEqual(r.mqtt, { enabled: false, hasFormatters: false });
    assert.deepEqual(r.packet, { enabled: false, hasFormatters: false });
    assert.doesNotMatch(r.stderr, /mqttjs/);
  });

  it('keeps the real debug, and its output, when DEBUG is set', () => {
    const r = loadWith({ DEBUG: 'mqttjs:*' });
    assert.deepEqual(r.mqtt, { enabled: true, hasFormatters: true });
    assert.match(r.stderr, /mqttjs:client connect x/);
    // A namespace DEBUG does not name stays off, as debug decides, not as the quiet one would.
    assert.equal(r.packet.hasFormatters, true);
  });
});
