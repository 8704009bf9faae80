// @ts-check
'use strict';

/** What every Portcullis node does the same way: find its gateway, the device a message is about, failures. */

/**
 * @typedef {{ status(s: object): void; error(e: unknown, msg?: object): void; on(ev: string, fn: Function): void; send(m: unknown): void }} NodeLike
 * @typedef {{ client: import('./client.js').ControlClient | null; clientError: Error | null; subscribe: Function; join?: (n: NodeLike) => void; refused?: (status: number) => void }} GatewayNode
 */

/**
 * The configured `portcullis-gateway` node, or undefined (the node shows why).
 * @param {{ nodes: { getNode(id: string): unknown } }} RED
 * @param {NodeLike} node
 * @param {{ gateway?: string }} config
 * @returns {GatewayNode | undefined}
 */
function gatewayOf(RED, node, config) {
  const gw = /** @type {GatewayNode | null} */ (config.gateway ? RED.nodes.getNode(config.gateway) : null);
  if (!gw) {
    node.status({ fill: 'red', shape: 'ring', text: 'no gateway configured' });
    return undefined;
  }
  if (!gw.client) {
    node.status({ fill: 'red', shape: 'ring', text: gw.clientError?.message ?? 'gateway not usable' });
    return undefined;
  }
  gw.join?.(node);
  return gw;
}

/**
 * The device a message is about: `msg.deviceId`, else the event's `deviceId` in `msg.payload`.
 * @param {Record<string, unknown>} msg
 * @returns {string | undefined}
 */
function deviceIdOf(msg) {
  if (typeof msg.deviceId === 'string' && msg.deviceId) return msg.deviceId;
  const p = /** @type {Record<string, unknown> | null} */ (
    msg.payload && typeof msg.payload === 'object' ? msg.payload : null
  );
  return p && typeof p.deviceId === 'string' && p.deviceId ? p.deviceId : undefined;
}

/**
 * A failure goes to the node's status and to Catch nodes (through `done`), never swallowed.
 * @param {NodeLike} node
 * @param {(err?: unknown) => void} done
 * @param {unknown} err
 */
function fail(node, done, err) {
  const e = /** @type {{ code?: string; message?: string }} */ (err);
  node.status({ fill: 'red', shape: 'dot', text: `${e.code ?? 'error'}: ${(e.message ?? '').slice(0, 40)}` });
  done(err);
}

/**
 * The device a message is about, or a typed failure (Catch nodes see it).
 * @param {Record<string, unknown>} msg
 * @returns {string}
 */
function requireDevice(msg) {
  const id = deviceIdOf(msg);
  if (!id) throw Object.assign(new Error('no device id on the message'), { code: 'ERR_NODE_INPUT' });
  return id;
}

/**
 * The input side every action node shares: no gateway → an error; the handler's failure → status and `done`.
 * @param {NodeLike} node
 * @param {GatewayNode | undefined} gw
 * @param {(gw: GatewayNode & { client: import('./client.js').ControlClient }, msg: Record<string, any>, send: (m: unknown) => void) => Promise<void>} handler
 */
function onInput(node, gw, handler) {
  node.on(
    'input',
    /** @param {Record<string, any>} msg @param {(m: unknown) => void} send @param {(err?: unknown) => void} done */ async (
      msg,
      send,
      done,
    ) => {
      if (!gw?.client) return done(new Error('no gateway configured'));
      try {
        await handler(
          /** @type {GatewayNode & { client: import('./client.js').ControlClient }} */ (gw),
          msg,
          send,
        );
        done();
      } catch (err) {
        fail(node, done, err);
        // A revoked (or unknown) token: every node of this gateway shows it, not only the one that called.
        if (/** @type {{ status?: number }} */ (err)?.status === 401) gw.refused?.(401);
      }
    },
  );
}

/** @param {number} ms */
function clock(ms = Date.now()) {
  return new Date(ms).toISOString().slice(11, 19);
}

module.exports = { gatewayOf, deviceIdOf, requireDevice, onInput, fail, clock };
