/**
 * Flows that decide, end to end (issue 24): a real sensor (coap-client-openssl over DTLS) against the running
 * gateway, whose profile puts each message to a flow registered on the control socket as its decision point
 * (here a plain HTTP client in the test speaking the node's protocol; test/policy-decision.test.ts runs the
 * Node-RED node itself). The flow's allow lets the reading through to the broker, its deny is 4.03, no answer
 * within the budget is 4.03 (closed) or passes (open), and with no flow registered the profile fails closed.
 * The budget is 250 ms here so a loaded CI machine does not turn an answer into a timeout; the 50 ms budget's
 * timing is measured in test/policy-decision.test.ts.
 */
import assert from 'node:assert/strict';
import { type ClientRequest, request } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type GatewayHome, makeGatewayHome, type RunningGateway } from '../helpers/gateway.ts';
import { type Broker, startBroker } from '../helpers/mosquitto.ts';
import { runPeer } from '../helpers/peers.ts';
import { makePki, type TestPki } from '../helpers/pki.ts';
import { type Subscriber, startSubscriber } from '../helpers/subscriber.ts';

const KEY = 'policy-flow-key-0123';

async function post(port: number, identity: string, body: string): Promise<string> {
  const r = await runPeer(
    'coap-client-openssl',
    [
      '-v',
      '7',
      '-u',
      identity,
      '-k',
      KEY,
      '-m',
      'post',
      '-B',
      '5',
      '-e',
      body,
      `coaps://127.0.0.1:${port}/telemetry`,
    ],
    { timeoutMs: 10_000 },
  );
  const text = r.stdout.toString() + r.stderr;
  return /t:ACK c:(\d\.\d\d)/.exec(text)?.[1] ?? `no response: ${text.slice(-300)}`;
}

/** The flow: follows the question stream and answers with `decide` (undefined: no answer). */
function flow(socketPath: string, token: string, decide: (deviceId: string) => boolean | undefined) {
  const asked: string[] = [];
  let req: ClientRequest | undefined;
  const answer = (id: string, allow: boolean) => {
    const r = request({
      socketPath,
      method: 'POST',
      path: '/v1/policy/answers',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    });
    r.on('error', () => undefined);
    r.end(JSON.stringify({ id, allow }));
  };
  const opened = new Promise<void>((resolve, reject) => {
    req = request(
      {
        socketPath,
        method: 'GET',
        path: '/v1/policy/questions',
        headers: { authorization: `Bearer ${token}` },
      },
      (res) => {
        if (res.statusCode !== 200) return reject(new Error(`HTTP ${res.statusCode}`));
        let buf = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          buf += chunk;
          for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
            const q = JSON.parse(buf.slice(0, nl)) as { type: string; id: string; deviceId: string };
            buf = buf.slice(nl + 1);
            if (q.type === 'stream.open') resolve();
            if (q.type !== 'policy.question') continue;
            asked.push(q.deviceId);
            const a = decide(q.deviceId);
            if (a !== undefined) answer(q.id, a);
          }
        });
      },
    );
    req.on('error', reject);
    req.end();
  });
  return { opened, asked, close: () => req?.destroy() };
}

describe('policy: a flow decides for a real sensor, within its budget', () => {
  let pki: TestPki;
  let broker: Broker;
  let home: GatewayHome;
  let gw: RunningGateway;
  let sub: Subscriber;
  let token: string;
  let socketPath: string;

  before(async () => {
    pki = makePki();
    broker = await startBroker({ caPath: pki.caPath, server: pki.broker });
    home = await makeGatewayHome(pki, broker, 'gw-policy-flow', {
      extraConfig: [
        'control: {socketPath: control.sock}',
        'policy:',
        '  profiles:',
        '    guarded: {decision: {flow: guard, budgetMs: 250, onTimeout: closed}}',
        '    lenient: {decision: {flow: guard, budgetMs: 250, onTimeout: open}}',
      ],
    });
    socketPath = join(home.dir, 'control.sock');
    for (const [id, profile] of [
      ['yes', 'guarded'],
      ['no', 'guarded'],
      ['slow', 'guarded'],
      ['slow-open', 'lenient'],
    ]) {
      await home.cli(['device', 'add', id as string, '--psk-identity', id as string, '--psk-text', KEY]);
      await home.cli(['device', 'profile', id as string, profile as string]);
    }
    token = (
      await home.cli(['flows', 'token', 'create', '--name', 'guard', '--scopes', 'policy:decide'])
    ).split('\n')[1] as string;
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

  it("the flow's allow passes, its deny is 4.03, no answer in time is 4.03 (closed) or passes (open)", async () => {
    const f = flow(socketPath, token, (d) => (d === 'yes' ? true : d === 'no' ? false : undefined));
    await f.opened;
    try {
      assert.equal(await post(home.dtlsPort, 'yes', 'allowed by the flow'), '2.04');
      assert.equal(await post(home.dtlsPort, 'no', 'denied by the flow'), '4.03');
      assert.equal(await post(home.dtlsPort, 'slow', 'no answer, closed'), '4.03');
      assert.equal(await post(home.dtlsPort, 'slow-open', 'no answer, open'), '2.04');
      assert.deepEqual(f.asked, ['yes', 'no', 'slow', 'slow-open'], 'each message was put to the flow');
    } finally {
      f.close();
    }
    await sub.waitFor((ms) => ms.some((m) => m.payload.toString() === 'no answer, open'), 'the open one');
    const published = sub.messages.map((m) => m.payload.toString());
    assert.ok(published.includes('allowed by the flow'));
    assert.ok(!published.includes('denied by the flow') && !published.includes('no answer, closed'));
  });

  it('with no flow registered the profile fails closed; the refusals are attributed to flows:guard', async () => {
    // The stream closed above: give the gateway a moment to see it go.
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(await post(home.dtlsPort, 'yes', 'nobody to ask'), '4.03');
    await gw.stop();
    const audit = (await home.cli(['audit', 'export', '--format', 'jsonl']))
      .trim()
      .split('\n')
      .map(
        (l) => JSON.parse(l) as { action: string; target: string; details: { by?: string; rule?: string } },
      );
    const refused = audit.filter((e) => e.action === 'policy.refused');
    assert.deepEqual(refused.map((e) => [e.target, e.details.rule, e.details.by]).sort(), [
      ['no', 'flow', 'flows:guard'],
      ['slow', 'flow', 'flows:guard'],
      ['yes', 'flow', 'flows:guard'],
    ]);
    assert.ok(audit.some((e) => e.action === 'policy.decider.register' && e.target === 'guard'));
  });
});
