/**
 * Certificate revocation lists per trust anchor: a manufacturer CA tells the gateway which device certificates
 * it revoked. A CRL is accepted only when that anchor signed it; the DTLS layer asks the index built here, at
 * every handshake, whether a certificate its anchor issued is revoked; the gateway fetches a newer list from
 * the anchor's distribution URL on a schedule.
 */
import { X509Certificate as NodeCertificate, verify as verifySignature } from 'node:crypto';
import type { AuditLog } from '../audit/index.ts';
import type { Clock } from '../clock.ts';
import { certificatePath, type RevocationStatus } from '../dtls/index.ts';
import { readExtensions } from '../dtls/x509-extensions.ts';
import type { Logger } from '../log.ts';
import { LogThrottle } from '../log-throttle.ts';
import type { Store, TrustAnchor, TrustAnchorCrl } from '../store/index.ts';
import { certificateSubject, type ParsedCrl, parseCrlDer } from './crl-der.ts';
import type { IdentityService } from './devices.ts';
import { IdentityError } from './errors.ts';

/**
 * Error codes of this module (IdentityError): ERR_IDENTITY_CRL_INVALID (not a CRL, or one this code cannot
 * apply: delta, indirect, scoped), ERR_IDENTITY_CRL_SIGNATURE (not issued and signed by that trust anchor),
 * ERR_IDENTITY_CRL_STALE (past its nextUpdate, or issued in the future), ERR_IDENTITY_CRL_ROLLBACK (older than
 * the one held), ERR_IDENTITY_CRL_FETCH (the distribution URL did not give a CRL in time and size).
 */
const CRL_EXTENSIONS_KNOWN = new Set([
  '2.5.29.20', // cRLNumber
  '2.5.29.35', // authorityKeyIdentifier
]);
const ENTRY_EXTENSIONS_KNOWN = new Set([
  '2.5.29.21', // reasonCode (certificateHold counts as revoked: on hold is not valid now)
  '2.5.29.24', // invalidityDate
]);
const CRL_NUMBER = '2.5.29.20';
/** A CRL issued this far in the future says the issuer's clock (or ours) is wrong: refuse it. */
const MAX_FUTURE_SKEW_MS = 5 * 60_000;

export const CRL_FETCH_DEFAULTS = { maxBytes: 8 * 1024 * 1024, timeoutMs: 10_000 } as const;
export const DEFAULT_CRL_REFRESH_SECONDS = 3600;

/** Serial numbers as node:crypto and a CRL's DER give them, compared as lowercase hex without leading zeros. */
export function normalizeSerial(hex: string): string {
  const s = hex.toLowerCase().replace(/^0+/, '');
  return s === '' ? '0' : s;
}

export interface VerifiedCrl {
  der: Buffer;
  thisUpdate: Date;
  nextUpdate: Date | null;
  crlNumber: bigint | null;
  revokedSerials: string[];
}

function crlError(code: string, message: string): IdentityError {
  return new IdentityError(code, message);
}

/** DER INTEGER (the cRLNumber extension's value) as a bigint. */
function derInteger(b: Buffer): bigint {
  if (b.length < 3 || b[0] !== 0x02 || b[1] !== b.length - 2 || b.length > 23 || (b[2] as number) & 0x80) {
    throw crlError('ERR_IDENTITY_CRL_INVALID', 'the CRL number does not parse');
  }
  return BigInt(`0x${b.subarray(2).toString('hex')}`);
}

/** The largest CRL file taken (downloads: CRL_FETCH_DEFAULTS): some 200,000 entries. */
export const MAX_CRL_BYTES = 8 * 1024 * 1024;

/** Signature algorithms a CA signs CRLs with, and the hash node:crypto verifies them with (null: Ed25519). */
const SIGNATURE_HASH = new Map<string, string | null>([
  ['1.2.840.10045.4.3.2', 'sha256'], // ecdsa-with-SHA256
  ['1.2.840.10045.4.3.3', 'sha384'],
  ['1.2.840.10045.4.3.4', 'sha512'],
  ['1.2.840.113549.1.1.11', 'sha256'], // sha256WithRSAEncryption
  ['1.2.840.113549.1.1.12', 'sha384'],
  ['1.2.840.113549.1.1.13', 'sha512'],
  ['1.3.101.112', null], // Ed25519
]);

/** PEM ("X509 CRL" or "CRL") or DER in, the DER and its parse out; anything else is ERR_IDENTITY_CRL_INVALID. */
function parseCrl(bytes: Buffer): { der: Buffer; crl: ParsedCrl } {
  const notCrl = () => crlError('ERR_IDENTITY_CRL_INVALID', 'the file is not an X.509 CRL (PEM or DER)');
  if (bytes.length > MAX_CRL_BYTES) {
    throw crlError('ERR_IDENTITY_CRL_INVALID', `the CRL is larger than ${MAX_CRL_BYTES} bytes`);
  }
  let der = bytes;
  if (bytes.subarray(0, 64).toString('latin1').includes('-----BEGIN')) {
    // RFC 7468 says "X509 CRL"; some tools (@peculiar/x509 among them) write "CRL".
    const m = /-----BEGIN (X509 CRL|CRL)-----([A-Za-z0-9+/=\s]+)-----END \1-----/.exec(
      bytes.toString('latin1'),
    );
    if (!m) throw notCrl();
    der = Buffer.from(m[2] as string, 'base64');
  }
  try {
    return { der, crl: parseCrlDer(der) };
  } catch {
    throw notCrl();
  }
}

/**
 * Verifies that `anchor` issued and signed the CRL in `bytes`, that this code can apply all of it (no unknown
 * critical extension: no delta, indirect or partitioned CRL), and that it is current at `now`.
 */
export async function verifyCrl(bytes: Buffer, anchorPem: string, now: Date): Promise<VerifiedCrl> {
  const { der, crl } = parseCrl(bytes);
  const anchor = new NodeCertificate(anchorPem);
  if (!crl.issuer.equals(certificateSubject(anchor.raw))) {
    throw crlError(
      'ERR_IDENTITY_CRL_SIGNATURE',
      `the CRL was not issued by the trust anchor "${anchor.subject.replaceAll('\n', ', ')}" (another issuer name)`,
    );
  }
  const usage = readExtensions(anchor.raw).keyUsage;
  if (usage && !usage.cRLSign) {
    throw crlError('ERR_IDENTITY_CRL_SIGNATURE', "the trust anchor's key usage does not allow signing CRLs");
  }
  const hash = SIGNATURE_HASH.get(crl.signatureOid);
  if (hash === undefined || !crl.signatureAlgorithm.equals(crl.tbsSignatureAlgorithm)) {
    throw crlError(
      'ERR_IDENTITY_CRL_INVALID',
      `the CRL's signature algorithm (${crl.signatureOid}) is not supported`,
    );
  }
  let signed = false;
  try {
    signed = verifySignature(hash, crl.tbs, anchor.publicKey, crl.signature);
  } catch {
    signed = false;
  }
  if (!signed) {
    throw crlError(
      'ERR_IDENTITY_CRL_SIGNATURE',
      'the CRL signature does not verify with the trust anchor key',
    );
  }
  let crlNumber: bigint | null = null;
  for (const ext of crl.extensions) {
    if (ext.critical && !CRL_EXTENSIONS_KNOWN.has(ext.oid)) {
      throw crlError(
        'ERR_IDENTITY_CRL_INVALID',
        `the CRL has a critical extension this gateway cannot apply (${ext.oid}: delta, indirect or scoped CRLs are not supported)`,
      );
    }
    if (ext.oid === CRL_NUMBER) crlNumber = derInteger(ext.value);
  }
  const revokedSerials: string[] = [];
  for (const e of crl.entries) {
    const unknown = e.extensions.find((x) => x.critical && !ENTRY_EXTENSIONS_KNOWN.has(x.oid));
    if (unknown) {
      throw crlError(
        'ERR_IDENTITY_CRL_INVALID',
        `a CRL entry has a critical extension this gateway cannot apply (${unknown.oid})`,
      );
    }
    revokedSerials.push(normalizeSerial(e.serialHex));
  }
  const { thisUpdate, nextUpdate } = crl;
  if (thisUpdate.getTime() > now.getTime() + MAX_FUTURE_SKEW_MS) {
    throw crlError('ERR_IDENTITY_CRL_STALE', `the CRL is issued in the future (${thisUpdate.toISOString()})`);
  }
  if (nextUpdate && nextUpdate.getTime() < now.getTime()) {
    throw crlError(
      'ERR_IDENTITY_CRL_STALE',
      `the CRL is out of date (nextUpdate ${nextUpdate.toISOString()})`,
    );
  }
  return { der: Buffer.from(der), thisUpdate, nextUpdate, crlNumber, revokedSerials };
}

/**
 * Reads a CRL from an http(s) URL with a time and size bound. Fails with ERR_IDENTITY_CRL_FETCH; never
 * returns a partial body.
 */
export async function fetchCrl(
  url: string,
  limits: { maxBytes: number; timeoutMs: number } = CRL_FETCH_DEFAULTS,
): Promise<Buffer> {
  const fail = (why: string) => crlError('ERR_IDENTITY_CRL_FETCH', `${url}: ${why}`);
  const signal = AbortSignal.timeout(limits.timeoutMs);
  let res: Response;
  try {
    res = await fetch(url, { signal, redirect: 'follow', headers: { accept: 'application/pkix-crl' } });
  } catch (err) {
    throw fail(signal.aborted ? `no answer within ${limits.timeoutMs} ms` : (err as Error).message);
  }
  if (res.status !== 200) {
    await res.body?.cancel().catch(() => {});
    throw fail(`HTTP ${res.status}`);
  }
  const declared = Number(res.headers.get('content-length') ?? Number.NaN);
  if (declared > limits.maxBytes) {
    await res.body?.cancel().catch(() => {});
    throw fail(`larger than ${limits.maxBytes} bytes`);
  }
  const chunks: Buffer[] = [];
  let total = 0;
  try {
    for await (const chunk of res.body ?? []) {
      total += chunk.length;
      if (total > limits.maxBytes) {
        await res.body?.cancel().catch(() => {});
        throw fail(`larger than ${limits.maxBytes} bytes`);
      }
      chunks.push(Buffer.from(chunk));
    }
  } catch (err) {
    if (err instanceof IdentityError) throw err;
    throw fail(signal.aborted ? `no complete answer within ${limits.timeoutMs} ms` : (err as Error).message);
  }
  return Buffer.concat(chunks);
}

export interface CrlView {
  anchor: string;
  thisUpdate: string | null;
  nextUpdate: string | null;
  crlNumber: string | null;
  revoked: number;
  url: string | null;
  refreshSeconds: number | null;
  /** `out-of-date`: past its nextUpdate, so the anchor's sensors are refused (fail closed); `none`: no CRL yet. */
  state: 'current' | 'out-of-date' | 'none';
}

function view(c: TrustAnchorCrl, now: number): CrlView {
  const state =
    c.thisUpdate === null
      ? 'none'
      : c.nextUpdate !== null && Date.parse(c.nextUpdate) < now
        ? 'out-of-date'
        : 'current';
  return {
    state,
    anchor: c.anchorName,
    thisUpdate: c.thisUpdate,
    nextUpdate: c.nextUpdate,
    crlNumber: c.crlNumber,
    revoked: c.revokedCount,
    url: c.url,
    refreshSeconds: c.refreshSeconds,
  };
}

const distributionUrl = (u: string): string => {
  let url: URL;
  try {
    url = new URL(u);
  } catch {
    throw crlError('ERR_IDENTITY_INVALID', 'the CRL URL is not a URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw crlError('ERR_IDENTITY_INVALID', 'the CRL URL must be http:// or https://');
  }
  if (url.username || url.password) {
    throw crlError('ERR_IDENTITY_INVALID', 'the CRL URL must not carry credentials');
  }
  return url.toString();
};

/** One anchor's revocation facts as the handshake path reads them. */
interface AnchorRevocation {
  serials: Set<string>;
  /** Epoch ms; null when the CRL names no nextUpdate. */
  nextUpdate: number | null;
  /** The stored CRL no longer verifies (tampered database): everything under this anchor is refused. */
  broken: boolean;
}

/**
 * What the DTLS handshake asks, synchronously: is this certificate revoked by the anchor that issued it? Built
 * off the handshake path (CRL signatures are verified asynchronously), swapped in whole.
 */
export class RevocationIndex {
  private byAnchor = new Map<string, AnchorRevocation>();

  replace(next: RevocationIndex): void {
    this.byAnchor = next.byAnchor;
  }

  set(anchor: NodeCertificate, r: AnchorRevocation): void {
    this.byAnchor.set(anchor.fingerprint256, r);
  }

  /**
   * Revoked wins over out of date (a stale list still revokes). A CRL past its nextUpdate makes every
   * certificate of that anchor `unknown`: fail closed (docs/security.md says why).
   */
  readonly check = (certificate: NodeCertificate, issuer: NodeCertificate, now: Date): RevocationStatus => {
    const r = this.byAnchor.get(issuer.fingerprint256);
    if (!r) return 'good';
    if (r.broken) return 'unknown';
    if (r.serials.has(normalizeSerial(certificate.serialNumber))) return 'revoked';
    if (r.nextUpdate !== null && now.getTime() > r.nextUpdate) return 'unknown';
    return 'good';
  };

  /** The status of a live session's chain under the anchors trusted now. */
  chainStatus(
    chain: readonly NodeCertificate[],
    anchors: readonly NodeCertificate[],
    now: Date,
  ): RevocationStatus {
    for (const { certificate, issuer } of certificatePath(chain, anchors)) {
      const s = this.check(certificate, issuer, now);
      if (s !== 'good') return s;
    }
    return 'good';
  }

  /** Changes whenever an anchor's list goes out of date: the moment live sessions need another look. */
  staleKey(now: Date): string {
    let key = '';
    for (const [fp, r] of this.byAnchor) {
      if (r.broken || (r.nextUpdate !== null && now.getTime() > r.nextUpdate)) key += `${fp};`;
    }
    return key;
  }
}

export interface RevocationDeps {
  store: Store;
  audit: AuditLog;
  identity: IdentityService;
  clock: Clock;
}

/** CRLs per trust anchor: adding one (CLI, UI or the scheduled fetch), listing, and the handshake index. */
export class RevocationService {
  /**
   * What loadIndex last verified, by anchor fingerprint and the CRL row's metadata: the gateway reloads on every
   * identity change; only a changed CRL (or anchor) is read and verified again.
   */
  private readonly verified = new Map<string, { key: string; entry: AnchorRevocation }>();

  constructor(private readonly d: RevocationDeps) {}

  private anchor(name: string): TrustAnchor {
    const a = this.d.store.trustAnchors.list().find((x) => x.name === name);
    if (!a) throw crlError('ERR_IDENTITY_NOT_FOUND', `trust anchor ${name} not found`);
    return a;
  }

  private nowIso(): string {
    return new Date(this.d.clock.now()).toISOString();
  }

  /**
   * Verifies `bytes` as a CRL the anchor signed and stores it, audited. A CRL older than the one held is
   * refused (a replayed old list would un-revoke); the same one again changes nothing and is not audited.
   */
  async addCrl(
    anchorName: string,
    bytes: Buffer,
    actor: string,
    source: 'file' | 'url' = 'file',
  ): Promise<{ crl: CrlView; changed: boolean }> {
    const anchor = this.anchor(anchorName);
    const v = await verifyCrl(bytes, anchor.certificatePem, new Date(this.d.clock.now()));
    const held = this.d.store.trustAnchorCrls.get(anchorName);
    if (held?.crlDer && held.thisUpdate) {
      const heldNumber = held.crlNumber === null ? null : BigInt(held.crlNumber);
      const older =
        v.thisUpdate.getTime() < Date.parse(held.thisUpdate) ||
        (heldNumber !== null && v.crlNumber !== null && v.crlNumber < heldNumber);
      if (older) {
        throw crlError(
          'ERR_IDENTITY_CRL_ROLLBACK',
          `the CRL (thisUpdate ${v.thisUpdate.toISOString()}) is older than the one held for ${anchorName} (${held.thisUpdate})`,
        );
      }
      if (held.crlDer.equals(v.der)) return { crl: view(held, this.d.clock.now()), changed: false };
    }
    const details = {
      source,
      thisUpdate: v.thisUpdate.toISOString(),
      nextUpdate: v.nextUpdate?.toISOString() ?? null,
      crlNumber: v.crlNumber?.toString() ?? null,
      revoked: v.revokedSerials.length,
      // Newly revoked serials (bounded): what an auditor wants to find later.
      newlyRevoked: newSerials(held?.crlDer ?? null, v.revokedSerials).slice(0, 50),
    };
    this.d.identity.transact(() => {
      this.d.store.trustAnchorCrls.putCrl(
        {
          anchorName,
          crlDer: v.der,
          thisUpdate: details.thisUpdate,
          nextUpdate: details.nextUpdate,
          crlNumber: details.crlNumber,
          revokedCount: details.revoked,
        },
        this.nowIso(),
      );
      this.d.audit.append({ actor, action: 'identity.trust.crl.add', target: anchorName, details });
    });
    return {
      crl: view(this.d.store.trustAnchorCrls.get(anchorName) as TrustAnchorCrl, this.d.clock.now()),
      changed: true,
    };
  }

  /** Where the gateway fetches the anchor's next CRL (null: nowhere), and how often; audited. */
  setDistribution(
    anchorName: string,
    url: string | null,
    refreshSeconds: number | null,
    actor: string,
  ): CrlView {
    this.anchor(anchorName);
    const u = url === null ? null : distributionUrl(url);
    if (refreshSeconds !== null && (!Number.isInteger(refreshSeconds) || refreshSeconds < 1)) {
      throw crlError('ERR_IDENTITY_INVALID', 'the refresh interval must be a whole number of seconds ≥ 1');
    }
    const every = u === null ? null : (refreshSeconds ?? DEFAULT_CRL_REFRESH_SECONDS);
    this.d.identity.transact(() => {
      this.d.store.trustAnchorCrls.setDistribution(anchorName, u, every, this.nowIso());
      this.d.audit.append({
        actor,
        action: 'identity.trust.crl.url',
        target: anchorName,
        details: { url: u, refreshSeconds: every },
      });
    });
    return view(this.d.store.trustAnchorCrls.get(anchorName) as TrustAnchorCrl, this.d.clock.now());
  }

  list(): CrlView[] {
    const now = this.d.clock.now();
    return this.d.store.trustAnchorCrls.list().map((c) => view(c, now));
  }

  /**
   * The index the handshake path reads, from the stored CRLs, each verified again against its anchor (the
   * database is not trusted to be as the CLI left it: a list that no longer verifies fails closed).
   */
  async loadIndex(): Promise<RevocationIndex> {
    const anchors = new Map(this.d.store.trustAnchors.list().map((a) => [a.name, a]));
    const index = new RevocationIndex();
    for (const row of this.d.store.trustAnchorCrls.list()) {
      const anchor = anchors.get(row.anchorName);
      if (!anchor || !row.hasCrl) continue;
      const cert = new NodeCertificate(anchor.certificatePem);
      // The row's metadata changes with every stored CRL: the bytes are read (and verified) only then.
      const key = [anchor.fingerprint, row.updatedAt, row.thisUpdate, row.crlNumber].join('|');
      const known = this.verified.get(row.anchorName);
      if (known?.key === key) {
        index.set(cert, known.entry);
        continue;
      }
      let entry: AnchorRevocation;
      try {
        const der = this.d.store.trustAnchorCrls.get(row.anchorName)?.crlDer;
        if (!der) throw new Error('CRL gone');
        // Verified as of its own thisUpdate: staleness is the handshake's question, asked at handshake time.
        const at = new Date(Date.parse(row.thisUpdate ?? '') || this.d.clock.now());
        const v = await verifyCrl(der, anchor.certificatePem, at);
        entry = {
          serials: new Set(v.revokedSerials),
          nextUpdate: v.nextUpdate?.getTime() ?? null,
          broken: false,
        };
      } catch {
        entry = { serials: new Set(), nextUpdate: null, broken: true };
      }
      this.verified.set(row.anchorName, { key, entry });
      index.set(cert, entry);
    }
    return index;
  }

  /**
   * Fetches each anchor's CRL from its distribution URL when due, in the running gateway. A failure keeps the
   * last good CRL, is logged at most once per anchor per `logIntervalMs`, and is retried after a minute (or the
   * refresh interval, if shorter). Returns a stop function.
   */
  startRefresher(
    logger: Pick<Logger, 'warn' | 'info'>,
    opts: { tickMs?: number; logIntervalMs?: number; limits?: { maxBytes: number; timeoutMs: number } } = {},
  ): () => void {
    const due = new Map<string, number>();
    const throttle = new LogThrottle(opts.logIntervalMs ?? 15 * 60_000, () => this.d.clock.now());
    let running = false;
    const tick = async () => {
      if (running) return;
      running = true;
      try {
        for (const row of this.d.store.trustAnchorCrls.list()) {
          if (!row.url) continue;
          const now = this.d.clock.now();
          const key = `${row.anchorName} ${row.url}`;
          if ((due.get(key) ?? 0) > now) continue;
          const every = (row.refreshSeconds ?? DEFAULT_CRL_REFRESH_SECONDS) * 1000;
          try {
            const bytes = await fetchCrl(row.url, opts.limits ?? CRL_FETCH_DEFAULTS);
            const { changed, crl } = await this.addCrl(row.anchorName, bytes, 'system:crl-refresh', 'url');
            // Never wait past the list's nextUpdate (then it fails closed): fetch again by then at the latest.
            const next = crl.nextUpdate ? Date.parse(crl.nextUpdate) : Number.POSITIVE_INFINITY;
            due.set(key, Math.min(now + every, Math.max(next, now + 1000)));
            if (changed) logger.info({ ...crl }, 'trust anchor CRL refreshed');
          } catch (err) {
            due.set(key, now + Math.min(every, 60_000));
            const suppressed = throttle.admit(`crl:${row.anchorName}`);
            if (suppressed !== null) {
              logger.warn(
                {
                  anchor: row.anchorName,
                  code: (err as IdentityError).code,
                  err: (err as Error).message,
                  suppressed,
                },
                'trust anchor CRL refresh failed; the last good CRL stays in force',
              );
            }
          }
        }
      } finally {
        running = false;
      }
    };
    void tick();
    const timer = setInterval(() => void tick(), opts.tickMs ?? 1000);
    timer.unref();
    return () => clearInterval(timer);
  }
}

/** Serials in `next` that the held CRL did not list. */
function newSerials(heldDer: Buffer | null, next: string[]): string[] {
  if (!heldDer) return next;
  let held: Set<string>;
  try {
    held = new Set(parseCrlDer(heldDer).entries.map((e) => normalizeSerial(e.serialHex)));
  } catch {
    return next;
  }
  return next.filter((s) => !held.has(s));
}
