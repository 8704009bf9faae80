/**
 * Flows that decide (issue 24): the "policy decision" node registered over the real control socket as the
 * decision point of a profile, under Node-RED's own runtime (node-red-node-test-helper). The gateway's policy
 * service asks it per message and waits the profile's budget: the flow's allow and deny decide (attributed to
 * flows:NAME), no answer in time fails closed (or open, as the profile says), a late answer changes nothing,
 * another flow's token cannot answer, and a token without the scope, or revoked, shows "refused" and raises an
 * error Catch nodes see. Also the events node's "refused (401)" on revocation (issue 24's Node-RED findings).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { systemClock } from '../gateway/src/clock.ts';
import { parseConfig } from '../gateway/src/config/index.ts';
import { type ControlServer, startControlServer } from '../gateway/src/control/server.ts';
import { Core } from '../gateway/src/core.ts';
import type { PolicyRequest } from '../gateway/src/policy/engine.ts';
import { ControlTokens } from '../gateway/src/users/index.ts';

const require = createRequire(import.meta.url);

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
const NODES = ['portcullis-gateway', 'policy-decision', 'device-events', 'policy-check', 'device-info'].map(
  (n) => require(`../nodes/${n}.js`) as unknown,
);
type Msg = Record<string, unknown>;

const REQ: PolicyRequest = {
  method: 'POST',
  resource: '/telemetry',
  contentFormat: 50,
  payload: Buffer.from('{"t":21}'),
};

function post(
  socketPath: string,
  token: string,
  path: string,
  body: unknown,
): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        socketPath,
        method: 'POST',
        path,
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      },
      (res) => {
        let text = '';
        res.on('data', (d: Buffer) => {
          text += d.toString();
        });
        res.on('end', () => resolve(JSON.parse(text || '{}') as Record<string, unknown>));
      },
    );
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

describe('policy decision node: a flow as the synchronous decision point of a profile', () => {
  let dir: string;
  let core: Core;
  let control: ControlServer;
  let tokens: ControlTokens;
  let socketPath: string;
  const T = { guard: '', other: '', noscope: '', events: '', stale: '' };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'portcullis-decide-'));
    socketPath = join(dir, 'control.sock');
    const config = parseConfig(
      {
        dataDir: join(dir, 'var'),
        policy: {
          profiles: {
            guarded: { decision: { flow: 'guard', budgetMs: 50, onTimeout: 'closed' } },
            lenient: { decision: { flow: 'guard', budgetMs: 50, onTimeout: 'open' } },
            orphan: { decision: { flow: 'nobody', budgetMs: 50 } },
          },
        },
      },
      dir,
    );
    core = Core.open(config, systemClock);
    for (const [id, profile] of [
      ['g1', 'guarded'],
      ['l1', 'lenient'],
      ['o1', 'orphan'],
    ] as const) {
      core.identity.addPskDevice({ id, pskIdentity: id, generate: true }, 'test');
      core.policy.assign(id, { profile }, 'test');
    }
    control = await startControlServer(core, socketPath, {});
    tokens = new ControlTokens(core.store, core.audit, systemClock);
    T.guard = tokens.create('guard', ['policy:decide'], 'test').token;
    T.other = tokens.create('other', ['policy:decide'], 'test').token;
    T.noscope = tokens.create('noscope', ['events:read'], 'test').token;
    T.events = tokens.create('events', ['events:read'], 'test').token;
    T.stale = tokens.create('stale', ['device:read'], 'test').token;
    await new Promise<void>((r) => helper.startServer(r));
  });

  after(async () => {
    await helper.unload();
    await new Promise<void>((r) => helper.stopServer(r));
    await control.close();
    core.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function load(token: keyof typeof T, nodes: Msg[]) {
    await helper.unload();
    const flow = [
      { id: 'gw', type: 'portcullis-gateway', socketPath },
      ...nodes.map((x) => ({ gateway: 'gw', ...x })),
      { id: 'h1', type: 'helper' },
    ];
    await new Promise<void>((r) => helper.load(NODES, flow, { gw: { token: T[token] } }, r));
  }
  const statuses = (id: string) => {
    const seen: { fill?: string; text?: string }[] = [];
    helper
      .getNode(id)
      .on('call:status', (call) => seen.push(call.args[0] as { fill?: string; text?: string }));
    return seen;
  };
  const until = async (what: string, ok: () => boolean) => {
    for (let i = 0; i < 200 && !ok(); i++) await new Promise((r) => setTimeout(r, 10));
    assert.ok(ok(), what);
  };
  /** Loads the decision node wired to h1 and answers each question with `answer` (or not, when undefined). */
  async function decider(answer: (q: Msg) => boolean | undefined) {
    await load('guard', [{ id: 'd', type: 'portcullis-decision', wires: [['h1']] }]);
    const seen = statuses('d');
    const questions: Msg[] = [];
    helper.getNode('h1').on('input', (m) => {
      const msg = m as unknown as Msg;
      questions.push(msg);
      const a = answer(msg);
      if (a !== undefined) helper.getNode('d').receive({ ...msg, allow: a });
    });
    await until('the node registered', () => seen.some((s) => s.text?.startsWith('deciding')));
    return { questions, seen };
  }

  it("the flow's allow and deny decide, attributed to flows:guard; the question carries the message", async () => {
    const { questions } = await decider((q) => (q.payload as { deviceId: string }).deviceId === 'g1');
    const allowed = await core.policy.check(core.store.devices.get('g1'), REQ);
    assert.deepEqual(allowed, { allow: true, by: 'flows:guard' });
    const q = questions[0]!;
    assert.equal((q.payload as { resource: string }).resource, '/telemetry');
    assert.equal((q.payload as { profile: string }).profile, 'guarded');
    assert.equal((q.data as Buffer).toString(), '{"t":21}');
    const denied = await core.policy.check(core.store.devices.get('l1'), REQ);
    assert.equal(denied.allow, false);
    assert.equal(!denied.allow && denied.rule, 'flow');
    assert.equal(!denied.allow && denied.code, '4.03');
    assert.equal(!denied.allow && denied.by, 'flows:guard');
  });

  it('timeout: no answer within the budget fails closed (or open, as the profile says); a late answer changes nothing', async () => {
    const { questions, seen } = await decider(() => undefined);
    const t0 = performance.now();
    const closed = await core.policy.check(core.store.devices.get('g1'), REQ);
    const waited = performance.now() - t0;
    assert.equal(closed.allow, false);
    assert.match(!closed.allow ? closed.reason : '', /no answer from the flow within 50 ms \(fails closed\)/);
    assert.ok(waited >= 45 && waited < 1000, `waited ${waited.toFixed(1)} ms for a 50 ms budget`);
    const open = await core.policy.check(core.store.devices.get('l1'), REQ);
    assert.equal(open.allow, true);
    assert.match(open.by, /flows:guard \(no answer in 50 ms: open\)/);
    // The flow answers now, after the budget: it is told so on the badge, nothing else.
    helper.getNode('d').receive({ ...questions[0]!, allow: true });
    await until('the late answer is counted', () => seen.some((s) => / 1 late/.test(s.text ?? '')));
  });

  it('a profile whose flow is not registered fails closed at once; another flow cannot answer our question', async () => {
    const t0 = performance.now();
    const orphan = await core.policy.check(core.store.devices.get('o1'), REQ);
    assert.equal(orphan.allow, false);
    assert.ok(performance.now() - t0 < 45, 'nobody to ask: no wait');
    const { questions } = await decider(() => undefined);
    const pending = core.policy.check(core.store.devices.get('g1'), REQ);
    await until('the question arrived', () => questions.length === 1);
    const id = questions[0]!.portcullisQuestion as string;
    const r = await post(socketPath, T.other, '/v1/policy/answers', { id, allow: true });
    assert.equal(r.accepted, false, "another token's answer is not taken");
    assert.equal((await pending).allow, false);
  });

  it('a token without policy:decide is refused (403) where Catch nodes see it', async () => {
    await load('noscope', [{ id: 'd', type: 'portcullis-decision', wires: [['h1']] }]);
    const seen = statuses('d');
    const err = new Promise<{ code?: string }>((resolve) =>
      helper.getNode('d').on('call:error', (call) => resolve(call.args[0] as { code?: string })),
    );
    assert.equal((await err).code, 'ERR_CONTROL_SCOPE');
    await until('refused (403)', () => seen.at(-1)?.text === 'refused (403)');
  });

  it('revoking the token: the decision node and the events node show "refused (401)" and raise an error', async () => {
    await load('events', [{ id: 'e', type: 'portcullis-events', wires: [['h1']] }]);
    const seen = statuses('e');
    await until('connected', () => seen.some((s) => s.text === 'connected'));
    const err = new Promise<{ code?: string }>((resolve) =>
      helper.getNode('e').on('call:error', (call) => resolve(call.args[0] as { code?: string })),
    );
    tokens.revoke('events', 'test');
    assert.equal((await err).code, 'ERR_CONTROL_TOKEN');
    await until('refused (401) stays', () => seen.at(-1)?.text === 'refused (401)');
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(seen.at(-1)?.text, 'refused (401)', 'not overwritten by "disconnected"');
  });

  it('revoking the token: every node of that gateway shows "refused (401)", not only the one that called', async () => {
    await load('stale', [
      { id: 'pc', type: 'portcullis-policy', states: 'active', wires: [['h1'], []] },
      { id: 'di', type: 'portcullis-device', wires: [['h1']] },
    ]);
    const pc = statuses('pc');
    const di = statuses('di');
    const seen = new Promise<void>((r) => helper.getNode('h1').on('input', () => r()));
    helper.getNode('pc').receive({ deviceId: 'g1' });
    await seen;
    assert.equal(pc.at(-1)?.fill, 'green');
    tokens.revoke('stale', 'test');
    const err = new Promise<{ code?: string }>((resolve) =>
      helper.getNode('di').on('call:error', (call) => resolve(call.args[0] as { code?: string })),
    );
    helper.getNode('di').receive({ deviceId: 'g1' });
    assert.equal((await err).code, 'ERR_CONTROL_TOKEN');
    await until(
      'both badges say refused',
      () => pc.at(-1)?.text === 'refused (401)' && di.at(-1)?.text === 'refused (401)',
    );
  });
});
