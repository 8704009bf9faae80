'use strict';
const { gatewayOf, fail } = require('./lib/kit.js');

const STATES = {
  connecting: { fill: 'yellow', shape: 'ring', text: 'connecting' },
  connected: { fill: 'green', shape: 'dot', text: 'deciding' },
  disconnected: { fill: 'red', shape: 'ring', text: 'disconnected' },
  refused: { fill: 'red', shape: 'dot', text: 'refused' },
};

/** What the flow answered: `msg.allow` (boolean), else a payload of true/false or "allow"/"deny". */
function answerOf(msg) {
  if (typeof msg.allow === 'boolean') return msg.allow;
  if (typeof msg.payload === 'boolean') return msg.payload;
  if (msg.payload === 'allow' || msg.payload === 'deny') return msg.payload === 'allow';
  return undefined;
}

/**
 * A synchronous decision point for the gateway's data path (docs/policy.md): device profiles whose
 * `decision.flow` is this flow's token name put each message to it before it may be queued. Each question
 * leaves on the output (`msg.payload`: device, method, resource, content format; `msg.data`: the payload bytes);
 * the flow decides and wires the message back into a policy decision node with `msg.allow` set. The gateway
 * waits only its budget (e.g. 50 ms), then fails closed or open as the profile says.
 */
module.exports = (RED) => {
  function PortcullisDecision(config) {
    RED.nodes.createNode(this, config);
    const gw = gatewayOf(RED, this, config);
    if (!gw) return;
    let asked = 0;
    let late = 0;
    const badge = () => {
      this.status({
        fill: 'green',
        shape: 'dot',
        text: `deciding · ${asked} asked${late ? ` · ${late} late` : ''}`,
      });
    };
    const stream = gw.client.follow(
      {
        onEvent: (q) => {
          if (q.type !== 'policy.question' || typeof q.id !== 'string') return;
          asked++;
          badge();
          this.send({
            topic: 'policy.question',
            deviceId: q.deviceId,
            payload: q,
            data: typeof q.payload === 'string' ? Buffer.from(q.payload, 'base64') : Buffer.alloc(0),
            portcullisQuestion: q.id,
          });
        },
        onState: (s, detail) =>
          this.status({ ...STATES[s], ...(detail ? { text: `${STATES[s].text} (${detail})` } : {}) }),
        onRefused: (err) =>
          this.error(err, { topic: 'portcullis.refused', payload: { code: err.code, status: err.status } }),
      },
      '/v1/policy/questions',
    );
    this.on('input', async (msg, _send, done) => {
      try {
        const id = msg.portcullisQuestion;
        const allow = answerOf(msg);
        if (typeof id !== 'string' || allow === undefined) {
          throw Object.assign(
            new Error('an answer needs msg.portcullisQuestion (from this node) and msg.allow true or false'),
            { code: 'ERR_NODE_INPUT' },
          );
        }
        const r = await gw.client.call('POST', '/v1/policy/answers', { id, allow });
        if (!r.accepted) {
          // After the budget the gateway had already decided (onTimeout): the flow is too slow.
          late++;
          badge();
        }
        done();
      } catch (err) {
        fail(this, done, err);
      }
    });
    this.on('close', () => stream.close());
  }
  RED.nodes.registerType('portcullis-decision', PortcullisDecision);
};
