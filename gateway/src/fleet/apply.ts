/**
 * Applies desired-state documents: verified against the pinned operator key, checked for target, expiry and a
 * version above the last applied one in the same scope, then applied all or nothing in one transaction whose
 * audit entries name `fleet:<key-id>`. Every refusal has a stable code (fleet/errors.ts).
 */
import type { KeyObject } from 'node:crypto';
import { createPublicKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Core } from '../core.ts';
import { PortcullisError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { UpdateInstaller } from '../updates/index.ts';
import {
  type DocumentBody,
  type DocumentSpec,
  ed25519PublicKey,
  keyIdOf,
  parseEnvelope,
  verifyDocument,
} from './document.ts';
import { FleetError } from './errors.ts';
import { type FetchedFile, fetchVerified } from './fetch.ts';
import type { GatewayHpkeKey } from './hpke.ts';

export interface ApplyResult {
  format: 'portcullis-desired-result/1';
  scope: string;
  status: 'applied' | 'refused';
  version: number | null;
  keyId: string | null;
  code?: string;
  reason?: string;
  /**
   * A document's gateway update: everything checkable (hash, release signature, version floor) was checked
   * before the document applied; the installation ran after it and ended so.
   */
  update?: { status: 'installed' | 'failed'; version: string; code?: string; reason?: string };
  at: string;
}

interface Prepared {
  psks: Map<string, Buffer>;
  /** Firmware images fetched and hash-checked against their manifest's digest (the vendor signature next). */
  images: Array<{ image: Buffer; manifest: Buffer; signature: Buffer }>;
  bundle: {
    fetched: FetchedFile;
    installer: UpdateInstaller;
    version: string;
  } | null;
}

/** Refusals audited per minute at most; beyond, only logged (the desired topic is writable by the broker's ACL). */
const REFUSALS_AUDITED_PER_MINUTE = 10;

export class DesiredStateApplier {
  private refusalWindow = { start: 0, count: 0 };

  constructor(
    private readonly core: Core,
    private readonly hpke: GatewayHpkeKey,
    /** The operator key pinned in the config (fleet.operatorKeyFile); null: every document is refused. */
    private readonly configKey: KeyObject | null,
    private readonly prefix: string,
    private readonly logger: Logger,
  ) {}

  /** The key that signs now: a rotated one, unless the config pins another key than the one rotated from. */
  operatorKey(): KeyObject | null {
    if (!this.configKey) return null;
    const trust = this.core.store.fleet.trust();
    if (trust && trust.pinnedFrom === keyIdOf(this.configKey)) {
      return createPublicKey({ key: Buffer.from(trust.keySpki, 'base64'), format: 'der', type: 'spki' });
    }
    return this.configKey;
  }

  private now(): string {
    return new Date(this.core.clock.now()).toISOString();
  }

  /**
   * Returns the result to publish, or null for nothing to say: an empty payload (a cleared retained
   * document), or the very document already applied (the broker hands the retained one over at each connect).
   */
  async handle(scope: string, bytes: Buffer): Promise<ApplyResult | null> {
    if (bytes.length === 0) return null;
    let keyId: string | null = null;
    let version: number | null = null;
    try {
      const env = parseEnvelope(bytes);
      keyId = env.keyId;
      const key = this.operatorKey();
      if (!key)
        throw new FleetError(
          'ERR_FLEET_NO_OPERATOR_KEY',
          'no operator key is pinned (fleet.operatorKeyFile)',
        );
      const { body, hash } = verifyDocument(env, key);
      version = body.version;
      const applied = this.core.store.fleet.applied(scope);
      if (applied && applied.hash === hash) return null;
      this.checkTarget(scope, body);
      if (Date.parse(body.expires) <= this.core.clock.now()) {
        throw new FleetError(
          'ERR_FLEET_EXPIRED',
          `document version ${body.version} expired at ${body.expires}`,
        );
      }
      if (applied && body.version <= applied.version) {
        throw new FleetError(
          'ERR_FLEET_REPLAYED',
          `document version ${body.version} is not above version ${applied.version} already applied in ${scope}`,
        );
      }
      const lock = this.core.store.fleet.lock();
      if (lock.locked) {
        throw new FleetError('ERR_FLEET_LOCKED', `the fleet lock is set (by ${lock.by} since ${lock.since})`);
      }
      const update = await this.apply(scope, body, hash, env.keyId, key);
      this.logger.info({ scope, version: body.version, keyId: env.keyId, update }, 'fleet document applied');
      return {
        format: 'portcullis-desired-result/1',
        scope,
        status: 'applied',
        version,
        keyId,
        ...(update ? { update } : {}),
        at: this.now(),
      };
    } catch (err) {
      const code = err instanceof PortcullisError ? err.code : 'ERR_FLEET_APPLY';
      const reason = err instanceof Error ? err.message : String(err);
      this.refused(scope, code, reason, keyId, version);
      return {
        format: 'portcullis-desired-result/1',
        scope,
        status: 'refused',
        version,
        keyId,
        code,
        reason,
        at: this.now(),
      };
    }
  }

  private checkTarget(scope: string, body: DocumentBody): void {
    const t = body.target;
    const ok =
      'gateway' in t ? scope === 'gateway' && t.gateway === this.prefix : scope === `group:${t.group}`;
    if (!ok) {
      throw new FleetError(
        'ERR_FLEET_NOT_FOR_ME',
        `document is for ${'gateway' in t ? `gateway ${t.gateway}` : `group ${t.group}`}, received in ${scope}`,
      );
    }
  }

  /**
   * Everything that can refuse the document without changing anything, done before the transaction: PSKs
   * opened (HPKE is async), the update bundle fetched, hash-checked and its release signature verified.
   */
  private async prepare(body: DocumentBody): Promise<Prepared> {
    const { spec } = body;
    const psks = new Map<string, Buffer>();
    let bundle: Prepared['bundle'] = null;
    try {
      for (const d of spec.devices.add) {
        const sealed = d.psk.find((p) => p.to === this.hpke.keyId);
        if (!sealed) {
          throw new FleetError(
            'ERR_FLEET_SEALED',
            `device ${d.id} carries no PSK sealed to this gateway (${this.hpke.keyId})`,
          );
        }
        psks.set(d.id, await this.hpke.open(sealed, d.id, d.pskIdentity));
      }
      const segments = new Set(this.core.config.segments.map((s) => s.name));
      for (const [name, fields] of Object.entries(spec.profiles)) {
        // As the configuration's check does: a profile naming a segment this site lacks would refuse forever.
        const named = Array.isArray(fields.segments) ? (fields.segments as unknown[]) : [];
        const missing = named.find((s) => typeof s === 'string' && !segments.has(s));
        if (missing !== undefined) {
          throw new FleetError(
            'ERR_FLEET_APPLY',
            `profile ${name}: no segment ${String(missing)} on this gateway`,
          );
        }
      }
      const images = [];
      for (const i of spec.firmware.images) images.push(await this.fetchImage(i));
      if (spec.update) bundle = await this.prepareUpdate(spec.update);
      return { psks, images, bundle };
    } catch (err) {
      for (const k of psks.values()) k.fill(0);
      throw err;
    }
  }

  private fetchLimits() {
    const limits = this.core.config.fleet.update;
    return {
      allowFileUrls: limits.allowFileUrls,
      maxBytes: limits.maxBundleBytes,
      timeoutMs: limits.fetchTimeoutSeconds * 1000,
    };
  }

  /** A firmware image by URL: the bytes must hash to the digest its (vendor-signed) manifest names. */
  private async fetchImage(
    i: DocumentSpec['firmware']['images'][number],
  ): Promise<Prepared['images'][number]> {
    const manifest = Buffer.from(i.manifest, 'base64');
    const { parseFirmwareManifest } = await import('../firmware/index.ts');
    const m = parseFirmwareManifest(manifest);
    const fetched = await fetchVerified(i.url, m.digest, this.core.config.dataDir, this.fetchLimits());
    try {
      return { image: readFileSync(fetched.path), manifest, signature: Buffer.from(i.signature) };
    } finally {
      fetched.dispose();
    }
  }

  /** Fetch (bounded), hash, then the bundle's own signature and version floor: the installer's verify. */
  private async prepareUpdate(u: NonNullable<DocumentSpec['update']>): Promise<Prepared['bundle']> {
    const fetched = await fetchVerified(u.url, u.sha256, this.core.config.dataDir, this.fetchLimits());
    try {
      const { installerFor } = await import('../updates/index.ts');
      const installer = installerFor(this.core);
      const manifest = await installer.verify(fetched.path);
      return { fetched, installer, version: manifest.version };
    } catch (err) {
      fetched.dispose();
      throw err;
    }
  }

  private async apply(
    scope: string,
    body: DocumentBody,
    hash: string,
    keyId: string,
    key: KeyObject,
  ): Promise<ApplyResult['update']> {
    const prepared = await this.prepare(body);
    const actor = `fleet:${keyId}`;
    try {
      try {
        this.core.store.transaction(() => this.changeAll(scope, body, hash, keyId, key, prepared));
      } finally {
        for (const k of prepared.psks.values()) k.fill(0);
        // Committed or not, the engine takes what the store now holds (a rolled-back definition is not there).
        if (Object.keys(body.spec.profiles).length > 0) {
          try {
            this.core.policy.reloadProfiles();
          } catch (err) {
            // Never in place of the document's own outcome; the stored definitions were checked when defined.
            this.logger.error({ err: (err as Error).message }, 'fleet: profiles not reloaded');
          }
        }
      }
      if (!prepared.bundle) return undefined;
      // After the commit: unpack, switch, health check, or roll back — the installer's own A/B steps, recorded
      // and audited by it; its outcome goes into the result.
      try {
        const r = await prepared.bundle.installer.apply(prepared.bundle.fetched.path, actor);
        return { status: 'installed', version: r.version };
      } catch (err) {
        return {
          status: 'failed',
          version: prepared.bundle.version,
          code: err instanceof PortcullisError ? err.code : 'ERR_FLEET_APPLY',
          reason: err instanceof Error ? err.message : String(err),
        };
      }
    } finally {
      prepared.bundle?.fetched.dispose();
    }
  }

  /** Every change of the document, inside the caller's transaction, through the services' own methods. */
  private changeAll(
    scope: string,
    body: DocumentBody,
    hash: string,
    keyId: string,
    key: KeyObject,
    prepared: Prepared,
  ): void {
    const { spec } = body;
    const actor = `fleet:${keyId}`;
    const now = this.now();
    for (const [name, fields] of Object.entries(spec.profiles)) {
      this.core.policy.defineProfile(name, fields, actor, keyId);
    }
    this.changeDevices(body, actor, prepared);
    for (const a of spec.allowLists) this.core.segmentation.importMud(a.device, JSON.stringify(a.mud), actor);
    for (const p of spec.policy) {
      this.core.policy.assign(p.device, { profile: p.profile, overrides: p.overrides }, actor);
    }
    // Verified against the vendor key on record and stored once, before the campaigns that may name them.
    const images = prepared.images.map(
      (i) => this.core.firmware.upload(i.image, i.manifest, i.signature, actor).digest,
    );
    const campaigns = spec.firmware.campaigns.map(
      (c) => this.core.firmware.createCampaign(c.image, c.settings, actor).campaign.id,
    );
    const rotate = spec.rotateOperatorKey ? ed25519PublicKey(spec.rotateOperatorKey) : null;
    if (rotate && this.configKey) {
      this.core.store.fleet.setTrust({
        keySpki: rotate.export({ format: 'der', type: 'spki' }).toString('base64'),
        keyId: keyIdOf(rotate),
        pinnedFrom: keyIdOf(this.configKey),
        since: now,
      });
    }
    const changes = {
      added: spec.devices.add.map((d) => d.id),
      decommissioned: spec.devices.decommission,
      quarantined: spec.devices.quarantine.map((q) => q.id),
      released: spec.devices.release,
      policy: spec.policy.map((p) => p.device),
      profilesDefined: Object.keys(spec.profiles),
      allowLists: spec.allowLists.map((a) => a.device),
      firmwareImages: images,
      campaigns,
      update: prepared.bundle ? { version: prepared.bundle.version, sha256: spec.update?.sha256 } : null,
      rotatedTo: rotate ? keyIdOf(rotate) : null,
      previousKey: rotate ? keyIdOf(key) : null,
      labels: spec.labels ?? {},
    };
    this.core.store.fleet.setApplied({
      scope,
      version: body.version,
      hash,
      keyId,
      appliedAt: now,
      labels: spec.labels ?? {},
      changes,
    });
    this.core.audit.append({
      actor,
      action: 'fleet.apply',
      target: scope,
      details: { version: body.version, documentHash: hash, expires: body.expires, ...changes },
    });
  }

  /** Device additions (PSKs opened in `prepare`), decommissions, quarantines and releases, in that order. */
  private changeDevices(body: DocumentBody, actor: string, prepared: Prepared): void {
    const { spec } = body;
    const identity = this.core.identity;
    for (const d of spec.devices.add) {
      identity.addPskDevice(
        {
          id: d.id,
          pskIdentity: d.pskIdentity,
          pskHex: (prepared.psks.get(d.id) as Buffer).toString('hex'),
          segment: d.segment,
          name: d.name,
          type: d.type,
        },
        actor,
      );
    }
    for (const id of spec.devices.decommission)
      identity.decommission(id, actor, `fleet document ${body.version}`);
    for (const q of spec.devices.quarantine)
      identity.quarantine(q.id, { mode: q.mode, reason: q.reason }, actor);
    for (const id of spec.devices.release) identity.release(id, actor, `fleet document ${body.version}`);
  }

  private refused(
    scope: string,
    code: string,
    reason: string,
    keyId: string | null,
    version: number | null,
  ): void {
    this.logger.warn({ scope, code, reason, keyId, version }, 'fleet document refused');
    const now = this.core.clock.now();
    try {
      // Kept for the fleet page (bounded to the newest 50), even beyond the audit's per-minute budget.
      this.core.store.fleet.addRefusal({
        scope,
        version,
        claimedKeyId: keyId,
        code,
        reason: reason.slice(0, 500),
        at: new Date(now).toISOString(),
      });
    } catch (err) {
      this.logger.error({ err: (err as Error).message }, 'fleet refusal not kept');
    }
    if (now - this.refusalWindow.start >= 60_000) this.refusalWindow = { start: now, count: 0 };
    if (++this.refusalWindow.count > REFUSALS_AUDITED_PER_MINUTE) return;
    try {
      this.core.audit.append({
        // Not `fleet:<key-id>`: a refused document's key id is only claimed, never proven.
        actor: 'fleet',
        action: 'fleet.refuse',
        target: scope,
        details: { code, reason: reason.slice(0, 500), version, claimedKeyId: keyId },
      });
    } catch (err) {
      this.logger.error({ err: (err as Error).message }, 'fleet refusal not audited');
    }
  }
}
