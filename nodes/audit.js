const { gatewayOf, deviceIdOf, fail, clock } = require('./lib/kit.js');

/** Appends an entry to the gateway's hash-chained audit log, as `flow.<action>` by this flow's token. */
module.exports = (RED) => {
  function PortcullisAudit(config) {
    RED.nodes.createNode(this, config);
    const gw = gatewayOf(RED, this, config);
    this.on('input', async (msg, send, done) => {
      if (!gw) return done(new Error('no gateway configured'));
      const action = String(config.action || msg.action || 'note');
      const details =
        msg.auditDetails && typeof msg.auditDetails === 'object'
          ? msg.auditDetails
          : msg.policy
            ? { allow: msg.policy.allow, reason: msg.policy.reason }
            : {};
      try {
        const r = await gw.client.call('POST', '/v1/audit', { action, target: deviceIdOf(msg), details });
        msg.audit = r;
        this.status({ fill: 'green', shape: 'dot', text: `entry ${r.seq} · ${clock()}` });
        send(msg);
        done();
      } catch (err) {
        fail(this, done, err);
      }
    });
  }
  RED.nodes.registerType('portcullis-audit', PortcullisAudit);
};
