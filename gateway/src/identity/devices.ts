import { createPublicKey, randomBytes, X509Certificate } from 'node:crypto';
import { z } from 'zod';
import type { AuditLog } from '../audit/index.ts';
import type { Clock } from '../clock.ts';
import {
  anchorProblem,
  certificateFingerprint,
  type PeerCredential,
  spkiFingerprint,
} from '../dtls/index.ts';
import type { GatewayEvents } from '../events.ts';
import type { Keystore } from '../keystore/index.ts';
import { isHostOf, parseIpv4Network } from '../net/ipv4.ts';
import { mayHoldSession } from '../policy/index.ts';
import {
  type Device,
  type DeviceState,
  type QuarantineMode,
  type SessionDevice,
  type Store,
  StoreError,
  type TrustAnchor,
} from '../store/index.ts';
import { DeviceCache } from './device-cache.ts';
import { IdentityError } from './errors.ts';

/** Device ids appear in MQTT topics and file names: no '/', '+', '#', spaces or control characters. */
export const deviceIdSchema = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, {
  error: 'must be 1-64 characters: letters, digits, ".", "_" or "-", starting with a letter or digit',
});

const pskIdentitySchema = z
  .string()
  .min(1)
  .max(128)
  .regex(/^[\x21-\x7e]+$/, { error: 'must be 1-128 printable ASCII characters without spaces' });

/** Up to 512 bits, as hex; the length floor (128 bits) is checked apart, as the weak-key exception needs. */
const pskHexSchema = z.string().regex(/^([0-9a-fA-F]{2}){1,64}$/, { error: 'must be 1-64 bytes of hex' });

/**
 * A key as text (libcoap's `-k`, many sensors' configuration): its UTF-8 bytes are the PSK. No control
 * characters: a stray newline from a file or a terminal would silently make a different key.
 */
const pskTextSchema = z
  .string()
  .min(1, { error: 'must not be empty' })
  .regex(/^[^\p{Cc}]+$/u, { error: 'must not contain control characters (newline, tab, …)' })
  .refine((t) => Buffer.byteLength(t, 'utf8') <= 64, { error: 'must be at most 64 bytes (UTF-8)' });

/** Below this a PSK is weak (RFC 4279 keys are the device's only secret; 128 bits is the usual floor). */
export const MIN_STRONG_PSK_BYTES = 16;

export interface AddPskDevice {
  id: string;
  pskIdentity: string;
  /** Hex; omit with `generate` to have the gateway make a 128-bit key. */
  pskHex?: string;
  /** The key as text (its UTF-8 bytes), as libcoap's `-k` and many sensors take it. */
  pskText?: string;
  generate?: boolean;
  /**
   * Admit a key shorter than 128 bits (a legacy sensor's factory key). It is marked weak on the credential,
   * in the audit entry, on the device page and in the compliance report.
   */
  allowWeak?: boolean;
  segment?: string;
  name?: string;
  type?: string;
  /** A sensor that is a CoAP server: the gateway polls `url` (coaps://host[:port]/path) every interval. */
  pull?: { url: string; intervalSeconds: number };
}

const pullUrlSchema = z
  .url({ protocol: /^coaps$/, error: 'must be a coaps:// URL' })
  .refine((u) => new URL(u).pathname.length > 1, { error: 'must name a resource path' });

export interface CredentialView {
  kind: 'psk' | 'x509' | 'rpk';
  /** The PSK identity or the SHA-256 fingerprint; never the secret. */
  lookup: string;
  createdAt: string;
  revokedAt: string | null;
  erased: boolean;
  /** A PSK shorter than 128 bits, admitted with allowWeak. */
  weak: boolean;
}

export function pskContext(identity: string): string {
  return `credential:psk:${identity}`;
}

/** A uniqueness clash in the store is the caller's conflict (same id, identity, key or anchor); else as is. */
function asConflict(err: unknown): unknown {
  return err instanceof StoreError && err.code === 'ERR_STORE_CONFLICT'
    ? new IdentityError('ERR_IDENTITY_CONFLICT', err.message)
    : err;
}

function invalid(what: string, err: z.ZodError): IdentityError {
  return new IdentityError('ERR_IDENTITY_INVALID', `${what} ${err.issues[0]?.message ?? 'is invalid'}`);
}

/** Devices, their credentials and their lifecycle. Every state change is an audit entry naming the actor. */
/** Credential lookups of pull sensors: `pull:<device id>`. */
const PULL_PREFIX = 'pull:';

/** last_seen granularity: a sensor sending every second must not cost a database write every second. */
const TOUCH_INTERVAL_MS = 30_000;

/** A PSK device request checked whole: its id, identity and key (the caller zeroes `psk`), and the pull source. */
function validatePskDevice(req: AddPskDevice): { id: string; identity: string; psk: Buffer; weak: boolean } {
  if (req.pull) {
    const u = pullUrlSchema.safeParse(req.pull.url);
    if (!u.success) throw invalid('pull URL', u.error);
    if (!Number.isInteger(req.pull.intervalSeconds) || req.pull.intervalSeconds < 1) {
      throw new IdentityError('ERR_IDENTITY_INVALID', 'pull interval must be a whole number of seconds ≥ 1');
    }
  }
  const id = deviceIdSchema.safeParse(req.id);
  if (!id.success) throw invalid('device id', id.error);
  const identity = pskIdentitySchema.safeParse(req.pskIdentity);
  if (!identity.success) throw invalid('PSK identity', identity.error);
  if (!req.pull && identity.data.startsWith(PULL_PREFIX)) {
    throw new IdentityError(
      'ERR_IDENTITY_INVALID',
      `PSK identity must not start with "${PULL_PREFIX}" (reserved)`,
    );
  }
  // An empty hex field (the UI form's) means none given.
  const given = [Boolean(req.pskHex), req.pskText !== undefined, Boolean(req.generate)];
  if (given.filter(Boolean).length !== 1) {
    throw new IdentityError(
      'ERR_IDENTITY_INVALID',
      'give exactly one of a PSK as hex, a PSK as text, or --generate-psk',
    );
  }
  let psk: Buffer;
  if (req.pskHex) {
    const hex = pskHexSchema.safeParse(req.pskHex);
    if (!hex.success) throw invalid('PSK', hex.error);
    psk = Buffer.from(hex.data, 'hex');
  } else if (req.pskText !== undefined) {
    const text = pskTextSchema.safeParse(req.pskText);
    if (!text.success) throw invalid('PSK text', text.error);
    psk = Buffer.from(text.data, 'utf8');
  } else {
    psk = randomBytes(MIN_STRONG_PSK_BYTES);
  }
  // The length is no secret worth hiding from the operator who typed the key, but the key itself never
  // appears in a message.
  const weak = psk.length < MIN_STRONG_PSK_BYTES;
  if (weak && !req.allowWeak) {
    psk.fill(0);
    throw new IdentityError(
      'ERR_IDENTITY_WEAK_PSK',
      `PSK is ${psk.length} bytes; at least ${MIN_STRONG_PSK_BYTES} bytes (128 bits) are required ` +
        '(a legacy sensor whose key cannot change: --allow-weak-psk, and the device is marked weak)',
    );
  }
  return { id: id.data, identity: identity.data, psk, weak };
}

export class IdentityService {
  private readonly touched = new Map<string, number>();
  private localChanges = 0;
  private readonly devices: DeviceCache;
  constructor(
    private readonly store: Store,
    private readonly keystore: Keystore,
    private readonly audit: AuditLog,
    private readonly clock: Clock,
    private readonly events?: GatewayEvents,
  ) {
    this.devices = new DeviceCache(
      () => store.devices.identityVersion(),
      () => store.inTransaction,
      (invalidate) => store.devices.onIdentityWrite(invalidate),
    );
  }

  /** A state change of one device, told to the event stream once it committed. */
  private transition(id: string, actor: string, fn: () => Device): Device {
    const before = this.store.devices.get(id)?.state;
    const d = this.mutate(fn);
    return before === undefined ? d : this.announce(d, before, actor);
  }

  /** Tells the event stream, after the change committed. */
  private announce(d: Device, from: DeviceState | null, actor: string): Device {
    const ts = this.nowIso();
    if (from === null) {
      this.events?.emit({
        type: 'device.new',
        ts,
        deviceId: d.id,
        credentialKind: d.credentialKind,
        state: d.state,
      });
    } else if (from !== d.state) {
      this.events?.emit({ type: 'device.state', ts, deviceId: d.id, from, to: d.state, actor });
    }
    return d;
  }

  /**
   * Differs whenever devices, credentials or trust anchors may have changed — here or in another process (the
   * CLI) — so periodic reviews can skip the work when nothing did. Scoped by triggers to the tables the reviews
   * read (`identityVersion`), not `PRAGMA data_version`: the uplink queue's commits from its own connection
   * must not set off a review every tick under load (issue 23).
   */
  get changeStamp(): string {
    const version = this.store.devices.identityVersion();
    // A reader of the stamp reads devices next (the session review): the cache must not answer older than it.
    this.devices.observe(version);
    return `${version}:${this.localChanges}`;
  }

  /** Runs another module's write (allow-lists, controllers) so that reviews notice it like an identity change. */
  transact<T>(fn: () => T): T {
    return this.mutate(fn);
  }

  /** Runs a mutation in one transaction and marks the stamp changed. */
  private mutate<T>(fn: () => T): T {
    const out = this.store.transaction(fn);
    this.localChanges++;
    return out;
  }

  private nowIso(): string {
    return new Date(this.clock.now()).toISOString();
  }

  /** Pre-provisions a PSK device (active at once). Returns the key only when the gateway generated it. */
  addPskDevice(req: AddPskDevice, actor: string): { device: Device; generatedPskHex: string | null } {
    const { id, identity, psk, weak } = validatePskDevice(req);
    if (req.segment && !this.store.segments.get(req.segment)) {
      throw new IdentityError('ERR_IDENTITY_NOT_FOUND', `segment ${req.segment} does not exist`);
    }
    const now = this.nowIso();
    // A pull sensor's key is the one the gateway presents to it; many sensors may expect the same identity, so
    // its credential is keyed by device, under a prefix inbound handshakes can never authenticate with.
    const credentialLookup = req.pull ? `${PULL_PREFIX}${id}` : identity;
    try {
      const device = this.mutate(() => {
        const d = this.store.devices.insert(
          {
            id: id,
            name: req.name ?? null,
            type: req.type ?? null,
            credentialKind: 'psk',
            segment: req.segment ?? null,
            state: 'active',
          },
          now,
        );
        this.store.credentials.insert(
          {
            deviceId: d.id,
            kind: 'psk',
            lookup: credentialLookup,
            secretWrapped: this.keystore.wrap(psk, pskContext(credentialLookup)),
            weak,
          },
          now,
        );
        if (req.pull) {
          this.store.pullSources.insert({ deviceId: d.id, ...req.pull, pskIdentity: identity }, now);
        }
        this.audit.append({
          actor,
          action: 'device.add',
          target: d.id,
          details: {
            credentialKind: 'psk',
            identity: identity,
            segment: d.segment,
            generated: Boolean(req.generate),
            keyForm: req.generate ? 'generated' : req.pskText !== undefined ? 'text' : 'hex',
            weak,
            pull: req.pull ?? null,
          },
        });
        return d;
      });
      this.announce(device, null, actor);
      return { device, generatedPskHex: req.generate ? psk.toString('hex') : null };
    } catch (err) {
      throw asConflict(err);
    } finally {
      psk.fill(0);
    }
  }

  list(filter: { state?: DeviceState } = {}): Device[] {
    return this.store.devices.list(filter);
  }

  /** Devices by state (the dashboard's counts). */
  countByState(): Record<DeviceState, number> {
    return this.store.devices.countByState();
  }

  /**
   * Stamps for live views, cheap to poll: `rows` moves whenever any device row does (in any process), `seen`
   * when any device was last seen later (a reading moves only that).
   */
  liveStamps(): { rows: string; seen: string } {
    return { rows: this.store.devices.changeStamp(), seen: this.store.devices.seenStamp() };
  }

  show(id: string): { device: Device; credentials: CredentialView[] } {
    const device = this.store.devices.get(id);
    if (!device) throw new IdentityError('ERR_IDENTITY_NOT_FOUND', `device ${id} not found`);
    const credentials = this.store.credentials.listForDevice(id).map((c) => ({
      kind: c.kind,
      lookup: c.lookup,
      createdAt: c.createdAt,
      revokedAt: c.revokedAt,
      erased: c.secretWrapped === null,
      weak: c.weak,
    }));
    return { device, credentials };
  }

  /**
   * Revokes and crypto-erases every credential, marks the device decommissioned, and audits it — in one
   * transaction. The running gateway sees the new state on the device's next message and closes its sessions.
   */
  decommission(id: string, actor: string, reason?: string): Device {
    return this.retire(id, actor, 'device.decommission', reason);
  }

  /**
   * Onboarding's "no": a pending device is refused for good, with the same erasure as decommission. Only
   * pending devices — taking an admitted one out is decommission, an admin's decision.
   */
  reject(id: string, actor: string, reason?: string): Device {
    return this.retire(id, actor, 'device.reject', reason);
  }

  private retire(
    id: string,
    actor: string,
    action: 'device.decommission' | 'device.reject',
    reason: string | undefined,
  ): Device {
    const now = this.nowIso();
    return this.transition(id, actor, () => {
      const device = this.store.devices.get(id);
      if (!device) throw new IdentityError('ERR_IDENTITY_NOT_FOUND', `device ${id} not found`);
      if (device.state === 'decommissioned') {
        throw new IdentityError('ERR_IDENTITY_STATE', `device ${id} is already decommissioned`);
      }
      if (action === 'device.reject' && device.state !== 'pending') {
        throw new IdentityError('ERR_IDENTITY_STATE', `device ${id} is ${device.state}, not pending`);
      }
      const erased = this.store.credentials.revokeAndEraseForDevice(id, now);
      this.store.downlink.deleteForDevice(id);
      // What was learned about the device goes too (EN 303 645 5.11: deletion).
      this.store.baselines.delete(id);
      this.store.activity.deleteForDevice(id);
      this.store.devices.setState(id, 'decommissioned', now);
      this.audit.append({
        actor,
        action,
        target: id,
        details: { previousState: device.state, credentialsErased: erased, reason: reason ?? null },
      });
      return this.store.devices.get(id) as Device;
    });
  }

  /**
   * The PSK for a handshake, or undefined. Only an unrevoked credential of an active device authenticates;
   * everything else looks exactly like an unknown identity to the peer.
   */
  pskFor(identity: Buffer): Buffer | undefined {
    const lookup = identity.toString('utf8');
    if (lookup.startsWith(PULL_PREFIX)) return undefined; // gateway-to-sensor keys never authenticate inbound
    const cred = this.store.credentials.findActive('psk', lookup);
    if (!cred?.secretWrapped) return undefined;
    if (!mayHoldSession(this.store.devices.get(cred.deviceId))) return undefined;
    return this.keystore.unwrap(cred.secretWrapped, pskContext(lookup));
  }

  /** The PSK identity and key the gateway uses as the DTLS client of an active pull-mode sensor. */
  pullCredential(deviceId: string): { identity: string; key: Buffer } | undefined {
    const device = this.store.devices.get(deviceId);
    const source = this.store.pullSources.get(deviceId);
    if (device?.state !== 'active' || !source) return undefined;
    const lookup = `${PULL_PREFIX}${deviceId}`;
    const cred = this.store.credentials.findActive('psk', lookup);
    if (!cred?.secretWrapped) return undefined;
    return {
      identity: source.pskIdentity,
      key: this.keystore.unwrap(cred.secretWrapped, pskContext(lookup)),
    };
  }

  /**
   * The device behind an authenticated DTLS credential, whatever its state (policy decides what it may do). Shared
   * and frozen (device-cache.ts), and only what the data path reads: no last-seen, firmware or timestamps.
   */
  deviceFor(credential: PeerCredential): SessionDevice | undefined {
    const lookup = credential.kind === 'psk' ? credential.identity.toString('utf8') : credential.fingerprint;
    if (credential.kind === 'psk' && lookup.startsWith(PULL_PREFIX)) return undefined;
    return this.devices.get(`${credential.kind}:${lookup}`, () =>
      this.store.devices.byActiveCredential(credential.kind, lookup),
    );
  }

  /**
   * Whose credential a failed handshake claimed, revoked ones included (a decommissioned sensor still trying):
   * for auditing and alerts only — the claim is unauthenticated and grants nothing.
   */
  claimedBy(kind: PeerCredential['kind'], lookup: string): Device | undefined {
    if (kind === 'psk' && lookup.startsWith(PULL_PREFIX)) return undefined;
    const cred = this.store.credentials.findLatest(kind, lookup);
    return cred ? this.store.devices.get(cred.deviceId) : undefined;
  }

  /** Adds a manufacturer CA: sensors whose chain ends there may ask to join (they start pending). */
  addTrustAnchor(name: string, pem: string, actor: string): TrustAnchor {
    const n = deviceIdSchema.safeParse(name);
    if (!n.success) throw invalid('trust anchor name', n.error);
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(pem);
    } catch {
      throw new IdentityError('ERR_IDENTITY_INVALID', 'the CA file is not a PEM certificate');
    }
    if (!cert.ca)
      throw new IdentityError('ERR_IDENTITY_INVALID', 'the certificate is not a CA (basicConstraints)');
    // Refused now rather than at every handshake of its sensors (docs/security.md, sensor certificates).
    const problem = anchorProblem(cert);
    if (problem)
      throw new IdentityError('ERR_IDENTITY_INVALID', `the CA cannot be a trust anchor: ${problem}`);
    const anchor = {
      name: n.data,
      certificatePem: cert.toString(),
      fingerprint: certificateFingerprint(cert),
      createdAt: this.nowIso(),
    };
    try {
      this.mutate(() => {
        this.store.trustAnchors.insert(anchor);
        this.audit.append({
          actor,
          action: 'identity.trust.add',
          target: anchor.name,
          details: { fingerprint: anchor.fingerprint, subject: cert.subject },
        });
      });
    } catch (err) {
      throw asConflict(err);
    }
    return anchor;
  }

  listTrustAnchors(): TrustAnchor[] {
    return this.store.trustAnchors.list();
  }

  /** Pins a raw-public-key sensor (RFC 7250) by the SHA-256 of its SubjectPublicKeyInfo; active at once. */
  addRpkDevice(
    req: { id: string; publicKeyPem: string; segment?: string; name?: string },
    actor: string,
  ): Device {
    const id = deviceIdSchema.safeParse(req.id);
    if (!id.success) throw invalid('device id', id.error);
    let spki: Buffer;
    try {
      spki = createPublicKey(req.publicKeyPem).export({ format: 'der', type: 'spki' });
    } catch {
      throw new IdentityError('ERR_IDENTITY_INVALID', 'the key file is not a PEM public or private key');
    }
    const fingerprint = spkiFingerprint(spki);
    const now = this.nowIso();
    try {
      const added = this.mutate(() => {
        const d = this.store.devices.insert(
          {
            id: id.data,
            name: req.name ?? null,
            credentialKind: 'rpk',
            segment: req.segment ?? null,
            state: 'active',
          },
          now,
        );
        this.store.credentials.insert({ deviceId: d.id, kind: 'rpk', lookup: fingerprint }, now);
        this.audit.append({
          actor,
          action: 'device.add',
          target: d.id,
          details: { credentialKind: 'rpk', fingerprint },
        });
        return d;
      });
      return this.announce(added, null, actor);
    } catch (err) {
      throw asConflict(err);
    }
  }

  /**
   * First contact of a sensor whose certificate chains to a trust anchor: it becomes a pending device (id from
   * its fingerprint, name from its subject) until a technician approves it. Returns the device either way.
   */
  admitCertificate(credential: Extract<PeerCredential, { kind: 'x509' }>, from: string): SessionDevice {
    const known = this.deviceFor(credential);
    if (known) return known;
    const leaf = credential.chain[0];
    const id = `x509-${credential.fingerprint.slice(0, 16)}`;
    const now = this.nowIso();
    let created = false;
    const device = this.mutate(() => {
      const existing = this.store.devices.get(id);
      if (existing) return existing; // decommissioned earlier: its credential is revoked, it stays out
      created = true;
      const d = this.store.devices.insert(
        { id, name: leaf?.subject.replaceAll('\n', ', ') ?? null, credentialKind: 'x509', state: 'pending' },
        now,
      );
      this.store.credentials.insert({ deviceId: id, kind: 'x509', lookup: credential.fingerprint }, now);
      this.audit.append({
        actor: 'system',
        action: 'device.pending',
        target: id,
        details: {
          fingerprint: credential.fingerprint,
          subject: leaf?.subject ?? null,
          issuer: leaf?.issuer ?? null,
          from,
        },
      });
      return d;
    });
    return created ? this.announce(device, null, 'system') : device;
  }

  /** A technician lets a pending device in. */
  approve(id: string, actor: string): Device {
    const now = this.nowIso();
    return this.transition(id, actor, () => {
      const device = this.store.devices.get(id);
      if (!device) throw new IdentityError('ERR_IDENTITY_NOT_FOUND', `device ${id} not found`);
      if (device.state !== 'pending') {
        throw new IdentityError('ERR_IDENTITY_STATE', `device ${id} is ${device.state}, not pending`);
      }
      this.store.devices.setState(id, 'active', now);
      this.audit.append({ actor, action: 'device.approve', target: id, details: {} });
      return this.store.devices.get(id) as Device;
    });
  }

  /** Where a device lives: its segment and the IPv4 address the firewall knows it by (must be in the segment). */
  place(id: string, p: { segment?: string | null; address?: string | null }, actor: string): Device {
    const now = this.nowIso();
    try {
      return this.mutate(() => {
        const device = this.requireDevice(id);
        const segmentName = p.segment === undefined ? device.segment : p.segment;
        const address = p.address === undefined ? device.address : p.address;
        const segment = segmentName ? this.store.segments.get(segmentName) : undefined;
        if (segmentName && !segment) {
          throw new IdentityError('ERR_IDENTITY_NOT_FOUND', `segment ${segmentName} does not exist`);
        }
        if (address) {
          const net = segment?.subnet ? parseIpv4Network(segment.subnet) : undefined;
          if (!net) {
            throw new IdentityError(
              'ERR_IDENTITY_INVALID',
              'an address needs a segment with a subnet (give --segment)',
            );
          }
          if (!isHostOf(net, address) || address === segment?.gatewayAddress) {
            throw new IdentityError(
              'ERR_IDENTITY_INVALID',
              `address ${address} is not a device address in segment ${segment?.name} (${segment?.subnet})`,
            );
          }
        }
        this.store.devices.setPlacement(id, { segment: p.segment, address: p.address }, now);
        this.audit.append({
          actor,
          action: 'device.place',
          target: id,
          details: {
            segment: segmentName,
            address,
            previous: { segment: device.segment, address: device.address },
          },
        });
        return this.store.devices.get(id) as Device;
      });
    } catch (err) {
      throw asConflict(err);
    }
  }

  /**
   * Moves a device into quarantine: observe (it keeps only the gateway's DTLS endpoint) or isolate (nothing).
   * The firewall side is segmentation's; this is the record, in one transaction with its audit entry.
   */
  quarantine(id: string, req: { mode: QuarantineMode; reason: string }, actor: string): Device {
    const reason = req.reason.trim();
    if (reason.length === 0 || reason.length > 500) {
      throw new IdentityError('ERR_IDENTITY_INVALID', 'a quarantine needs a reason (1-500 characters)');
    }
    const now = this.nowIso();
    return this.transition(id, actor, () => {
      const device = this.requireDevice(id);
      if (device.state !== 'active' && device.state !== 'pending') {
        throw new IdentityError(
          'ERR_IDENTITY_STATE',
          `device ${id} is ${device.state}; only active or pending devices can be quarantined`,
        );
      }
      this.store.devices.quarantine(id, { mode: req.mode, reason, previousState: device.state }, now);
      this.audit.append({
        actor,
        action: 'device.quarantine',
        target: id,
        details: { mode: req.mode, reason, previousState: device.state, address: device.address },
      });
      return this.store.devices.get(id) as Device;
    });
  }

  /** Ends a quarantine: the device returns to the state it had before. */
  release(id: string, actor: string, reason?: string): Device {
    const now = this.nowIso();
    return this.transition(id, actor, () => {
      const device = this.requireDevice(id);
      if (device.state !== 'quarantined' || !device.quarantine) {
        throw new IdentityError('ERR_IDENTITY_STATE', `device ${id} is ${device.state}, not quarantined`);
      }
      this.store.devices.release(id, device.quarantine.previousState, now);
      this.audit.append({
        actor,
        action: 'device.release',
        target: id,
        details: {
          returnedTo: device.quarantine.previousState,
          quarantinedSince: device.quarantine.since,
          reason: reason ?? null,
          address: device.address,
        },
      });
      return this.store.devices.get(id) as Device;
    });
  }

  private requireDevice(id: string): Device {
    const device = this.store.devices.get(id);
    if (!device) throw new IdentityError('ERR_IDENTITY_NOT_FOUND', `device ${id} not found`);
    return device;
  }

  /** Records activity; written at most once per TOUCH_INTERVAL_MS per device, not once per message. */
  touch(id: string): void {
    const at = this.seenDue(id);
    if (at !== null) this.store.devices.touch(id, at);
  }

  /**
   * The time to write as the device's last_seen now (ISO), or null when it was written under TOUCH_INTERVAL_MS
   * ago: for a caller that writes it itself, inside another commit (the uplink queue's, issue 23).
   */
  seenDue(id: string): string | null {
    const now = this.clock.now();
    const last = this.touched.get(id);
    if (last !== undefined && now - last < TOUCH_INTERVAL_MS) return null;
    this.touched.set(id, now);
    return new Date(now).toISOString();
  }
}
