const { gatewayOf, deviceIdOf, fail, clock } = require('./lib/kit.js');

/** Quarantines (observe or isolate) or releases the message's device; the gateway audits it as this token. */
module.exports = (RED) => {
  function PortcullisQuarantine(config) {
    RED.nodes.createNode(this, config);
    const gw = gatewayOf(RED, this, config);
    const action = config.action === 'release' ? 'release' : 'quarantine';
    this.on('input', async (msg, send, done) => {
      if (!gw) return done(new Error('no gateway configured'));
      const id = deviceIdOf(msg);
      if (!id)
        return fail(
          this,
          done,
          Object.assign(new Error('no device id on the message'), { code: 'ERR_NODE_INPUT' }),
        );
      const reason = String(
        msg.reason || config.reason || msg.policy?.reason || `flow ${config.name || action}`,
      ).slice(0, 500);
      try {
        const body =
          action === 'quarantine'
            ? { reason, mode: config.mode === 'isolate' ? 'isolate' : 'observe' }
            : { reason };
        msg.payload = await gw.client.call('POST', `/v1/devices/${encodeURIComponent(id)}/${action}`, body);
        this.status(
          msg.payload.unchanged
            ? {
                fill: 'yellow',
                shape: 'dot',
                text: `${id} already ${action === 'release' ? 'released' : 'quarantined'} ${clock()}`,
              }
            : { fill: 'green', shape: 'dot', text: `${action}d ${id} ${clock()}` },
        );
        send(msg);
        done();
      } catch (err) {
        fail(this, done, err);
      }
    });
  }
  RED.nodes.registerType('portcullis-quarantine', PortcullisQuarantine);
};
