/**
 * Polls pull-mode sensors (CoAP servers) as their DTLS client, with node-dtls-client, in its own process:
 * node-dtls-client throws from inside its socket handlers on input it does not expect, which would take a whole
 * process down. Here that costs one restart of this worker, never the gateway. It gets its sources (with their
 * PSKs) over IPC, never touches the database, and sends back what each sensor answered.
 */
import { createRequire } from 'node:module';
import { generate, parse } from 'coap-packet';

export interface PollSource {
  deviceId: string;
  host: string;
  port: number;
  path: string[];
  intervalSeconds: number;
  identity: string;
  /** The PSK bytes as latin1 text: node-dtls-client encodes its key strings byte for byte that way. */
  keyLatin1: string;
}

export type ToPoller = { type: 'sources'; sources: PollSource[] };
export type FromPoller =
  | { type: 'reading'; deviceId: string; payload: string; contentFormat: number | null }
  | { type: 'poll-failed'; deviceId: string; reason: string };

interface NodeDtlsSocket {
  on(event: 'connected' | 'close', cb: () => void): NodeDtlsSocket;
  on(event: 'message', cb: (m: Buffer) => void): NodeDtlsSocket;
  on(event: 'error', cb: (e: Error) => void): NodeDtlsSocket;
  send(data: Buffer): void;
  close(): void;
}

const require = createRequire(import.meta.url);
// node-dtls-client 1.1.1 has no entry for ServerKeyExchange (type 12) in its message table and throws when a
// PSK server sends an identity hint, as libcoap does by default. Its own class parses the message; register it.
const handshake = require('node-dtls-client/build/DTLS/Handshake.js') as {
  HandshakeMessages: Record<number, unknown>;
  HandshakeType: { server_key_exchange: number };
  ServerKeyExchange: unknown;
};
handshake.HandshakeMessages[handshake.HandshakeType.server_key_exchange] ??= handshake.ServerKeyExchange;
const { dtls } = require('node-dtls-client') as {
  dtls: { createSocket(o: Record<string, unknown>): NodeDtlsSocket };
};

const send = (m: FromPoller) => process.send?.(m);
const timers = new Map<string, NodeJS.Timeout>();
const busy = new Set<string>();
let messageId = Math.floor(Math.random() * 0x10000);

function pollOnce(s: PollSource): void {
  if (busy.has(s.deviceId)) return;
  busy.add(s.deviceId);
  let done = false;
  const finish = (m: FromPoller | null) => {
    if (done) return;
    done = true;
    busy.delete(s.deviceId);
    clearTimeout(timeout);
    if (m) send(m);
    try {
      socket.close();
    } catch {
      // already closed
    }
  };
  const socket = dtls.createSocket({
    type: s.host.includes(':') ? 'udp6' : 'udp4',
    address: s.host,
    port: s.port,
    psk: { [s.identity]: s.keyLatin1 },
    timeout: 10_000,
    ciphers: ['TLS_PSK_WITH_AES_128_CCM_8', 'TLS_PSK_WITH_AES_128_GCM_SHA256'],
  });
  const timeout = setTimeout(
    () => finish({ type: 'poll-failed', deviceId: s.deviceId, reason: 'timeout' }),
    15_000,
  );
  socket
    .on('connected', () => {
      messageId = (messageId + 1) & 0xffff;
      socket.send(
        generate({
          code: 'GET',
          messageId,
          token: Buffer.from([messageId >> 8, messageId & 0xff]),
          confirmable: true,
          options: s.path.map((p) => ({ name: 'Uri-Path', value: Buffer.from(p) })),
        }),
      );
    })
    .on('message', (m) => {
      try {
        const res = parse(m);
        if (res.code !== '2.05') {
          finish({ type: 'poll-failed', deviceId: s.deviceId, reason: `sensor answered ${res.code}` });
          return;
        }
        const cf = res.options.find((o) => o.name === 'Content-Format')?.value;
        finish({
          type: 'reading',
          deviceId: s.deviceId,
          payload: res.payload.toString('base64'),
          contentFormat:
            cf === undefined ? null : cf.length === 0 ? 0 : cf.readUIntBE(0, Math.min(cf.length, 2)),
        });
      } catch {
        finish({ type: 'poll-failed', deviceId: s.deviceId, reason: 'malformed CoAP response' });
      }
    })
    .on('error', (e) => finish({ type: 'poll-failed', deviceId: s.deviceId, reason: e.message }));
}

process.on('message', (m: ToPoller) => {
  if (m.type !== 'sources') return;
  for (const t of timers.values()) clearInterval(t);
  timers.clear();
  for (const s of m.sources) {
    pollOnce(s);
    timers.set(
      s.deviceId,
      setInterval(() => pollOnce(s), s.intervalSeconds * 1000),
    );
  }
});
process.on('disconnect', () => process.exit(0));
