/**
 * mqtt.js's `debug` in the uplink (quiet-debug.ts): a logger that does nothing where `DEBUG` is unset, the real
 * one where a technician sets it. Each case loads the uplink's connection module in a fresh process, as the
 * TPM child does (and, once, in a worker thread started as the gateway starts its uplink thread: tsx's ESM hooks
 * registered in the thread), and reports which `debug` mqtt's packages got.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';

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

  it('replaces it in a worker thread started as the uplink thread is (child.ts startWorkerThread)', async () => {
    const tsx = JSON.stringify(import.meta.resolve('tsx/esm/api'));
    const connection = JSON.stringify(
      pathToFileURL(new URL('../gateway/src/uplink/connection.ts', import.meta.url).pathname).href,
    );
    const code = `
      const { parentPort } = await import('node:worker_threads');
      const { createRequire } = await import('node:module');
      (await import(${tsx})).register();
      await import(${connection});
      const fromMqtt = createRequire(createRequire(${connection}).resolve('mqtt'));
      const d = fromMqtt('debug');
      parentPort.postMessage({ enabled: d('mqttjs:client').enabled, hasFormatters: typeof d.formatters === 'object' });
    `;
    const { DEBUG: _, ...env } = process.env;
    const worker = new Worker(`(async () => { ${code} })()`, { eval: true, env });
    const [got] = await once(worker, 'message');
    await worker.terminate();
    assert.deepEqual(got, { enabled: false, hasFormatters: false });
  });

  it('keeps the real debug, and its output, when DEBUG is set', () => {
    const r = loadWith({ DEBUG: 'mqttjs:*' });
    assert.deepEqual(r.mqtt, { enabled: true, hasFormatters: true });
    assert.match(r.stderr, /mqttjs:client connect x/);
    // A namespace DEBUG does not name stays off, as debug decides, not as the quiet one would.
    assert.equal(r.packet.hasFormatters, true);
  });
});
