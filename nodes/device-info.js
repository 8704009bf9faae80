'use strict';
const { gatewayOf, onInput, requireDevice } = require('./lib/kit.js');

/** Looks the message's device up in the gateway: state, segment, type, firmware, MUD allow-list → `msg.device`. */
module.exports = (RED) => {
  function PortcullisDevice(config) {
    RED.nodes.createNode(this, config);
    onInput(this, gatewayOf(RED, this, config), async (gw, msg, send) => {
      const id = config.device || requireDevice(msg);
      msg.device = await gw.client.call('GET', `/v1/devices/${encodeURIComponent(id)}`);
      this.status({ fill: 'green', shape: 'dot', text: `${id}: ${msg.device.state}` });
      send(msg);
    });
  }
  RED.nodes.registerType('portcullis-device', PortcullisDevice);
};
