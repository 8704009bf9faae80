'use strict';
const { gatewayOf, deviceIdOf, onInput, clock } = require('./lib/kit.js');

/** Appends an entry to the gateway's hash-chained audit log, as `flow.<action>` by this flow's token. */
module.exports = (RED) => {
  function PortcullisAudit(config) {
    RED.nodes.createNode(this, config);
    onInput(this, gatewayOf(RED, this, config), async (gw, msg, send) => {
      const action = String(config.action || msg.action || 'note');
      const details =
        msg.auditDetails && typeof msg.auditDetails === 'object'
          ? msg.auditDetails
          : msg.policy
            ? { allow: msg.policy.allow, reason: msg.policy.reason }
            : {};
      msg.audit = await gw.client.call('POST', '/v1/audit', { action, target: deviceIdOf(msg), details });
      this.status({ fill: 'green', shape: 'dot', text: `entry ${msg.audit.seq} · ${clock()}` });
      send(msg);
    });
  }
  RED.nodes.registerType('portcullis-audit', PortcullisAudit);
};
