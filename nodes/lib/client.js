// @ts-check
'use strict';

/**
 * The control API client the nodes share: HTTP over the gateway's Unix socket with the flow's bearer token.
 * Plain Node (no dependencies): the Node-RED process holds nothing of the gateway's but this token.
 */
const { request } = require('node:http');

/** A refusal or failure of the control API, with the gateway's stable code. */
class ControlError extends Error {
  /**
   * @param {number} status
   * @param {string} code
   * @param {string} message
   */
  constructor(status, code, message) {
    super(message);
    this.name = 'ControlError';
    this.status = status;
    this.code = code;
  }
}

/**
 * @typedef {{ socketPath: string; token: string; timeoutMs?: number }} ClientOptions
 * @typedef {Record<string, unknown>} Json
 */

class ControlClient {
  /** @param {ClientOptions} opts */
  constructor(opts) {
    if (!opts.socketPath) throw new ControlError(0, 'ERR_NODE_CONFIG', 'no control socket path configured');
    if (!opts.token) throw new ControlError(0, 'ERR_NODE_CONFIG', 'no control token configured');
    this.opts = opts;
  }

  /**
   * @param {'GET' | 'POST'} method
   * @param {string} path
   * @param {unknown} [body]
   * @returns {Promise<Json>}
   */
  call(method, path, body) {
    return new Promise((resolve, reject) => {
      const req = request(
        {
          socketPath: this.opts.socketPath,
          method,
          path,
          headers: {
            authorization: `Bearer ${this.opts.token}`,
            ...(body === undefined ? {} : { 'content-type': 'application/json' }),
          },
          timeout: this.opts.timeoutMs ?? 5000,
        },
        (res) => {
          /** @type {Buffer[]} */
          const chunks = [];
          res.on('data', (d) => chunks.push(d));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            /** @type {Json} */
            let data = {};
            try {
              data = text ? JSON.parse(text) : {};
            } catch {
              data = {};
            }
            const status = res.statusCode ?? 0;
            if (status >= 200 && status < 300) return resolve(data);
            const e = /** @type {{ code?: string; message?: string } | undefined} */ (data.error);
            reject(new ControlError(status, e?.code ?? 'ERR_CONTROL', e?.message ?? `HTTP ${status}`));
          });
        },
      );
      req.on('timeout', () =>
        req.destroy(new ControlError(0, 'ERR_NODE_TIMEOUT', 'the gateway did not answer')),
      );
      req.on('error', (err) =>
        reject(
          err instanceof ControlError
            ? err
            : new ControlError(0, 'ERR_NODE_CONNECT', `cannot reach the gateway: ${err.message}`),
        ),
      );
      req.end(body === undefined ? undefined : JSON.stringify(body));
    });
  }

  /**
   * Follows an NDJSON stream (the event stream, or the policy questions), reconnecting with back-off until
   * `close()`; tells `onState` how it stands. A refusal (401 revoked or unknown token, 403 missing scope) stays
   * 'refused' with the status as detail until a later attempt is let in, and is told once to `onRefused` (the
   * nodes make it an error Catch nodes see).
   * @param {{ onEvent: (e: Json) => void; onState: (s: 'connecting' | 'connected' | 'refused' | 'disconnected', detail?: string) => void; onRefused?: (err: ControlError) => void }} handlers
   * @param {string} [path]
   * @returns {{ close(): void }}
   */
  follow(handlers, path = '/v1/events') {
    let closed = false;
    let delay = 500;
    /** Set while the last answer was a refusal: the close that follows must not turn it into 'disconnected'. */
    let refused = false;
    /** @type {import('node:http').ClientRequest | undefined} */
    let current;
    /** @type {NodeJS.Timeout | undefined} */
    let timer;
    const connect = () => {
      if (closed) return;
      if (!refused) handlers.onState('connecting');
      current = request(
        {
          socketPath: this.opts.socketPath,
          method: 'GET',
          path,
          headers: { authorization: `Bearer ${this.opts.token}` },
        },
        (res) => {
          if (res.statusCode !== 200) {
            // A refused token does not get better by retrying fast.
            const status = res.statusCode ?? 0;
            if (!refused) {
              refused = true;
              handlers.onState('refused', String(status));
              handlers.onRefused?.(
                new ControlError(
                  status,
                  status === 403 ? 'ERR_CONTROL_SCOPE' : 'ERR_CONTROL_TOKEN',
                  status === 403
                    ? `the gateway refused the token for ${path} (${status}: missing scope)`
                    : `the gateway refused the token (${status}: revoked or unknown)`,
                ),
              );
            }
            res.resume();
            delay = 30_000;
            return;
          }
          refused = false;
          delay = 500;
          handlers.onState('connected');
          let buf = '';
          res.setEncoding('utf8');
          res.on('data', (chunk) => {
            buf += chunk;
            let nl = buf.indexOf('\n');
            while (nl >= 0) {
              const line = buf.slice(0, nl);
              buf = buf.slice(nl + 1);
              nl = buf.indexOf('\n');
              if (!line) continue;
              try {
                const e = JSON.parse(line);
                if (e && typeof e === 'object' && e.type !== 'stream.open') handlers.onEvent(e);
              } catch {
                // a malformed line is skipped; the stream goes on
              }
            }
          });
        },
      );
      current.on('error', () => undefined);
      current.on('close', () => {
        if (closed) return;
        if (!refused) handlers.onState('disconnected');
        timer = setTimeout(connect, delay);
        delay = Math.min(delay * 2, 30_000);
      });
      current.end();
    };
    connect();
    return {
      close() {
        closed = true;
        if (timer) clearTimeout(timer);
        current?.destroy();
      },
    };
  }
}

module.exports = { ControlClient, ControlError };
