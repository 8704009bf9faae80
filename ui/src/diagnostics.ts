import { promises as dns } from 'node:dns';
import { readFileSync } from 'node:fs';
import { isIP, Socket } from 'node:net';
import { type PeerCertificate, connect as tlsConnect } from 'node:tls';
import { z } from 'zod';
import type { Core } from '../../gateway/src/core.ts';

/**
 * Network checks a technician runs from the gateway itself (admin only, every run audited): a DNS lookup, a
 * TCP reach test (a connect with its time: the gateway runs unprivileged, so no ICMP ping), and a TLS handshake
 * to the uplink's broker checked against the configured CA. Arguments are validated before anything is sent;
 * nothing is run through a shell.
 */

const LABEL = '[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?';
/** A DNS name (RFC 1123 labels) or an IP address; nothing that could read as an option or a path. */
export const hostSchema = z
  .string()
  .trim()
  .max(253)
  .refine((h) => isIP(h) !== 0 || new RegExp(`^${LABEL}(?:\\.${LABEL})*\\.?$`).test(h), {
    error: 'must be a host name (letters, digits, "-" and ".") or an IP address',
  });
export const portSchema = z.coerce.number().int().min(1).max(65_535);

const TIMEOUT_MS = 5000;

function withTimeout<T>(p: Promise<T>, what: string): Promise<T> {
  return Promise.race([
    p,
    new Promise<T>((_, reject) =>
      setTimeout(
        () => reject(new Error(`${what}: no answer within ${TIMEOUT_MS / 1000} s`)),
        TIMEOUT_MS,
      ).unref(),
    ),
  ]);
}

export interface DnsResult {
  name: string;
  ms: number;
  addresses: string[];
  error?: string;
}

export async function dnsLookup(name: string): Promise<DnsResult> {
  const t0 = performance.now();
  try {
    const r = await withTimeout(dns.lookup(name, { all: true }), 'lookup');
    return { name, ms: Math.round(performance.now() - t0), addresses: r.map((a) => a.address) };
  } catch (err) {
    return { name, ms: Math.round(performance.now() - t0), addresses: [], error: (err as Error).message };
  }
}

export interface ReachResult {
  host: string;
  port: number;
  ok: boolean;
  ms: number;
  remote?: string;
  error?: string;
}

export function tcpReach(host: string, port: number): Promise<ReachResult> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    const s = new Socket();
    const done = (r: Omit<ReachResult, 'host' | 'port' | 'ms'>) => {
      s.destroy();
      resolve({ host, port, ms: Math.round(performance.now() - t0), ...r });
    };
    s.setTimeout(TIMEOUT_MS, () => done({ ok: false, error: `no answer within ${TIMEOUT_MS / 1000} s` }));
    s.once('error', (err) => done({ ok: false, error: err.message }));
    s.connect(port, host, () => done({ ok: true, remote: `${s.remoteAddress}:${s.remotePort}` }));
  });
}

export interface CertView {
  subject: string;
  issuer: string;
  validFrom: string;
  validTo: string;
}

export interface UplinkTlsResult {
  configured: boolean;
  url?: string;
  ok?: boolean;
  ms?: number;
  protocol?: string | null;
  cipher?: string;
  /** The chain verified against `uplink.caFile`; else why not. */
  trusted?: boolean;
  trustError?: string;
  chain?: CertView[];
  /** The local clock against the broker certificate's validity window (a clock far off fails TLS). */
  clock?: string;
  error?: string;
}

const name = (n: Record<string, string | string[]> | undefined) =>
  n
    ? Object.entries(n)
        .map(([k, v]) => `${k}=${Array.isArray(v) ? v.join('+') : v}`)
        .join(', ')
    : '';

function chainOf(leaf: PeerCertificate & { issuerCertificate?: PeerCertificate }): CertView[] {
  const out: CertView[] = [];
  let c: (PeerCertificate & { issuerCertificate?: PeerCertificate }) | undefined = leaf;
  while (c && out.length < 5) {
    out.push({
      subject: name(c.subject as unknown as Record<string, string>),
      issuer: name(c.issuer as unknown as Record<string, string>),
      validFrom: new Date(c.valid_from).toISOString(),
      validTo: new Date(c.valid_to).toISOString(),
    });
    if (!c.issuerCertificate || c.issuerCertificate === c) break;
    c = c.issuerCertificate as typeof c;
  }
  return out;
}

/**
 * A TLS handshake to the broker with the configured CA (no client key: that stays in the keystore, the TPM on
 * the appliance): is the broker reachable, which protocol and suite, is its chain trusted, and is the local
 * clock inside its certificate's validity.
 */
export function uplinkTls(core: Core): Promise<UplinkTlsResult> {
  const up = core.config.uplink;
  if (!up) return Promise.resolve({ configured: false });
  const u = new URL(up.url);
  const host = u.hostname.replace(/^\[|\]$/g, '');
  const port = Number(u.port || 8883);
  const t0 = performance.now();
  return new Promise((resolve) => {
    let settled = false;
    const finish = (r: Omit<UplinkTlsResult, 'configured' | 'url' | 'ms'>) => {
      if (settled) return;
      settled = true;
      resolve({ configured: true, url: up.url, ms: Math.round(performance.now() - t0), ...r });
    };
    let ca: Buffer;
    try {
      ca = readFileSync(up.caFile);
    } catch (err) {
      finish({ ok: false, error: `uplink.caFile cannot be read: ${(err as Error).message}` });
      return;
    }
    const s = tlsConnect({
      host,
      port,
      ca,
      servername: isIP(host) ? undefined : host,
      // Checked below and reported, rather than a bare failure: the technician needs the reason.
      rejectUnauthorized: false,
      timeout: TIMEOUT_MS,
    });
    s.once('secureConnect', () => {
      const leaf = s.getPeerCertificate(true);
      const chain = leaf && Object.keys(leaf).length > 0 ? chainOf(leaf) : [];
      const now = core.clock.now();
      const first = chain[0];
      const clock = !first
        ? 'no certificate to compare with'
        : now < Date.parse(first.validFrom)
          ? `the local clock is before the broker certificate's start (${first.validFrom}): it is probably behind`
          : now > Date.parse(first.validTo)
            ? `the local clock is after the broker certificate's end (${first.validTo}): it is ahead, or the certificate expired`
            : 'inside the broker certificate’s validity';
      finish({
        ok: s.authorized,
        protocol: s.getProtocol(),
        cipher: s.getCipher()?.name,
        trusted: s.authorized,
        ...(s.authorized ? {} : { trustError: String(s.authorizationError) }),
        chain,
        clock,
      });
      s.end();
    });
    s.once('timeout', () => {
      finish({ ok: false, error: `no TLS answer within ${TIMEOUT_MS / 1000} s` });
      s.destroy();
    });
    s.once('error', (err) => finish({ ok: false, error: err.message }));
  });
}
