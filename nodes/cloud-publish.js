const { gatewayOf, deviceIdOf, fail, clock } = require('./lib/kit.js');

/**
 * Publishes through the gateway's durable mTLS uplink (queued in its store, sent at least once) under
 * `<prefix>/flows/<token>/<topic>` — the flow holds no broker key and cannot write device or command topics.
 */
module.exports = (RED) => {
  function PortcullisPublish(config) {
    RED.nodes.createNode(this, config);
    const gw = gatewayOf(RED, this, config);
    let sent = 0;
    this.on('input', async (msg, send, done) => {
      if (!gw) return done(new Error('no gateway configured'));
      const topic = String(config.topic || msg.topic || '').trim();
      if (!topic)
        return fail(
          this,
          done,
          Object.assign(new Error('no topic (node setting or msg.topic)'), { code: 'ERR_NODE_INPUT' }),
        );
      const p = msg.payload;
      const body = Buffer.isBuffer(p)
        ? { payload: p.toString('base64'), encoding: 'base64' }
        : { payload: typeof p === 'string' ? p : JSON.stringify(p ?? null), encoding: 'utf8' };
      const deviceId = deviceIdOf(msg);
      try {
        await gw.client.call('POST', '/v1/uplink/publish', {
          topic,
          ...body,
          ...(deviceId ? { deviceId } : {}),
        });
        sent++;
        this.status({ fill: 'green', shape: 'dot', text: `queued ${sent} · ${clock()}` });
        send(msg);
        done();
      } catch (err) {
        fail(this, done, err);
      }
    });
  }
  RED.nodes.registerType('portcullis-publish', PortcullisPublish);
};
