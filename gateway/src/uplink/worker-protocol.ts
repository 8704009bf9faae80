/**
 * The messages between the gateway and broker-worker.ts over the IPC channel. On their own, so that
 * connection.ts (which forks the worker) and the worker (which uses connection.ts) do not import each other.
 */
export type ToWorker =
  | {
      type: 'connect';
      params: {
        url: string;
        clientId: string;
        ca: string;
        cert: string;
        /** The payload base64 (Sparkplug's NDEATH is binary). */
        will?: { topic: string; payload: string; retain: boolean };
      };
      keyPem: string;
    }
  | {
      type: 'publish';
      id: number;
      topic: string;
      payload: string;
      userProperties: Record<string, string>;
      retain: boolean;
    }
  | { type: 'subscribe'; topic: string }
  | { type: 'end'; graceMs: number };

export type FromWorker =
  | { type: 'connect' }
  | { type: 'close' }
  | { type: 'error'; message: string }
  | { type: 'ack'; id: number; err: string | null }
  | { type: 'message'; topic: string; payload: string; userProperties: Record<string, string> }
  | { type: 'ended' };

/**
 * The same connection in a worker thread of the gateway (broker-thread.ts, issue 23): each side posts an array of
 * these per turn of its event loop, so a burst of publishes or acknowledgements costs one message, and buffers
 * cross as bytes (structured clone), not base64.
 */
export type ToThread =
  | {
      type: 'connect';
      params: {
        url: string;
        clientId: string;
        ca: Uint8Array;
        cert: Uint8Array;
        will?: { topic: string; payload: Uint8Array; retain: boolean };
      };
      keyPem: string;
    }
  | {
      type: 'publish';
      id: number;
      topic: string;
      payload: Uint8Array;
      userProperties: Record<string, string>;
      retain: boolean;
    }
  | { type: 'subscribe'; topic: string }
  | { type: 'end'; graceMs: number };

export type FromThread =
  | { type: 'connect' }
  | { type: 'close' }
  | { type: 'error'; message: string }
  | { type: 'ack'; id: number; err: string | null }
  | { type: 'message'; topic: string; payload: Uint8Array; userProperties: Record<string, string> }
  | { type: 'ended' };
