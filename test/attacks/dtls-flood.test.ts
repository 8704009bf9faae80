/**
 * Issue 19, items 1 and 2: one unauthenticated host (or a /24 of them) must not lock every sensor out by
 * filling the DTLS handshake table with cookie-verified hellos it never continues; one credential must not
 * hold unbounded sessions.
 *
 * The sensor listener runs in this process exactly as `portcullis start` wires it (startSensorListener on a
 * Core), so the test can read the server's counters, the log and the alerts. The flood comes from another
 * process (test/helpers/dtls-flooder.mjs) on loopback addresses of 127.0.0.0/8; the legitimate sensor is
 * libcoap's `coap-client-openssl` with its PSK, from 127.0.0.1. Each attack runs first, then what must hold.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { parse } from 'coap-packet';
import { systemClock } from '../../gateway/src/clock.ts';
import { parseConfig } from '../../gateway/src/config/load.ts';
import { Core } from '../../gateway/src/core.ts';
import { type SensorListener, startSensorListener } from '../../gateway/src/datapath/sensor-listener.ts';
import { sourcePrefix } from '../../gateway/src/dtls/index.ts';
import { createLogger } from '../../gateway/src/log.ts';
import { Uplink } from '../../gateway/src/uplink/index.ts';
import { coapPost, waitFor } from '../helpers/coaps-fixture.ts';
import { type FloodCounts, loopbackSources, startFlood } from '../helpers/dtls-flood.ts';
import { TestDtlsClient } from '../helpers/dtls-test-client.ts';
import { coapClientPost } from '../helpers/peers.ts';

const SENSOR = { identity: 'flood-sensor', key: 'flood-sensor-key-0123' };
/** What the issue asks: the sensor's handshake and its 2.04 within 15 s. */
const LEGIT_BUDGET_MS = 15_000;
/**
 * The defaults, but a smaller handshake table (100 instead of 500), so that 30 sources at their per-source cap
 * (8 each) overfill it and the eviction of the heaviest source's oldest half-open handshake is exercised.
 */
const MAX_HANDSHAKES = 100;
const PER_SOURCE = 8;
const PER_PREFIX = 64;
const RATE = 20;

interface Gateway {
  core: Core;
  listener: SensorListener;
  port: number;
  logs: Array<{ msg: string; [k: string]: unknown }>;
  dir: string;
}

async function startGateway(limits: Record<string, number>): Promise<Gateway> {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-flood-'));
  const config = parseConfig(
    { dataDir: join(dir, 'var'), dtls: { host: '127.0.0.1', port: 0, limits }, anomaly: { enabled: false } },
    dir,
  );
  const core = Core.open(config, systemClock);
  core.identity.addPskDevice(
    { id: 'flood-sensor', pskIdentity: SENSOR.identity, pskHex: Buffer.from(SENSOR.key).toString('hex') },
    'test',
  );
  const logs: Gateway['logs'] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      for (const line of chunk.toString().split('\n')) if (line) logs.push(JSON.parse(line));
      cb();
    },
  });
  const logger = createLogger('info', sink);
  const uplink = new Uplink(core.store, null, systemClock, logger);
  const listener = await startSensorListener(core, uplink, logger);
  return { core, listener, port: listener.address.port, logs, dir };
}

async function stopGateway(g: Gateway): Promise<void> {
  await g.listener.close();
  g.core.close();
  rmSync(g.dir, { recursive: true, force: true });
}

/** One reading from the real sensor; resolves with how long it took, or fails the test. */
async function legitReading(g: Gateway, body: string): Promise<number> {
  const depth = g.core.store.queue.depth();
  const t0 = performance.now();
  const r = await coapClientPost(g.port, SENSOR, body, ['-B', String(LEGIT_BUDGET_MS / 1000)]);
  const ms = performance.now() - t0;
  assert.equal(r.code, 0, `coap-client failed after ${Math.round(ms)} ms: ${r.stderr}`);
  assert.ok(ms < LEGIT_BUDGET_MS, `the sensor took ${Math.round(ms)} ms`);
  // 2.04 is sent only once the reading is in the uplink queue (coap-client prints nothing for an empty 2.04).
  assert.equal(g.core.store.queue.depth(), depth + 1, `${body} was not acknowledged: ${r.stdout}${r.stderr}`);
  assert.doesNotMatch(r.stdout.toString() + r.stderr, /\b[45]\.\d\d\b/);
  return ms;
}

/** Capacity lines are throttled: one per limit per minute, however many hellos were refused. */
function capacityLines(g: Gateway): number {
  return g.logs.filter((l) => l.msg.startsWith('DTLS capacity') || l.msg.startsWith('DTLS handshake table'))
    .length;
}

function capacityAlert(g: Gateway) {
  return g.core.store.alerts.list({ open: true }).find((a) => a.kind === 'dtls.capacity');
}

describe('attack: DTLS handshake-slot exhaustion with cookie-verified, never-continued hellos', () => {
  let g: Gateway;
  before(async () => {
    g = await startGateway({
      maxHandshakes: MAX_HANDSHAKES,
      maxHandshakesPerSource: PER_SOURCE,
      maxHandshakesPerPrefix: PER_PREFIX,
      handshakesPerSecondPerSource: RATE,
    });
  });
  after(() => stopGateway(g));

  /**
   * Floods from `sources` at the per-source rate until `full` holds (the caps are reached), checks the server
   * holds no more half-open handshakes than the caps allow, and has the sensor post a reading meanwhile; then
   * stops the flood and has the sensor post again at once, while the flood's half-open handshakes still stand.
   */
  async function floodAndServe(sources: string[], maxPerSource: number, full: (c: FloodCounts) => boolean) {
    const before = { ...g.listener.server.stats, refusedBy: { ...g.listener.server.stats.refusedBy } };
    const flood = await startFlood({
      port: g.port,
      sources,
      ratePerSource: RATE,
      maxPerSource,
      holdMs: 3000,
    });
    // The most half-open handshakes the server held at any moment: bounded by the caps, not by the flood.
    let peak = 0;
    const sampler = setInterval(() => {
      peak = Math.max(peak, g.listener.server.handshakeCount);
    }, 10);
    let during: number;
    try {
      await flood.until('the flood to reach the caps', full, 20_000);
      during = await legitReading(g, `during ${sources.length}`);
    } finally {
      clearInterval(sampler);
      await flood.stop();
    }
    const total = flood.counts;
    const right = await legitReading(g, `after ${sources.length}`);
    const stats = g.listener.server.stats;
    return {
      total,
      during,
      right,
      peak,
      refused: stats.capacityRefusals - before.capacityRefusals,
      evicted: stats.handshakesEvicted - before.handshakesEvicted,
      perSource: stats.refusedBy['handshakes-per-source'] - before.refusedBy['handshakes-per-source'],
      perPrefix: stats.refusedBy['handshakes-per-prefix'] - before.refusedBy['handshakes-per-prefix'],
    };
  }

  it('from 1 address: the flood stops at the per-source cap and the sensor is served during and right after', async () => {
    // 120 hellos at 20/s: on the old code they filled the 100-slot table in 5 s and locked every sensor out.
    const r = await floodAndServe(loopbackSources(1, 9, 'one-per-prefix'), 120, (c) => c.cookies >= 110);
    const detail = JSON.stringify(r);
    assert.ok(r.total.cookies >= 110, `the flood sent ${r.total.cookies} cookie-verified hellos`);
    assert.ok(r.total.started <= PER_SOURCE, `${r.total.started} of them took a slot: ${detail}`);
    assert.equal(r.perSource, r.total.cookies - r.total.started, detail);
    assert.ok(r.peak <= PER_SOURCE + 1, `the table held ${r.peak} half-open handshakes: ${detail}`);
  });

  it('from 30 addresses in 30 prefixes: the table fills, the heaviest sources give way, and the sensor is served', async () => {
    const r = await floodAndServe(
      loopbackSources(30, 10, 'one-per-prefix'),
      40,
      // 30 × 8 half-open handshakes do not fit the table of 100: it is full and the flood goes on.
      (c) => c.started >= MAX_HANDSHAKES && c.cookies >= 30 * (PER_SOURCE + 4),
    );
    const detail = JSON.stringify(r);
    assert.ok(r.evicted > 0, `no evictions: ${detail}`);
    assert.ok(r.peak <= MAX_HANDSHAKES, `the table held ${r.peak} half-open handshakes: ${detail}`);
  });

  it('from 256 addresses of one /24: the flood stops at the per-prefix cap and the sensor is served', async () => {
    const r = await floodAndServe(
      loopbackSources(256, 20, 'one-prefix'),
      6,
      (c) => c.cookies >= 2 * PER_PREFIX + 256 && c.started >= PER_PREFIX,
    );
    const detail = JSON.stringify(r);
    assert.ok(r.perPrefix > 0, `no per-prefix refusals: ${detail}`);
    assert.ok(r.total.started <= PER_PREFIX, `${r.total.started} took a slot: ${detail}`);
    // The earlier floods' half-open handshakes still standing (their deadline is 10 s), this one's, the sensor's.
    assert.ok(r.peak <= MAX_HANDSHAKES, `the table held ${r.peak} half-open handshakes: ${detail}`);
  });

  it('counts the refusals, logs them throttled and raises one alert', async () => {
    const s = g.listener.server.stats;
    assert.ok(s.capacityRefusals > 500, `refusals: ${s.capacityRefusals}`);
    assert.ok(capacityLines(g) <= 8, `${capacityLines(g)} capacity log lines`);
    assert.ok(capacityLines(g) >= 1, 'no capacity log line');
    const alert = await waitFor('the capacity alert', () => capacityAlert(g));
    assert.equal(alert.deviceId, null);
    assert.match(alert.explanation, /refused/);
    // Nothing in the log or the alert names a key.
    const text = JSON.stringify(g.logs) + JSON.stringify(alert);
    assert.ok(!text.includes(SENSOR.key), 'a key in the log');
  });

  it('drops a never-continued handshake at the deadline, not after the retransmission budget', async () => {
    const short = await startGateway({ handshakeTimeoutSeconds: 0.4, maxHandshakes: MAX_HANDSHAKES });
    try {
      const flood = await startFlood({
        port: short.port,
        sources: ['127.30.0.1'],
        ratePerSource: RATE,
        maxPerSource: 4,
        holdMs: 100,
      });
      await flood.until('4 half-open handshakes', (c) => c.started >= 4);
      const total = await flood.stop();
      assert.equal(total.started, 4);
      // The server's retransmissions (1 s, then 2 s, …) would keep them for two minutes; the deadline ends them.
      await waitFor(
        'the deadline',
        () => (short.listener.server.handshakeCount === 0 ? true : undefined),
        3000,
      );
      assert.equal(short.listener.server.stats.handshakesTimedOut, 4);
    } finally {
      await stopGateway(short);
    }
  });
});

describe('attack: one credential opens many sessions', () => {
  let g: Gateway;
  const keys: Record<string, string> = { [SENSOR.identity]: SENSOR.key };
  before(async () => {
    g = await startGateway({ maxSessionsPerIdentity: 3, maxSessionsPerSource: 2 });
    for (const id of ['second', 'third', 'fourth']) {
      keys[id] = `${id}-key-0123456789`;
      g.core.identity.addPskDevice(
        { id, pskIdentity: id, pskHex: Buffer.from(keys[id] as string).toString('hex') },
        'test',
      );
    }
  });
  after(() => stopGateway(g));

  const clients: TestDtlsClient[] = [];
  after(() => {
    for (const c of clients) c.close();
  });
  const client = (identity: string, localAddress: string) => {
    const c = new TestDtlsClient({
      port: g.port,
      suite: 'TLS_PSK_WITH_AES_128_CCM_8',
      psk: { identity, key: Buffer.from(keys[identity] as string) },
      timeoutMs: 2000,
      localAddress,
    });
    clients.push(c);
    return c;
  };
  const refused = (reason: 'sessions-per-identity' | 'sessions-per-source') =>
    g.listener.server.stats.refusedBy[reason];

  it('caps the sessions one identity holds from many addresses; the same identity from the same address replaces its session', async () => {
    // The stolen key, used from 5 addresses one after the other: the first 3 get sessions, the others not.
    const addresses = [1, 2, 3, 4, 5].map((i) => `127.40.${i}.1`);
    const results: string[] = [];
    for (const a of addresses) {
      results.push(
        await client(SENSOR.identity, a)
          .connect()
          .then(
            () => 'ok',
            (err: Error) => err.message,
          ),
      );
    }
    assert.deepEqual(results.slice(0, 3), ['ok', 'ok', 'ok']);
    // Refused with access_denied (49) once the key is proven: the cap cannot be used to probe keys.
    assert.deepEqual(results.slice(3), ['server sent alert 49', 'server sent alert 49']);
    assert.equal(refused('sessions-per-identity'), 2);
    assert.equal(g.listener.server.sessionCount, 3);
    await waitFor('the refusal in the log', () =>
      g.logs.find((l) => l.msg === 'DTLS capacity: refused' && l.reason === 'sessions-per-identity'),
    );
    // A refusal by the cap is not a failed authentication (the key was right), but the device gets an alert: its
    // key is in use from more places than it should be.
    const overused = await waitFor('the session-limit alert', () =>
      g.core.store.alerts.list({ open: true }).find((x) => x.kind === 'dtls.session_limit'),
    );
    assert.equal(overused.deviceId, 'flood-sensor');
    assert.equal(overused.severity, 'high');
    assert.ok(!JSON.stringify(overused).includes(SENSOR.key), 'a key in the alert');

    // The sensor restarts on a new port at one of its addresses: the new session replaces the old one, so the
    // cap does not lock it out and the count stays at 3.
    const again = client(SENSOR.identity, addresses[0] as string);
    await again.connect();
    await waitFor('the old session replaced', () =>
      g.listener.server.sessionCount === 3 ? true : undefined,
    );
    assert.equal(refused('sessions-per-identity'), 2);
    again.send(coapPost('after restart', 7));
    assert.equal(parse(await again.receive()).code, '2.04');
  });

  it('caps the sessions one source address holds across identities', async () => {
    const from = '127.41.0.1';
    await client('second', from).connect();
    await client('third', from).connect();
    // A third credential from the same address: over the per-source cap of 2.
    await assert.rejects(client('fourth', from).connect(), /alert 49/);
    assert.equal(refused('sessions-per-source'), 1);
    // The same credential again from there replaces its session instead of being refused.
    const again = client('second', from);
    await again.connect();
    assert.equal(refused('sessions-per-source'), 1);
    again.send(coapPost('second again', 8));
    assert.equal(parse(await again.receive()).code, '2.04');
  });
});

describe('the per-prefix cap groups sources by network', () => {
  it('IPv4 (and IPv4-mapped IPv6) by /24, IPv6 by /64', () => {
    assert.equal(sourcePrefix('192.0.2.17'), '192.0.2.0/24');
    assert.equal(sourcePrefix('::ffff:192.0.2.200'), '192.0.2.0/24');
    // One host's many IPv6 addresses (privacy addresses, a /64 of its own) are one source network.
    assert.equal(sourcePrefix('2001:db8:1:2::1'), '2001:db8:1:2::/64');
    assert.equal(sourcePrefix('2001:0db8:0001:0002:ffff:1:2:3'), '2001:db8:1:2::/64');
    assert.equal(sourcePrefix('2001:db8::1'), '2001:db8:0:0::/64');
    assert.equal(sourcePrefix('fe80::1%eth0'), 'fe80:0:0:0::/64');
    assert.notEqual(sourcePrefix('2001:db8:1:3::1'), sourcePrefix('2001:db8:1:2::1'));
  });
});
