/**
 * Every Portcullis Node-RED node under node-red-node-test-helper (Node-RED's own runtime in process), talking to
 * a real control server on a Unix socket over a real store: inputs, outputs, errors through `done` (Catch nodes
 * see them), status badges, and the token's scopes and revocation as the gateway enforces them.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import { AnomalyService } from '../gateway/src/anomaly/index.ts';
import { systemClock } from '../gateway/src/clock.ts';
import { parseConfig } from '../gateway/src/config/index.ts';
import { type ControlServer, startControlServer } from '../gateway/src/control/server.ts';
import { Core } from '../gateway/src/core.ts';
import { createLogger } from '../gateway/src/log.ts';
import { Uplink } from '../gateway/src/uplink/index.ts';
import { ControlTokens } from '../gateway/src/users/index.ts';

const require = createRequire(import.meta.url);
const ROOT = join(import.meta.dirname, '..');

interface HelperNode {
  receive(msg: Record<string, unknown>): void;
  on(event: string, fn: (arg: { args: unknown[] } & Record<string, unknown>) => void): void;
}
interface Helper {
  init(path: string): void;
  startServer(done: () => void): void;
  stopServer(done: () => void): void;
  load(nodes: unknown[], flow: unknown[], credentials: Record<string, unknown>, done: () => void): void;
  unload(): Promise<void>;
  getNode(id: string): HelperNode;
}
const helper = require('node-red-node-test-helper') as Helper;
helper.init(require.resolve('node-red'));
const NODES = [
  'portcullis-gateway',
  'device-events',
  'policy-check',
  'anomaly-score',
  'quarantine',
  'cloud-publish',
  'audit',
  'device-info',
].map((n) => require(`../nodes/${n}.js`) as unknown);

type Msg = Record<string, unknown>;

describe('Portcullis Node-RED nodes', () => {
  let core: Core;
  let control: ControlServer;
  let socketPath: string;
  let tokens: ControlTokens;
  let anomaly: AnomalyService;
  const secrets: Record<string, string> = {};
  const T = { full: '', readonly: '', revoked: '' };

  let dir: string;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'portcullis-nodes-'));
    socketPath = join(dir, 'control.sock');
    const config = parseConfig({ dataDir: join(dir, 'var') }, dir);
    core = Core.open(config, systemClock);
    const logger = createLogger('error');
    anomaly = new AnomalyService({
      config,
      store: core.store,
      audit: core.audit,
      identity: core.identity,
      segmentation: core.segmentation,
      clock: systemClock,
      logger,
      events: core.events,
    });
    const uplink = new Uplink(core.store, null, systemClock, logger);
    control = await startControlServer(core, socketPath, { anomaly, uplink });
    tokens = new ControlTokens(core.store, core.audit, systemClock);
    T.full = tokens.create(
      'full',
      ['events:read', 'device:read', 'device:quarantine', 'uplink:publish', 'audit:write'],
      'test',
    ).token;
    T.readonly = tokens.create('readonly', ['events:read', 'device:read'], 'test').token;
    T.revoked = tokens.create('revoked', ['device:read', 'device:quarantine'], 'test').token;
    tokens.revoke('revoked', 'test');
    Object.assign(secrets, T);
    await new Promise<void>((r) => helper.startServer(r));
  });

  after(async () => {
    await helper.unload();
    await new Promise<void>((r) => helper.stopServer(r));
    await control.close();
    await anomaly.stop();
    core.close();
    rmSync(dir, { recursive: true, force: true });
  });

  let n = 0;
  beforeEach(() => {
    n++;
    core.identity.addPskDevice(
      { id: `dev-${n}`, pskIdentity: `dev-${n}`, generate: true, type: 'meter' },
      'test',
    );
  });
  const device = () => `dev-${n}`;

  /** Loads `nodes` (wired to helper node h1/h2) under a gateway config node holding `token`. */
  async function load(token: keyof typeof T, nodes: Msg[]) {
    await helper.unload();
    const flow = [
      { id: 'gw', type: 'portcullis-gateway', socketPath },
      ...nodes.map((x) => ({ gateway: 'gw', ...x })),
      { id: 'h1', type: 'helper' },
      { id: 'h2', type: 'helper' },
    ];
    await new Promise<void>((r) => helper.load(NODES, flow, { gw: { token: T[token] } }, r));
  }
  const output = (id: string) =>
    new Promise<Msg>((resolve) => helper.getNode(id).on('input', (m) => resolve(m as unknown as Msg)));
  const failure = (id: string) =>
    new Promise<{ code?: string; message: string }>((resolve) =>
      helper
        .getNode(id)
        .on('call:error', (call) => resolve(call.args[0] as { code?: string; message: string })),
    );
  const statuses = (id: string) => {
    const seen: { fill?: string; text?: string }[] = [];
    helper
      .getNode(id)
      .on('call:status', (call) => seen.push(call.args[0] as { fill?: string; text?: string }));
    return seen;
  };

  it('device info: looks the device up; an unknown one fails through done', async () => {
    await load('full', [{ id: 'n1', type: 'portcullis-device', wires: [['h1']] }]);
    const seen = statuses('n1');
    const out = output('h1');
    helper.getNode('n1').receive({ deviceId: device() });
    const msg = await out;
    assert.equal((msg.device as { state: string }).state, 'active');
    assert.equal((msg.device as { type: string }).type, 'meter');
    assert.doesNotMatch(JSON.stringify(msg.device), /secret|wrapped|pskHex/i, 'no key material');
    assert.equal(seen.at(-1)?.fill, 'green');
    const err = failure('n1');
    helper.getNode('n1').receive({ deviceId: 'no-such-device' });
    assert.equal((await err).code, 'ERR_IDENTITY_NOT_FOUND');
  });

  it('policy check: allows an active device, denies a quarantined or unknown one, and says why', async () => {
    await load('full', [{ id: 'n1', type: 'portcullis-policy', states: 'active', wires: [['h1'], ['h2']] }]);
    const seen = statuses('n1');
    const allowed = output('h1');
    helper.getNode('n1').receive({ deviceId: device() });
    assert.equal(((await allowed).policy as { allow: boolean }).allow, true);
    assert.equal(seen.at(-1)?.fill, 'green');
    await core.segmentation.quarantine(device(), { reason: 'test', mode: 'observe' }, 'test');
    await new Promise((r) => setTimeout(r, 2100)); // past the node's 2 s device cache
    let denied = output('h2');
    helper.getNode('n1').receive({ payload: { type: 'device.message', deviceId: device() } });
    assert.match(((await denied).policy as { reason: string }).reason, /is quarantined, not active/);
    assert.equal(seen.at(-1)?.fill, 'red');
    denied = output('h2');
    helper.getNode('n1').receive({ deviceId: 'stranger' });
    assert.equal(((await denied).policy as { reason: string }).reason, 'unknown device');
  });

  it('policy check: rate, anomaly score, time window and MUD allow-list conditions, failing closed', async () => {
    core.store.allowLists.put(
      {
        deviceId: device(),
        source: 'manual',
        mudUrl: null,
        manufacturer: null,
        entries: JSON.stringify([
          {
            name: 'cloud',
            direction: 'from-device',
            protocol: 'tcp',
            ports: [8883],
            peer: { kind: 'cidr', cidr: '198.51.100.0/24' },
          },
        ]),
      },
      new Date().toISOString(),
    );
    await load('full', [
      { id: 'rate', type: 'portcullis-policy', states: 'active', maxPerMinute: '2', wires: [['h1'], ['h2']] },
      { id: 'score', type: 'portcullis-policy', states: 'active', maxScore: '5', wires: [['h1'], ['h2']] },
      { id: 'mud', type: 'portcullis-policy', states: 'active', mud: true, wires: [['h1'], ['h2']] },
      {
        id: 'window',
        type: 'portcullis-policy',
        states: 'active',
        windowEnabled: true,
        days: '0,1,2,3,4,5,6',
        fromHour: (new Date().getUTCHours() + 2) % 24,
        toHour: (new Date().getUTCHours() + 3) % 24,
        utcOffsetMinutes: 0,
        wires: [['h1'], ['h2']],
      },
    ]);
    const decide = async (node: string, msg: Msg) => {
      const a = output('h1');
      const d = output('h2');
      helper.getNode(node).receive({ deviceId: device(), ...msg });
      const m = await Promise.race([a, d]);
      return m.policy as { allow: boolean; reason: string };
    };
    assert.equal((await decide('rate', {})).allow, true);
    assert.equal((await decide('rate', {})).allow, true);
    assert.match((await decide('rate', {})).reason, /3 messages in the last minute, more than 2/);
    assert.match((await decide('score', {})).reason, /no anomaly score/);
    assert.equal((await decide('score', { anomaly: { score: 1.5 } })).allow, true);
    assert.match((await decide('score', { anomaly: { score: 9 } })).reason, /anomaly score 9 above 5/);
    assert.equal(
      (await decide('mud', { destination: { address: '198.51.100.7', port: 8883, protocol: 'tcp' } })).allow,
      true,
    );
    assert.match(
      (await decide('mud', { destination: { address: '203.0.113.9', port: 8883, protocol: 'tcp' } })).reason,
      /not in the MUD allow-list/,
    );
    assert.match((await decide('window', {})).reason, /outside the allowed time window/);
  });

  it('quarantine and release: done by the gateway, audited with the flow token', async () => {
    await load('full', [
      { id: 'q', type: 'portcullis-quarantine', action: 'quarantine', mode: 'isolate', wires: [['h1']] },
      { id: 'r', type: 'portcullis-quarantine', action: 'release', wires: [['h2']] },
    ]);
    const seen = statuses('q');
    const quarantined = output('h1');
    helper.getNode('q').receive({ deviceId: device(), reason: 'score too high' });
    await quarantined;
    const d = core.store.devices.get(device());
    assert.equal(d?.state, 'quarantined');
    assert.equal(d?.quarantine?.mode, 'isolate');
    assert.match(seen.at(-1)?.text ?? '', /quarantined dev-/);
    const again = output('h1');
    helper.getNode('q').receive({ deviceId: device(), reason: 'score still too high' });
    assert.equal(
      ((await again).payload as { unchanged?: boolean }).unchanged,
      true,
      'asking twice is not an error',
    );
    assert.match(seen.at(-1)?.text ?? '', /already quarantined/);
    const entry = [...core.store.audit.iterate()].reverse().find((e) => e.action === 'device.quarantine');
    assert.equal(entry?.actor, 'flows:full');
    const released = output('h2');
    helper.getNode('r').receive({ deviceId: device() });
    await released;
    assert.equal(core.store.devices.get(device())?.state, 'active');
  });

  it('quarantine: a token without device:quarantine, or a revoked one, changes nothing and fails', async () => {
    for (const token of ['readonly', 'revoked'] as const) {
      await load(token, [{ id: 'q', type: 'portcullis-quarantine', action: 'quarantine', wires: [['h1']] }]);
      const seen = statuses('q');
      const err = failure('q');
      helper.getNode('q').receive({ deviceId: device(), reason: 'try' });
      const e = await err;
      assert.equal(e.code, token === 'readonly' ? 'ERR_CONTROL_SCOPE' : 'ERR_CONTROL_TOKEN', token);
      assert.equal(seen.at(-1)?.fill, 'red');
      assert.equal(core.store.devices.get(device())?.state, 'active', token);
    }
    const denied = [...core.store.audit.iterate()].filter((e) => e.action === 'control.denied');
    assert.ok(denied.some((e) => e.actor === 'flows:readonly'));
  });

  it('events in: passes the gateway events through, filtered by type and device, with a connected badge', async () => {
    await load('readonly', [
      {
        id: 'ev',
        type: 'portcullis-events',
        types: 'device.message,device.state',
        device: device(),
        wires: [['h1']],
      },
    ]);
    const seen = statuses('ev');
    for (let i = 0; i < 50 && !seen.some((s) => s.text === 'connected'); i++)
      await new Promise((r) => setTimeout(r, 50));
    assert.ok(seen.some((s) => s.text === 'connected'));
    const out = output('h1');
    core.events.emit({
      type: 'alert',
      ts: '',
      alertId: 1,
      deviceId: device(),
      severity: 'high',
      kind: 'x',
      explanation: 'x',
      score: 1,
    });
    core.events.emit({
      type: 'device.message',
      ts: '',
      deviceId: 'someone-else',
      resource: '/telemetry',
      contentFormat: null,
      payload: '',
      size: 0,
      allowed: true,
    });
    core.events.emit({
      type: 'device.message',
      ts: new Date().toISOString(),
      deviceId: device(),
      resource: '/telemetry',
      contentFormat: 50,
      payload: Buffer.from('{"t":21}').toString('base64'),
      size: 8,
      allowed: true,
    });
    const msg = await out;
    assert.equal(msg.topic, 'device.message');
    assert.equal(msg.deviceId, device());
    assert.equal((msg.data as Buffer).toString(), '{"t":21}');
  });

  it('events in: a revoked token is refused, and an open stream ends when its token is revoked', async () => {
    await load('revoked', [{ id: 'ev', type: 'portcullis-events', wires: [['h1']] }]);
    const refused = statuses('ev');
    for (let i = 0; i < 50 && !refused.some((s) => /refused/.test(s.text ?? '')); i++)
      await new Promise((r) => setTimeout(r, 50));
    assert.ok(refused.some((s) => s.text === 'refused (401)'));

    const short = tokens.create(`short-${n}`, ['events:read'], 'test').token;
    T.readonly = short;
    await load('readonly', [{ id: 'ev', type: 'portcullis-events', wires: [['h1']] }]);
    T.readonly = secrets.readonly as string;
    const seen = statuses('ev');
    for (let i = 0; i < 50 && !seen.some((s) => s.text === 'connected'); i++)
      await new Promise((r) => setTimeout(r, 50));
    const connectedAt = seen.findIndex((s) => s.text === 'connected');
    assert.ok(connectedAt >= 0);
    const started = Date.now();
    tokens.revoke(`short-${n}`, 'test');
    const ended = () => seen.slice(connectedAt).some((s) => s.text === 'disconnected');
    for (let i = 0; i < 60 && !ended(); i++) await new Promise((r) => setTimeout(r, 50));
    assert.ok(ended(), 'the stream ended within the re-check interval');
    assert.ok(Date.now() - started < 3000);
  });

  it('anomaly score: scores a device message against its baseline (learning at first)', async () => {
    await load('full', [{ id: 's', type: 'portcullis-score', wires: [['h1']] }]);
    const out = output('h1');
    helper
      .getNode('s')
      .receive({ payload: { type: 'device.message', deviceId: device(), size: 40, resource: '/telemetry' } });
    const anomalyOut = (await out).anomaly as { score: number; learning: boolean };
    assert.equal(anomalyOut.learning, true);
    assert.equal(anomalyOut.score, 0);
    const err = failure('s');
    helper.getNode('s').receive({ payload: 'no device here' });
    assert.equal((await err).code, 'ERR_NODE_INPUT');
  });

  it('cloud publish: queues in the gateway under the flow topic; without uplink:publish it fails', async () => {
    await load('full', [{ id: 'p', type: 'portcullis-publish', topic: 'alerts/off-hours', wires: [['h1']] }]);
    const before = core.store.queue.depth();
    const out = output('h1');
    helper.getNode('p').receive({ deviceId: device(), payload: { allow: false } });
    await out;
    assert.equal(core.store.queue.depth(), before + 1);
    const last = core.store.queue.peek(10_000, 0).at(-1);
    assert.equal(last?.topic, 'portcullis/flows/full/alerts/off-hours');
    assert.equal(last?.payload.toString(), '{"allow":false}');
    await load('readonly', [{ id: 'p', type: 'portcullis-publish', topic: 'x', wires: [['h1']] }]);
    const err = failure('p');
    helper.getNode('p').receive({ payload: 'x' });
    assert.equal((await err).code, 'ERR_CONTROL_SCOPE');
    await load('full', [
      { id: 'p', type: 'portcullis-publish', topic: '../devices/x/commands', wires: [['h1']] },
    ]);
    const bad = failure('p');
    helper.getNode('p').receive({ payload: 'x' });
    assert.equal((await bad).code, 'ERR_CONTROL_INVALID');
  });

  it('audit: appends flow.<action> by the token, with the policy decision as details', async () => {
    await load('full', [{ id: 'a', type: 'portcullis-audit', action: 'off-hours', wires: [['h1']] }]);
    const out = output('h1');
    helper
      .getNode('a')
      .receive({ deviceId: device(), policy: { allow: false, reason: 'outside the window' } });
    const msg = await out;
    const seq = (msg.audit as { seq: number }).seq;
    const entry = [...core.store.audit.iterate(seq)][0];
    assert.equal(entry?.action, 'flow.off-hours');
    assert.equal(entry?.actor, 'flows:full');
    assert.equal(entry?.target, device());
    assert.match(entry?.details ?? '', /outside the window/);
  });

  it('ships example flows that use only these nodes (and core ones), fully wired, with no token inside', () => {
    const dir = join(ROOT, 'nodes', 'examples');
    const files = readdirSync(dir).filter((f) => f.endsWith('.json'));
    // Node-RED lists examples by file name: the names are the titles, and the README's rate guard is one.
    assert.deepEqual(files.sort(), [
      'Alert on off-hours activity.json',
      'Forward telemetry of approved sensors only.json',
      'Quarantine on high anomaly score.json',
      'Quarantine sensors sending too fast (rate guard).json',
    ]);
    const configIds: string[] = [];
    const ours = new Set(
      Object.keys(
        (
          JSON.parse(readFileSync(join(ROOT, 'nodes', 'package.json'), 'utf8')) as {
            'node-red': { nodes: Record<string, string> };
          }
        )['node-red'].nodes,
      ),
    );
    for (const f of files) {
      const flow = JSON.parse(readFileSync(join(dir, f), 'utf8')) as {
        id: string;
        type: string;
        wires?: string[][];
        credentials?: unknown;
      }[];
      const ids = new Set(flow.map((x) => x.id));
      const tab = flow.find((x) => x.type === 'tab') as unknown as { label: string };
      assert.equal(`${tab.label}.json`, f, 'the tab is called what the menu calls the example');
      configIds.push(...flow.filter((x) => x.type === 'portcullis-gateway').map((x) => x.id));
      // A quarantining example lets only active devices on: an already quarantined device's messages must not
      // call quarantine and write an audit entry each (issue 24).
      for (const q of flow.filter((x) => x.type === 'portcullis-quarantine')) {
        const events = flow.find((x) => x.type === 'portcullis-events');
        const gate = flow.find((x) => x.id === events?.wires?.[0]?.[0]) as unknown as {
          type: string;
          states: string;
          wires: string[][];
        };
        assert.equal(gate.type, 'portcullis-policy', `${f}: events go to a state check first (${q.id})`);
        assert.equal(gate.states, 'active', `${f}: the first check lets only active devices on`);
        assert.deepEqual(gate.wires[1], [], `${f}: inactive devices leave there`);
      }
      for (const node of flow) {
        assert.ok(ours.has(node.type) || ['tab', 'change'].includes(node.type), `${f}: ${node.type}`);
        for (const target of (node.wires ?? []).flat()) assert.ok(ids.has(target), `${f}: wire to ${target}`);
        assert.equal(node.credentials, undefined, `${f}: no credentials in an example`);
      }
    }
    // Importing two examples must not collide on the gateway config node.
    assert.equal(new Set(configIds).size, files.length, configIds.join(', '));
  });

  it('the anomaly-score example writes no audit entry per message of an already quarantined device', async () => {
    const flow = JSON.parse(
      readFileSync(join(ROOT, 'nodes', 'examples', 'Quarantine on high anomaly score.json'), 'utf8'),
    ) as Msg[];
    const gwNode = flow.find((x) => x.type === 'portcullis-gateway') as Msg;
    gwNode.socketPath = socketPath;
    await helper.unload();
    await new Promise<void>((r) => helper.load(NODES, flow, { [gwNode.id as string]: { token: T.full } }, r));
    const ev = statuses('ev1');
    const scored = statuses('sc1');
    for (let i = 0; i < 50 && !ev.some((s) => s.text === 'connected'); i++)
      await new Promise((r) => setTimeout(r, 50));
    const quarantined = device();
    await core.segmentation.quarantine(quarantined, { reason: 'test', mode: 'observe' }, 'test');
    const ofDevice = () =>
      core.store.audit.search({ target: quarantined, limit: 100 }).filter((e) => e.target === quarantined);
    const before = ofDevice().length;
    const message = (deviceId: string) =>
      core.events.emit({
        type: 'device.message',
        ts: new Date().toISOString(),
        deviceId,
        resource: '/telemetry',
        contentFormat: 50,
        payload: Buffer.from('{"t":21}').toString('base64'),
        size: 8,
        allowed: false,
      });
    for (let i = 0; i < 5; i++) message(quarantined);
    // Positive control: an active device's message gets past the gate to the score node.
    core.identity.addPskDevice(
      { id: `${quarantined}-ok`, pskIdentity: `${quarantined}-ok`, generate: true },
      'test',
    );
    message(`${quarantined}-ok`);
    for (let i = 0; i < 60 && scored.length === 0; i++) await new Promise((r) => setTimeout(r, 50));
    assert.ok(scored.length > 0, 'the active device was scored');
    await new Promise((r) => setTimeout(r, 300));
    const after = ofDevice();
    assert.equal(
      after.length,
      before,
      `no entries: ${JSON.stringify(after.slice(0, after.length - before))}`,
    );
  });

  it('fails with a clear status when no gateway is configured', async () => {
    await helper.unload();
    await new Promise<void>((r) =>
      helper.load(NODES, [{ id: 'd', type: 'portcullis-device', gateway: '', wires: [] }], {}, r),
    );
    const err = failure('d');
    helper.getNode('d').receive({ deviceId: 'x' });
    assert.match((await err).message, /no gateway configured/);
  });
});
