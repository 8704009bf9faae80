'use strict';
const { gatewayOf, onInput, requireDevice } = require('./lib/kit.js');

/**
 * The event for the score API: a device message (from "events in") by its size and resource, or an explicit
 * `msg.observation` ({kind: 'connection', dst, dport, proto} or {kind: 'auth_failure'}).
 */
function observationOf(msg) {
  if (msg.observation && typeof msg.observation === 'object') return msg.observation;
  const e = msg.payload;
  if (e && typeof e === 'object' && e.type === 'device.message') {
    return { kind: 'message', bytes: Number(e.size) || 0, resource: e.resource || '/telemetry' };
  }
  const bytes = Buffer.isBuffer(msg.payload)
    ? msg.payload.length
    : Buffer.byteLength(String(msg.payload ?? ''));
  return { kind: 'message', bytes, resource: '/telemetry' };
}

/** Scores a message against the device's own baseline (without teaching it): `msg.anomaly`. */
module.exports = (RED) => {
  function PortcullisScore(config) {
    RED.nodes.createNode(this, config);
    onInput(this, gatewayOf(RED, this, config), async (gw, msg, send) => {
      const id = requireDevice(msg);
      msg.anomaly = await gw.client.call(
        'POST',
        `/v1/devices/${encodeURIComponent(id)}/score`,
        observationOf(msg),
      );
      const s = msg.anomaly.score;
      this.status({
        fill: msg.anomaly.learning ? 'grey' : s >= 3 ? 'red' : 'green',
        shape: 'dot',
        text: msg.anomaly.learning ? `${id}: learning` : `${id}: score ${s}`,
      });
      send(msg);
    });
  }
  RED.nodes.registerType('portcullis-score', PortcullisScore);
};
