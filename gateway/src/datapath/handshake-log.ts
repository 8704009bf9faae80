import type { HandshakeFailure, PeerAddress, PeerCredential } from '../dtls/index.ts';
import { identityLabel } from './auth-failures.ts';

/**
 * The sensors' recent DTLS handshakes, for the technician ("why does this sensor not connect?"): per source
 * address and credential, the last outcome, its suite or its failure and why, how often and since when. Kept in
 * memory only, bounded, and without anything secret: a PSK identity (sent in the clear, so no secret, but the
 * peer's choice) is written as `identityLabel` writes it, a certificate or raw key by its SHA-256 fingerprint —
 * the server never learns a wrong key, and no key or secret reaches this module.
 *
 * Repeats fold into one record (count, first and last time), so a sensor retrying a wrong key every second is
 * one line, not the whole log. Successes and failures have their own budgets: a flood of failed or spoofed
 * hellos from many addresses can push out older failures, never the record of a sensor that connected.
 */

export type HandshakeOutcome = 'connected' | 'failed';

export interface HandshakeRecord {
  outcome: HandshakeOutcome;
  address: string;
  /** The source port of the latest attempt (a sensor's port changes when it restarts). */
  port: number;
  /** The credential it used or claimed: `psk:<identity>`, `certificate:sha256:…`, `raw-key:sha256:…`. */
  credential: string | null;
  /** The device that credential belongs to (any state), when known. */
  deviceId: string | null;
  /** Connected: the suite, and whether the session was resumed. */
  suite?: string;
  resumed?: boolean;
  /** Failed: the stable code, what it means for the technician, the alert and who sent it. */
  code?: string;
  reason?: string;
  alert?: number;
  fromPeer?: boolean;
  count: number;
  first: string;
  last: string;
}

/** What a failure code means, and what to check: the words a technician needs, not the protocol's. */
const REASONS: Record<string, string> = {
  ERR_DTLS_UNKNOWN_PSK_IDENTITY:
    'unknown PSK identity: no active device has it (typo, not added yet, or decommissioned)',
  ERR_DTLS_BAD_RECORD_MAC:
    'wrong key: the client’s Finished did not decrypt (bad_record_mac) — the sensor’s PSK differs from the one stored',
  ERR_DTLS_BAD_FINISHED:
    'wrong key: the client’s Finished did not match the handshake — the sensor’s PSK differs from the one stored',
  ERR_DTLS_NO_SHARED_SUITE:
    'no shared cipher suite: the sensor offers none the gateway allows (dtls.cipherSuites)',
  ERR_DTLS_BAD_COOKIE:
    'cookie refused: the hello’s cookie was not made for this address (the address changed mid-handshake, a stale cookie, or a spoofed source)',
  ERR_DTLS_CERT_UNTRUSTED: 'certificate refused: not issued by a trusted manufacturer CA (trust anchors)',
  ERR_DTLS_CERT_EXPIRED:
    'certificate refused: expired or not yet valid (check the sensor’s and the gateway’s clock)',
  ERR_DTLS_CERT_REVOKED: 'certificate refused: revoked by its CA',
  ERR_DTLS_CERT_REVOCATION_UNKNOWN: 'certificate refused: its CA’s revocation list is out of date',
  ERR_DTLS_CERT_CHAIN: 'certificate refused: the chain does not verify',
  ERR_DTLS_CERT_PARSE: 'certificate refused: it could not be read',
  ERR_DTLS_CERT_KEY: 'certificate refused: its key type is not supported (P-256 only)',
  ERR_DTLS_CERT_USAGE: 'certificate refused: not made for a TLS client',
  ERR_DTLS_NO_CERTIFICATE: 'certificate refused: the sensor sent none',
  ERR_DTLS_BAD_CERTIFICATE_VERIFY: 'certificate refused: the sensor could not prove it holds the key',
  ERR_DTLS_RPK_PARSE: 'raw public key refused: it could not be read',
  ERR_DTLS_RPK_KEY: 'raw public key refused: its type is not supported (P-256 only)',
  ERR_DTLS_PEER_REJECTED:
    'credential valid but the device may not connect: pending approval, quarantined (isolate), decommissioned or unknown key',
  ERR_DTLS_PEER_ALERT: 'the sensor ended the handshake with an alert (it refused the gateway)',
  ERR_DTLS_HANDSHAKE_TIMEOUT: 'the handshake stopped half way: the sensor’s next flight never came',
  ERR_DTLS_PROTOCOL_VERSION: 'the sensor does not offer DTLS 1.2',
  ERR_DTLS_EMS_REQUIRED: 'the sensor does not offer extended master secret, which the gateway requires',
  ERR_DTLS_SESSION_LIMIT: 'refused for capacity: this credential or address holds the most sessions allowed',
};

export function describeHandshakeCode(code: string): string {
  return REASONS[code] ?? `handshake failed (${code})`;
}

/** Alert numbers by name, for the few a technician meets (RFC 5246 §7.2). */
const ALERTS: Record<number, string> = {
  10: 'unexpected_message',
  20: 'bad_record_mac',
  40: 'handshake_failure',
  42: 'bad_certificate',
  43: 'unsupported_certificate',
  44: 'certificate_revoked',
  45: 'certificate_expired',
  46: 'certificate_unknown',
  47: 'illegal_parameter',
  48: 'unknown_ca',
  49: 'access_denied',
  50: 'decode_error',
  51: 'decrypt_error',
  70: 'protocol_version',
  71: 'insufficient_security',
  80: 'internal_error',
  115: 'unknown_psk_identity',
};

export function alertName(n: number): string {
  return ALERTS[n] ?? `alert ${n}`;
}

function credentialLabel(c: PeerCredential): string {
  if (c.kind === 'psk') {
    return `psk:${identityLabel({ claimedPskIdentity: c.identity } as HandshakeFailure)?.label ?? ''}`;
  }
  return `${c.kind === 'x509' ? 'certificate' : 'raw-key'}:sha256:${c.fingerprint}`;
}

export interface HandshakeLogOptions {
  /** Records kept for sensors that connected (default 1,000). */
  maxConnected?: number;
  /** Records kept for failures (default 1,000). */
  maxFailed?: number;
}

export class HandshakeLog {
  private readonly connected = new Map<string, HandshakeRecord>();
  private readonly failed = new Map<string, HandshakeRecord>();
  private readonly maxConnected: number;
  private readonly maxFailed: number;

  constructor(
    private readonly now: () => number,
    opts: HandshakeLogOptions = {},
  ) {
    this.maxConnected = opts.maxConnected ?? 1000;
    this.maxFailed = opts.maxFailed ?? 1000;
  }

  /** A completed handshake (full or resumed). */
  connectedSession(
    s: { peer: PeerAddress; credential: PeerCredential; cipherSuite: string; resumed?: boolean },
    deviceId: string | null,
  ): void {
    const credential = credentialLabel(s.credential);
    this.put(this.connected, this.maxConnected, `${s.peer.address}|${credential}`, {
      outcome: 'connected',
      address: s.peer.address,
      port: s.peer.port,
      credential,
      deviceId,
      suite: s.cipherSuite,
      resumed: s.resumed === true,
    });
  }

  /** A failed handshake, as the DTLS server reports it. */
  failure(f: HandshakeFailure, deviceId: string | null): void {
    const credential = identityLabel(f)?.label ?? null;
    const label = credential === null ? null : f.claimedPskIdentity ? `psk:${credential}` : credential;
    this.put(this.failed, this.maxFailed, `${f.peer.address}|${label ?? ''}|${f.code}`, {
      outcome: 'failed',
      address: f.peer.address,
      port: f.peer.port,
      credential: label,
      deviceId,
      code: f.code,
      reason: describeHandshakeCode(f.code),
      alert: f.alert,
      fromPeer: f.fromPeer,
    });
  }

  /** A hello whose cookie did not verify (the server answered with a fresh HelloVerifyRequest). */
  cookieRefused(peer: PeerAddress): void {
    this.failure(
      { peer, code: 'ERR_DTLS_BAD_COOKIE', message: 'cookie refused', alert: 0, fromPeer: false },
      null,
    );
  }

  private put(
    map: Map<string, HandshakeRecord>,
    max: number,
    key: string,
    r: Omit<HandshakeRecord, 'count' | 'first' | 'last'>,
  ): void {
    const at = new Date(this.now()).toISOString();
    const old = map.get(key);
    // Re-inserted at the end: a Map keeps insertion order, so the first key is the least recently seen.
    map.delete(key);
    map.set(key, {
      ...r,
      deviceId: r.deviceId ?? old?.deviceId ?? null,
      count: (old?.count ?? 0) + 1,
      first: old?.first ?? at,
      last: at,
    });
    if (map.size > max) map.delete(map.keys().next().value as string);
  }

  /**
   * The latest records, newest first, optionally only those of a device (its credential's records, and those
   * from its last known address) or of one source address.
   */
  recent(filter: { deviceId?: string; address?: string | null; limit?: number } = {}): HandshakeRecord[] {
    const out: HandshakeRecord[] = [];
    for (const map of [this.connected, this.failed]) {
      for (const r of map.values()) {
        if (filter.deviceId !== undefined) {
          const mine = r.deviceId === filter.deviceId || (filter.address && r.address === filter.address);
          if (!mine) continue;
        } else if (filter.address && r.address !== filter.address) continue;
        out.push(r);
      }
    }
    out.sort((a, b) => (a.last < b.last ? 1 : a.last > b.last ? -1 : 0));
    return out.slice(0, filter.limit ?? 50);
  }

  get size(): number {
    return this.connected.size + this.failed.size;
  }
}
