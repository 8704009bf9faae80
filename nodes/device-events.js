'use strict';
const { gatewayOf } = require('./lib/kit.js');

const STATES = {
  connecting: { fill: 'yellow', shape: 'ring', text: 'connecting' },
  connected: { fill: 'green', shape: 'dot', text: 'connected' },
  disconnected: { fill: 'red', shape: 'ring', text: 'disconnected' },
  refused: { fill: 'red', shape: 'dot', text: 'refused' },
};

/** Device messages and security events from the gateway, filtered by type and device. */
module.exports = (RED) => {
  function PortcullisEvents(config) {
    RED.nodes.createNode(this, config);
    const gw = gatewayOf(RED, this, config);
    if (!gw) return;
    const types = new Set(
      (config.types ?? '')
        .split(',')
        .map((t) => t.trim())
        .filter(Boolean),
    );
    const device = (config.device ?? '').trim();
    let seen = 0;
    const off = gw.subscribe({
      state: (s, detail) =>
        this.status({ ...STATES[s], ...(detail ? { text: `${STATES[s].text} (${detail})` } : {}) }),
      // With a message, so Catch nodes get it: a revoked token must not look like a network hiccup.
      refused: (err) =>
        this.error(err, { topic: 'portcullis.refused', payload: { code: err.code, status: err.status } }),
      event: (e) => {
        if (types.size > 0 && !types.has(e.type)) return;
        if (device && e.deviceId !== device) return;
        seen++;
        const msg = { topic: e.type, deviceId: e.deviceId, payload: e };
        // A device message's own bytes, decoded once here for the nodes downstream.
        if (e.type === 'device.message' && typeof e.payload === 'string')
          msg.data = Buffer.from(e.payload, 'base64');
        this.status({ fill: 'green', shape: 'dot', text: `connected · ${seen} events` });
        this.send(msg);
      },
    });
    this.on('close', off);
  }
  RED.nodes.registerType('portcullis-events', PortcullisEvents);
};
