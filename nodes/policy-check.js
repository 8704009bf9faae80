'use strict';
const { evaluate, RateWindow } = require('./lib/policy.js');
const { gatewayOf, deviceIdOf, onInput, clock } = require('./lib/kit.js');

const DEVICE_CACHE_MS = 2000;

/** A zero-trust rule per message: output 1 allow, output 2 deny, `msg.policy` says why. */
module.exports = (RED) => {
  function PortcullisPolicy(config) {
    RED.nodes.createNode(this, config);
    const gw = gatewayOf(RED, this, config);
    const list = (s) =>
      (s ?? '')
        .split(',')
        .map((x) => x.trim())
        .filter(Boolean);
    const num = (s) => (s === '' || s === undefined || s === null ? null : Number(s));
    const rule = {
      states: list(config.states ?? 'active'),
      segments: list(config.segments),
      window: config.windowEnabled
        ? {
            days: list(config.days ?? '1,2,3,4,5').map(Number),
            fromHour: Number(config.fromHour ?? 7),
            toHour: Number(config.toHour ?? 19),
            utcOffsetMinutes: Number(config.utcOffsetMinutes ?? 0),
          }
        : null,
      maxPerMinute: num(config.maxPerMinute),
      maxScore: num(config.maxScore),
      mud: Boolean(config.mud),
    };
    const rates = new RateWindow();
    const cache = new Map();
    const lookup = async (id) => {
      const hit = cache.get(id);
      if (hit && Date.now() - hit.at < DEVICE_CACHE_MS) return hit.device;
      try {
        const device = await gw.client.call('GET', `/v1/devices/${encodeURIComponent(id)}`);
        cache.set(id, { at: Date.now(), device });
        return device;
      } catch (err) {
        if (err.status === 404) return undefined; // unknown device: the rule denies
        throw err;
      }
    };
    onInput(this, gw, async (_gw, msg, send) => {
      const id = deviceIdOf(msg);
      const device = id ? await lookup(id) : undefined;
      const decision = evaluate(rule, {
        device,
        now: Date.now(),
        perMinute: id ? rates.hit(id, Date.now()) : 0,
        score: typeof msg.anomaly?.score === 'number' ? msg.anomaly.score : undefined,
        destination: msg.destination,
      });
      msg.policy = { ...decision, rule: config.name || 'policy check', deviceId: id ?? null };
      this.status({
        fill: decision.allow ? 'green' : 'red',
        shape: 'dot',
        text: `${decision.allow ? 'allow' : 'deny'} ${id ?? '?'} ${clock()}`,
      });
      send(decision.allow ? [msg, null] : [null, msg]);
    });
  }
  RED.nodes.registerType('portcullis-policy', PortcullisPolicy);
};
