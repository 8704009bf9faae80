'use strict';
const { gatewayOf, onInput, requireDevice, clock } = require('./lib/kit.js');

/** Quarantines (observe or isolate) or releases the message's device; the gateway audits it as this token. */
module.exports = (RED) => {
  function PortcullisQuarantine(config) {
    RED.nodes.createNode(this, config);
    const action = config.action === 'release' ? 'release' : 'quarantine';
    onInput(this, gatewayOf(RED, this, config), async (gw, msg, send) => {
      const id = requireDevice(msg);
      const reason = String(
        msg.reason || config.reason || msg.policy?.reason || `flow ${config.name || action}`,
      ).slice(0, 500);
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
    });
  }
  RED.nodes.registerType('portcullis-quarantine', PortcullisQuarantine);
};
