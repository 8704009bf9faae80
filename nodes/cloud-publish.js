'use strict';
const { gatewayOf, deviceIdOf, onInput, clock } = require('./lib/kit.js');

/**
 * Publishes through the gateway's durable mTLS uplink (queued in its store, sent at least once) under
 * `<prefix>/flows/<token>/<topic>` — the flow holds no broker key and cannot write device or command topics.
 */
module.exports = (RED) => {
  function PortcullisPublish(config) {
    RED.nodes.createNode(this, config);
    let sent = 0;
    onInput(this, gatewayOf(RED, this, config), async (gw, msg, send) => {
      const topic = String(config.topic || msg.topic || '').trim();
      if (!topic)
        throw Object.assign(new Error('no topic (node setting or msg.topic)'), { code: 'ERR_NODE_INPUT' });
      const p = msg.payload;
      const body = Buffer.isBuffer(p)
        ? { payload: p.toString('base64'), encoding: 'base64' }
        : { payload: typeof p === 'string' ? p : JSON.stringify(p ?? null), encoding: 'utf8' };
      const deviceId = deviceIdOf(msg);
      await gw.client.call('POST', '/v1/uplink/publish', {
        topic,
        ...body,
        ...(deviceId ? { deviceId } : {}),
      });
      sent++;
      this.status({ fill: 'green', shape: 'dot', text: `queued ${sent} · ${clock()}` });
      send(msg);
    });
  }
  RED.nodes.registerType('portcullis-publish', PortcullisPublish);
};
