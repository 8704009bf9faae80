const { gatewayOf, deviceIdOf, fail } = require('./lib/kit.js');

/** Looks the message's device up in the gateway: state, segment, type, firmware, MUD allow-list → `msg.device`. */
module.exports = (RED) => {
  function PortcullisDevice(config) {
    RED.nodes.createNode(this, config);
    const gw = gatewayOf(RED, this, config);
    this.on('input', async (msg, send, done) => {
      if (!gw) return done(new Error('no gateway configured'));
      const id = deviceIdOf(msg) || config.device;
      if (!id)
        return fail(
          this,
          done,
          Object.assign(new Error('no device id on the message'), { code: 'ERR_NODE_INPUT' }),
        );
      try {
        msg.device = await gw.client.call('GET', `/v1/devices/${encodeURIComponent(id)}`);
        this.status({ fill: 'green', shape: 'dot', text: `${id}: ${msg.device.state}` });
        send(msg);
        done();
      } catch (err) {
        fail(this, done, err);
      }
    });
  }
  RED.nodes.registerType('portcullis-device', PortcullisDevice);
};
