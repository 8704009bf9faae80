'use strict';
const { ControlClient } = require('./lib/client.js');

/** Config node: the gateway's control socket and this flow's token (held in Node-RED's credentials). */
module.exports = (RED) => {
  function PortcullisGateway(config) {
    RED.nodes.createNode(this, config);
    this.socketPath = config.socketPath;
    this.client = null;
    this.clientError = null;
    try {
      this.client = new ControlClient({
        socketPath: config.socketPath,
        token: this.credentials?.token ?? '',
      });
    } catch (err) {
      this.clientError = err;
    }
    // Every node using this gateway: a revoked token is every node's problem, so none keeps a stale green badge.
    const members = new Set();
    this.join = (node) => {
      members.add(node);
      node.on('close', () => members.delete(node));
    };
    /** The gateway refused the token (401): every member's badge says so until a call or stream gets through. */
    this.refused = (status) => {
      for (const n of members) n.status({ fill: 'red', shape: 'dot', text: `refused (${status})` });
    };
    // One event stream per gateway node, shared by every "events in" node that uses it.
    const listeners = new Set();
    let stream = null;
    let state = 'disconnected';
    let detail;
    this.subscribe = (listener) => {
      listeners.add(listener);
      if (!stream && this.client) {
        stream = this.client.follow({
          onEvent: (e) => {
            for (const l of listeners) l.event(e);
          },
          onState: (s, d) => {
            state = s;
            detail = d;
            for (const l of listeners) l.state(s, d);
          },
          // A revoked token: every node on this stream reports it where Catch nodes see it.
          onRefused: (err) => {
            for (const l of listeners) l.refused?.(err);
            if (err.status === 401) this.refused(401);
          },
        });
      } else {
        listener.state(state, detail);
      }
      return () => {
        listeners.delete(listener);
        if (listeners.size === 0 && stream) {
          stream.close();
          stream = null;
          state = 'disconnected';
        }
      };
    };
    this.on('close', () => {
      stream?.close();
      stream = null;
      listeners.clear();
    });
  }
  RED.nodes.registerType('portcullis-gateway', PortcullisGateway, {
    credentials: { token: { type: 'password' } },
  });
};
