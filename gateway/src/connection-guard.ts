import { readFileSync } from 'node:fs';
import type { Server as HttpServer } from 'node:http';
import type { Socket } from 'node:net';
import ipaddr from 'ipaddr.js';
import type { Logger } from './log.ts';
import { LogThrottle } from './log-throttle.ts';

/**
 * Connection limits of an HTTP(S) listener that unauthenticated peers reach (the technician UI). Without them
 * one host holding 20,000 idle TCP connections used up the process's file descriptors, and with them the UI,
 * /healthz, the control socket and the database (issue 19, item 8).
 */
export interface ConnectionLimits {
  /** Open connections from one client (an IPv4 address, an IPv6 /64); more are closed as they arrive. */
  perClient: number;
  /** Open connections in all; more are closed as they arrive. Bounded by the process's descriptor limit. */
  total: number;
  /**
   * Whole request head (line and headers) within this, counted from the connection (Node closes a connection
   * that sends nothing at all by it too, with 408); the TLS handshake gets as long again. At most 10 s.
   */
  headersTimeoutMs: number;
  /** The whole request, body included. */
  requestTimeoutMs: number;
  /** An idle keep-alive connection is closed after this… */
  keepAliveMs: number;
  /** …or this, once more than half of `total` is open (and idle ones are then closed at once). */
  pressureKeepAliveMs: number;
}

/** Browsers open up to 6 connections per host, plus the live-update stream; a few technicians may share a NAT. */
export const DEFAULT_PER_CLIENT = 32;
const DEFAULT_TOTAL = 4096;

/** The soft RLIMIT_NOFILE of this process, from /proc (Node has no getrlimit); undefined if unknown. */
export function descriptorLimit(limitsFile = '/proc/self/limits'): number | undefined {
  try {
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync(limitsFile, 'utf8'));
    return m?.[1] && m[1] !== 'unlimited' ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

export function defaultLimits(fdLimit = descriptorLimit()): ConnectionLimits {
  // At most a quarter of the descriptors go to this listener: the rest stay for the database, the DTLS socket,
  // the control socket, the uplink, child processes.
  const total = Math.max(64, Math.min(DEFAULT_TOTAL, Math.floor((fdLimit ?? 4 * DEFAULT_TOTAL) / 4)));
  return {
    perClient: DEFAULT_PER_CLIENT,
    total,
    headersTimeoutMs: 10_000,
    requestTimeoutMs: 30_000,
    keepAliveMs: 5_000,
    pressureKeepAliveMs: 1_000,
  };
}

/** What a client is, for the per-client cap: an IPv4 address, or an IPv6 /64 (one host usually holds a whole /64). */
export function clientKey(remoteAddress: string | undefined): string {
  if (!remoteAddress) return 'unknown';
  try {
    const a = ipaddr.process(remoteAddress); // ::ffff:10.0.0.1 becomes 10.0.0.1
    if (a.kind() === 'ipv4') return a.toString();
    return `${(a as ipaddr.IPv6).parts
      .slice(0, 4)
      .map((p) => p.toString(16))
      .join(':')}::/64`;
  } catch {
    return remoteAddress;
  }
}

/** The options Node's HTTP(S) server takes at creation for these limits. */
export function serverTimeouts(limits: ConnectionLimits) {
  return {
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
    keepAliveTimeout: limits.keepAliveMs,
    // Node checks the header and request deadlines on this interval (default 30 s, which would triple them).
    connectionsCheckingInterval: 1_000,
    // TLS servers: a peer that connects and never finishes the handshake.
    handshakeTimeout: limits.headersTimeoutMs,
  };
}

export interface GuardStats {
  open: number;
  /** Connections closed on arrival because their client (or the listener) was at its cap. */
  refused: number;
  clients: number;
}

/**
 * Puts the limits on a created (not necessarily listening) server: the per-client and total caps are checked
 * before anything else sees a connection — a refused socket is never wrapped in TLS or given a parser — and
 * idle keep-alive connections go early under pressure.
 */
export function guardConnections(
  server: HttpServer,
  limits: ConnectionLimits,
  opts: { logger?: Logger; name?: string; now?: () => number } = {},
): { stats(): GuardStats } {
  const now = opts.now ?? Date.now;
  const perClient = new Map<string, number>();
  const throttle = new LogThrottle(60_000, now);
  let open = 0;
  let refused = 0;
  let lastSweep = 0;
  const underPressure = () => open > limits.total / 2;

  const refuse = (socket: Socket, key: string, why: 'client' | 'total') => {
    refused++;
    socket.destroy();
    const suppressed = throttle.admit(`${why}:${why === 'client' ? key : ''}`);
    if (suppressed !== null) {
      opts.logger?.warn(
        { listener: opts.name ?? 'http', client: key, cap: why, open, refused, suppressed },
        why === 'client'
          ? 'connection refused: this client holds its maximum of connections'
          : 'connection refused: the listener holds its maximum of connections',
      );
    }
  };

  // Ours runs first and decides; only admitted sockets reach the server's own listeners (TLS, HTTP parser).
  const inner = server.listeners('connection') as ((socket: Socket) => void)[];
  server.removeAllListeners('connection');
  server.on('connection', (socket: Socket) => {
    const key = clientKey(socket.remoteAddress);
    const n = perClient.get(key) ?? 0;
    if (n >= limits.perClient) return refuse(socket, key, 'client');
    if (open >= limits.total) return refuse(socket, key, 'total');
    perClient.set(key, n + 1);
    open++;
    socket.once('close', () => {
      open--;
      const left = (perClient.get(key) ?? 1) - 1;
      if (left <= 0) perClient.delete(key);
      else perClient.set(key, left);
      if (!underPressure()) server.keepAliveTimeout = limits.keepAliveMs;
    });
    if (underPressure()) {
      // Node reads keepAliveTimeout each time a response ends, so this shortens every keep-alive from now on.
      server.keepAliveTimeout = limits.pressureKeepAliveMs;
      const t = now();
      if (t - lastSweep >= 1_000) {
        lastSweep = t;
        server.closeIdleConnections();
      }
    }
    for (const l of inner) l.call(server, socket);
  });
  return { stats: () => ({ open, refused, clients: perClient.size }) };
}
