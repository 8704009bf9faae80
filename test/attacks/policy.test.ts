/**
 * Zero trust in the data path (issue 24): a real sensor (libcoap's coap-client-openssl over DTLS with a PSK)
 * against the running gateway, one device per rule kind. Each rule refuses what breaks it with its CoAP code,
 * before the durable queue (nothing refused reaches the broker), while the message that fits goes through;
 * refusals are audited once per device and rule per minute with a count, and `policy show` / `policy test`
 * explain the decision.
 */
import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { encode as encodeCbor } from 'cbor-x';
import { runCli } from '../helpers/cli.ts';
import { type GatewayHome, makeGatewayHome, type RunningGateway } from '../helpers/gateway.ts';
import { type Broker, startBroker } from '../helpers/mosquitto.ts';
import { runPeer } from '../helpers/peers.ts';
import { makePki, type TestPki } from '../helpers/pki.ts';
import { type Subscriber, startSubscriber } from '../helpers/subscriber.ts';

const KEY = 'policy-test-key-0123';

/** Profiles as an operator writes them (docs/policy.md); the site's clock is UTC here. */
const POLICY = [
  'segments:',
  '  - {name: sensors, role: sensors, vlanId: 20, parentInterface: eth0, subnet: 10.20.0.0/24, gatewayAddress: 10.20.0.1}',
  '  - {name: office, role: protected, vlanId: 30, parentInterface: eth0, subnet: 10.30.0.0/24, gatewayAddress: 10.30.0.1}',
  'policy:',
  '  timeZone: UTC',
  '  profiles:',
  '    thermo:',
  '      resources: [{path: /telemetry, methods: [POST]}, {path: /commands, methods: [GET]}]',
  '      contentFormats: [50, 60]',
  '      maxPayloadBytes: 64',
  '      schema: {type: object, required: [t], properties: {t: {type: number, minimum: -40, maximum: 85}}}',
  '      segments: [sensors]',
];

interface Answer {
  code: string;
  maxAge?: number;
  text: string;
}

/** One request as a sensor sends it; the answer's code (and Max-Age) from libcoap's PDU dump (-v 7). */
async function coap(
  port: number,
  identity: string,
  o: { method?: 'post' | 'get'; path?: string; body?: Buffer; cf?: number } = {},
  dir = '/tmp',
): Promise<Answer> {
  const method = o.method ?? 'post';
  const args = ['-v', '7', '-u', identity, '-k', KEY, '-m', method, '-B', '5'];
  let file: string | undefined;
  if (o.body) {
    file = join(dir, `body-${identity}-${Math.random().toString(36).slice(2)}`);
    writeFileSync(file, o.body);
    args.push('-f', file);
  }
  if (o.cf !== undefined) args.push('-t', String(o.cf));
  // The body's file goes with the request: each call left one in /tmp.
  const r = await runPeer(
    'coap-client-openssl',
    [...args, `coaps://127.0.0.1:${port}${o.path ?? '/telemetry'}`],
    {
      timeoutMs: 10_000,
    },
  ).finally(() => {
    if (file) rmSync(file, { force: true });
  });
  const text = r.stdout.toString() + r.stderr;
  const m = /c:(\d\.\d\d)[^\n]*/.exec(
    text
      .split('\n')
      .filter((l) => /t:(ACK|CON|NON)\b.*c:\d\.\d\d/.test(l))
      .pop() ?? '',
  );
  const age = m ? /Max-Age:(\d+)/.exec(m[0]) : null;
  return {
    code: m?.[1] ?? `no response: ${text.slice(-400)}`,
    maxAge: age ? Number(age[1]) : undefined,
    text,
  };
}

const json = (v: unknown) => Buffer.from(JSON.stringify(v));

describe('policy: every rule kind against a real sensor (coap-client-openssl)', () => {
  let pki: TestPki;
  let broker: Broker;
  let home: GatewayHome;
  let gw: RunningGateway;
  let sub: Subscriber;
  const port = () => home.dtlsPort;

  before(async () => {
    pki = makePki();
    broker = await startBroker({ caPath: pki.caPath, server: pki.broker });
    home = await makeGatewayHome(pki, broker, 'gw-policy', { extraConfig: POLICY });
    const add = async (id: string, profile: string | null, place: string | null, overrides?: unknown) => {
      await home.cli(['device', 'add', id, '--psk-identity', id, '--psk-text', KEY]);
      if (place) await home.cli(['device', 'place', id, '--segment', place]);
      if (profile)
        await home.cli([
          'device',
          'profile',
          id,
          profile,
          ...(overrides ? ['--overrides', JSON.stringify(overrides)] : []),
        ]);
    };
    const h = new Date().getUTCHours();
    const pad = (n: number) => String(n % 24).padStart(2, '0');
    await add('ok', 'thermo', 'sensors');
    await add('meth', 'thermo', 'sensors', { resources: [{ path: '/telemetry', methods: ['PUT'] }] });
    // A window that opens two hours from now and closes an hour later: now is outside it.
    await add('night', 'thermo', 'sensors', {
      timeWindows: [{ from: `${pad(h + 2)}:00`, to: `${pad(h + 3)}:00` }],
    });
    await add('roamer', 'thermo', 'office');
    await add('chatty', 'thermo', 'sensors', { rate: { perSecond: 0.01, burst: 1 } });
    await add('watched', 'thermo', 'sensors');
    await add('legacy', null, null);
    await home.cli(['device', 'quarantine', 'watched', '--reason', 'test', '--mode', 'observe']);
    gw = await home.start();
    sub = await startSubscriber(pki, broker, 'site-1/#');
  });

  after(async () => {
    sub?.stop();
    await gw?.stop();
    await broker?.dispose();
    home?.dispose();
    pki?.dispose();
  });

  it('positive: a reading that fits the profile, JSON or CBOR, is acknowledged 2.04 and published', async () => {
    assert.equal((await coap(port(), 'ok', { body: json({ t: 21.5 }), cf: 50 })).code, '2.04');
    assert.equal((await coap(port(), 'ok', { body: encodeCbor({ t: 22 }), cf: 60 })).code, '2.04');
    assert.equal((await coap(port(), 'ok', { method: 'get', path: '/commands' })).code, '2.05');
    // A device with no profile (and no default) is checked for known and active only, as before.
    assert.equal((await coap(port(), 'legacy', { body: Buffer.from('anything'), cf: 0 })).code, '2.04');
    await sub.waitFor(
      (ms) => ms.filter((m) => m.topic.includes('/devices/ok/')).length >= 2,
      'both readings',
    );
  });

  it('resource: a resource the profile does not list is 4.03 (the route exists: /fw/*)', async () => {
    const r = await coap(port(), 'ok', { method: 'get', path: `/fw/${'a'.repeat(64)}` });
    assert.equal(r.code, '4.03', r.text);
  });

  it('method: POST where the device may only PUT is 4.05', async () => {
    assert.equal((await coap(port(), 'meth', { body: json({ t: 1 }), cf: 50 })).code, '4.05');
  });

  it('content format: text/plain where JSON or CBOR is required is 4.15', async () => {
    assert.equal((await coap(port(), 'ok', { body: json({ t: 1 }), cf: 0 })).code, '4.15');
  });

  it('size: a payload over maxPayloadBytes is 4.13', async () => {
    assert.equal(
      (await coap(port(), 'ok', { body: json({ t: 1, pad: 'x'.repeat(80) }), cf: 50 })).code,
      '4.13',
    );
  });

  it('schema: JSON and CBOR that break the JSON Schema are 4.00', async () => {
    assert.equal((await coap(port(), 'ok', { body: json({ t: 'hot' }), cf: 50 })).code, '4.00');
    assert.equal((await coap(port(), 'ok', { body: encodeCbor({ t: 500 }), cf: 60 })).code, '4.00');
  });

  it('time: outside the time windows is 4.03', async () => {
    assert.equal((await coap(port(), 'night', { body: json({ t: 1 }), cf: 50 })).code, '4.03');
  });

  it('segment: a device placed in a segment the profile does not allow is 4.03', async () => {
    assert.equal((await coap(port(), 'roamer', { body: json({ t: 1 }), cf: 50 })).code, '4.03');
  });

  it('rate: the burst passes, the next is 4.29 Too Many Requests with Max-Age (RFC 8516)', async () => {
    assert.equal((await coap(port(), 'chatty', { body: json({ t: 1 }), cf: 50 })).code, '2.04');
    const r = await coap(port(), 'chatty', { body: json({ t: 2 }), cf: 50 });
    assert.equal(r.code, '4.29', r.text);
    assert.ok(r.maxAge !== undefined && r.maxAge >= 90 && r.maxAge <= 100, `Max-Age ${r.maxAge}`);
  });

  it('state: a device quarantined in observe mode keeps its session and every message is 4.03', async () => {
    assert.equal((await coap(port(), 'watched', { body: json({ t: 1 }), cf: 50 })).code, '4.03');
  });

  it('nothing refused reached the broker; the refusals were counted by rule', async () => {
    const published = sub.messages.map((m) => m.payload.toString('hex'));
    for (const bad of [json({ t: 'hot' }), json({ t: 2 }), encodeCbor({ t: 500 })]) {
      assert.ok(!published.includes(bad.toString('hex')), 'a refused reading was published');
    }
    for (const id of ['meth', 'night', 'roamer', 'watched']) {
      assert.ok(!sub.messages.some((m) => m.topic.includes(`/devices/${id}/`)), `${id} was published`);
    }
    // The gateway's log lines arrive through a pipe: the last refusal's line may still be on its way.
    const rules = () =>
      [
        ...new Set(
          gw.log
            .filter((l) => l.includes('telemetry refused'))
            .map((l) => (JSON.parse(l) as { rule: string }).rule),
        ),
      ].sort();
    for (let i = 0; i < 40 && rules().length < 8; i++) await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(rules(), [
      'contentFormat',
      'method',
      'rate',
      'schema',
      'segment',
      'size',
      'state',
      'time',
    ]);
  });

  it('policy test names the decision and the rule; policy show names each field’s source', async () => {
    const dir = home.dir;
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, JSON.stringify({ t: 'hot' }));
    const cli = (args: string[]) => runCli(['--config', home.config, ...args], { cwd: dir });
    const refused = await cli([
      'policy',
      'test',
      '--device',
      'ok',
      '--method',
      'POST',
      '--resource',
      '/telemetry',
      '--content-format',
      '50',
      '--payload',
      bad,
    ]);
    assert.equal(refused.code, 1, refused.stderr);
    assert.match(
      refused.stdout,
      /^refuse 4\.00 rule=schema by profile:thermo: payload does not match the schema: \/t must be number/,
    );
    const allowed = await cli([
      'policy',
      'test',
      '--device',
      'ok',
      '--method',
      'GET',
      '--resource',
      '/commands',
    ]);
    assert.equal(allowed.code, 0, allowed.stderr);
    assert.match(allowed.stdout, /^allow .* by profile:thermo/);
    const method = await cli([
      'policy',
      'test',
      '--device',
      'meth',
      '--method',
      'POST',
      '--resource',
      '/telemetry',
    ]);
    assert.match(method.stdout, /^refuse 4\.05 rule=method by device/);
    const show = await cli(['policy', 'show', 'night']);
    assert.equal(show.code, 0, show.stderr);
    assert.match(show.stdout, /^profile: thermo \(the device\)$/m);
    assert.match(show.stdout, /^timeWindows: .*\t\[device\]$/m);
    assert.match(show.stdout, /^maxPayloadBytes: 64\t\[profile:thermo\]$/m);
    assert.match(show.stdout, /^rate: -\t\[unset\]$/m);
    const unknown = await cli(['device', 'profile', 'ok', 'nosuch']);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /ERR_POLICY_PROFILE_NOT_FOUND/);
  });

  it('refusals are audited once per device and rule with a count, never one entry per message', async () => {
    // More of one refused kind: five messages in all, one entry.
    for (let i = 0; i < 4; i++)
      assert.equal((await coap(port(), 'roamer', { body: json({ t: i }), cf: 50 })).code, '4.03');
    await gw.stop(); // the pending minute is written at stop
    const out = await home.cli(['audit', 'export', '--format', 'jsonl']);
    const entries = out
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { action: string; target: string; details: Record<string, unknown> })
      .filter((e) => e.action === 'policy.refused');
    const roamer = entries.filter((e) => e.target === 'roamer');
    assert.equal(roamer.length, 1, JSON.stringify(roamer));
    assert.equal(roamer[0]!.details.count, 5);
    assert.equal(roamer[0]!.details.rule, 'segment');
    assert.equal(roamer[0]!.details.code, '4.03');
    const ok = entries
      .filter((e) => e.target === 'ok')
      .map((e) => e.details.rule)
      .sort();
    assert.deepEqual(ok, ['contentFormat', 'resource', 'schema', 'size']);
    assert.equal(entries.find((e) => e.target === 'ok' && e.details.rule === 'schema')?.details.count, 2);
  });
});
