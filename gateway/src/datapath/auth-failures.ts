import type { AnomalyService } from '../anomaly/index.ts';
import { AuditAggregator } from '../audit/aggregate.ts';
import type { Core } from '../core.ts';
import type { HandshakeFailure } from '../dtls/index.ts';
import type { Logger } from '../log.ts';

/**
 * Which failed handshakes are failed authentications, and what they are called in the audit log. The rest
 * (timeouts, malformed or unsupported hellos, capacity refusals, alerts from the peer) are not credential
 * attempts: they are logged, throttled, by the sensor listener only.
 */
const REASONS: Record<string, string> = {
  // Wrong key: the client's Finished does not decrypt (or decrypts and does not verify) under our key.
  ERR_DTLS_BAD_RECORD_MAC: 'wrong-key',
  ERR_DTLS_BAD_FINISHED: 'wrong-key',
  // Unknown, revoked (decommissioned) or not-yet-active PSK identity: RFC 4279 makes it look like a wrong key
  // to the peer; the server knows which it was.
  ERR_DTLS_UNKNOWN_PSK_IDENTITY: 'unknown-identity',
  ERR_DTLS_CERT_UNTRUSTED: 'untrusted-certificate',
  ERR_DTLS_CERT_EXPIRED: 'untrusted-certificate',
  ERR_DTLS_CERT_PARSE: 'untrusted-certificate',
  ERR_DTLS_CERT_KEY: 'untrusted-certificate',
  ERR_DTLS_CERT_CHAIN: 'untrusted-certificate',
  ERR_DTLS_NO_CERTIFICATE: 'untrusted-certificate',
  ERR_DTLS_RPK_PARSE: 'untrusted-certificate',
  ERR_DTLS_RPK_KEY: 'untrusted-certificate',
  ERR_DTLS_BAD_CERTIFICATE_VERIFY: 'untrusted-certificate',
  // A valid chain or key whose device may not connect: pending approval, decommissioned, isolated, unknown key.
  ERR_DTLS_PEER_REJECTED: 'refused',
};

/** Entries per minute at most: distinct (source, identity) pairs, and identities per source beyond which the
 * source's further identities count together as `*` (one source spraying random identities is one entry). */
const MAX_KEYS = 1000;
const MAX_IDENTITIES_PER_SOURCE = 8;
const WINDOW_MS = 60_000;

/**
 * How an identity is written: a PSK identity is sent in the clear, so it is no secret, but it is the peer's
 * choice — printable ASCII up to 64 characters as it is, anything else as hex (at most 32 bytes of it).
 */
export function identityLabel(
  f: HandshakeFailure,
): { label: string; kind: string; lookup: string } | undefined {
  if (f.claimedPskIdentity) {
    const id = f.claimedPskIdentity;
    const printable = id.length <= 64 && id.every((b) => b >= 0x20 && b <= 0x7e);
    const text = id.toString(printable ? 'latin1' : 'hex');
    return {
      label: printable ? text : `hex:${id.subarray(0, 32).toString('hex')}${id.length > 32 ? '…' : ''}`,
      kind: 'psk',
      lookup: printable ? text : '',
    };
  }
  if (f.claimedCertificate) {
    const { kind, fingerprint } = f.claimedCertificate;
    return {
      label: `${kind === 'x509' ? 'certificate' : 'raw-key'}:sha256:${fingerprint}`,
      kind,
      lookup: fingerprint,
    };
  }
  return undefined;
}

export interface HandshakeFailureRecorder {
  record(f: HandshakeFailure): void;
  close(): void;
}

/**
 * Failed sensor authentications into the audit log — one `sensor.auth.failed` entry per source address and
 * claimed identity per minute, with the count and why — and into behaviour monitoring, where a brute force
 * raises an alert. Never the key or anything derived from it: the server never learns a wrong key anyway.
 */
export function handshakeFailureRecorder(
  core: Core,
  logger: Pick<Logger, 'error'>,
  anomaly?: AnomalyService,
): HandshakeFailureRecorder {
  const audit = new AuditAggregator((e) => core.audit.append(e), core.clock, {
    windowMs: WINDOW_MS,
    maxKeys: MAX_KEYS,
    maxTallyValues: 8,
    onError: (err) =>
      logger.error({ err: (err as Error).message }, 'auditing failed sensor authentications failed'),
  });
  /** Identities seen per source in its current window (bounded with the audit keys). */
  const perSource = new Map<string, { start: number; ids: Set<string> }>();
  return {
    record(f) {
      const reason = REASONS[f.code];
      if (!reason) return;
      try {
        const now = core.clock.now();
        const source = f.peer.address;
        const claimed = identityLabel(f);
        let identity = claimed?.label ?? '-';
        let s = perSource.get(source);
        if (s && now - s.start >= WINDOW_MS) s = undefined;
        if (!s) {
          if (perSource.size >= MAX_KEYS) {
            for (const [k, v] of perSource) if (now - v.start >= WINDOW_MS) perSource.delete(k);
          }
          s = { start: now, ids: new Set() };
          if (perSource.size < MAX_KEYS) perSource.set(source, s);
        }
        if (!s.ids.has(identity)) {
          if (s.ids.size >= MAX_IDENTITIES_PER_SOURCE) identity = '*';
          else s.ids.add(identity);
        }
        const device = claimed?.lookup
          ? core.identity.claimedBy(claimed.kind as 'psk' | 'x509' | 'rpk', claimed.lookup)
          : undefined;
        audit.record(
          {
            action: 'sensor.auth.failed',
            actor: 'dtls',
            target: device?.id ?? null,
            fixed: { source, identity },
          },
          { reason, code: f.code, deviceState: device?.state },
          {
            action: 'sensor.auth.failed',
            actor: 'dtls',
            target: null,
            fixed: { source: 'other', identity: '*' },
          },
        );
        anomaly?.observeAuthFailure({
          ts: now,
          source,
          identity: claimed?.label,
          // Only a device that may still authenticate has a baseline worth scoring against.
          deviceId: device && device.state !== 'decommissioned' ? device.id : undefined,
        });
      } catch (err) {
        logger.error({ err: (err as Error).message }, 'recording a failed sensor authentication failed');
      }
    },
    close() {
      audit.close();
    },
  };
}
