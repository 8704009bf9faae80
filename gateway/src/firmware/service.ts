import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { raiseAlert } from '../alerts.ts';
import type { AuditLog } from '../audit/index.ts';
import { type Clock, isoTime } from '../clock.ts';
import type { Config } from '../config/index.ts';
import { sha256Hex } from '../digest.ts';
import { firstIssue } from '../errors.ts';
import type { GatewayEvents } from '../events.ts';
import type { Campaign, CampaignDevice, FirmwareImage, Store } from '../store/index.ts';
import { FirmwareError } from './errors.ts';
import { checkVendorKey, parseFirmwareManifest, verifyVendorSignature } from './manifest.ts';

export const campaignSettingsSchema = z.strictObject({
  /** Only devices of this segment (else every segment). */
  segment: z.string().min(1).max(64).optional(),
  /** Only devices that report one of these versions now (else any version but the target). */
  versions: z.array(z.string().min(1).max(32)).min(1).optional(),
  /** The first stage: this share of the targets (at least one device); the rest follow once it is done. */
  canaryPercent: z.number().min(1).max(100).default(10),
  /** Halt the campaign when more than this share of the finished devices failed... */
  maxFailurePercent: z.number().min(0).max(100).default(10),
  /** ...once at least this many have finished (one early failure alone does not halt a big campaign). */
  minSample: z.number().int().min(1).max(100_000).default(5),
  /** Devices are told only inside this weekly window, in the site's local time. */
  window: z
    .strictObject({
      days: z.array(z.number().int().min(0).max(6)).min(1),
      fromHour: z.number().int().min(0).max(23),
      toHour: z.number().int().min(0).max(24),
      utcOffsetMinutes: z.number().int().min(-840).max(840).default(0),
    })
    .optional(),
});
export type CampaignSettings = z.infer<typeof campaignSettingsSchema>;

export interface CampaignView {
  campaign: Campaign;
  image: FirmwareImage;
  settings: CampaignSettings;
  counts: Record<CampaignDevice['status'], number>;
  devices: CampaignDevice[];
}

export interface FirmwareDeps {
  config: Config;
  store: Store;
  audit: AuditLog;
  clock: Clock /** Where an alert is announced to flows (absent in a CLI process). */;
  events?: GatewayEvents;
}

/** The command a sensor finds on its next message (downlink queue): where to fetch what. */
export interface FirmwareNotice {
  type: 'firmware';
  path: string;
  version: string;
  digest: string;
  size: number;
}

/**
 * Sensor firmware: vendor keys per device class, images verified on upload and stored once under their digest,
 * and campaigns — targets by class/segment/version, a canary stage then the rest, a weekly window, pause and
 * resume, and an automatic halt when failures pass the threshold. Sensors are told through the downlink queue,
 * fetch `coaps://…/fw/<digest>` block-wise over their DTLS session, and report the version they run.
 */
/** A device whose behaviour is about to change: told to fetch an image, or reporting the outcome. */
export interface FirmwareChange {
  deviceId: string;
  campaign: number;
  phase: 'notified' | 'reported';
}

export class FirmwareService {
  private readonly changeListeners = new Set<(c: FirmwareChange) => void>();

  constructor(private readonly deps: FirmwareDeps) {}

  /**
   * Tells `listener` (behaviour monitoring) about devices a campaign is changing, after the change committed;
   * the new firmware's traffic is then expected, not an anomaly. Returns the unsubscribe function.
   */
  onDeviceChange(listener: (c: FirmwareChange) => void): () => void {
    this.changeListeners.add(listener);
    return () => this.changeListeners.delete(listener);
  }

  private announce(c: FirmwareChange): void {
    for (const l of this.changeListeners) {
      try {
        l(c);
      } catch {
        // a listener's failure is its own; the campaign goes on
      }
    }
  }

  private get dir() {
    return join(this.deps.config.dataDir, 'firmware');
  }

  private now() {
    return isoTime(this.deps.clock);
  }

  addVendorKey(vendor: string, deviceClass: string, pem: string, actor: string): void {
    checkVendorKey(pem);
    const { store, audit } = this.deps;
    store.transaction(() => {
      store.firmware.putVendorKey(vendor, deviceClass, pem, this.now());
      audit.append({ actor, action: 'firmware.vendor-key', target: `${vendor}/${deviceClass}`, details: {} });
    });
  }

  /** Verifies the vendor's signature and the image against the manifest; stores the image once. */
  upload(imageBytes: Buffer, manifestBytes: Buffer, signature: Buffer, actor: string): FirmwareImage {
    const m = parseFirmwareManifest(manifestBytes);
    const key = this.deps.store.firmware.vendorKey(m.vendor, m.class);
    if (!key) {
      throw new FirmwareError(
        'ERR_FIRMWARE_UNKNOWN_VENDOR',
        `no vendor key for ${m.vendor}/${m.class} (firmware vendor add)`,
      );
    }
    verifyVendorSignature(manifestBytes, signature, key);
    if (imageBytes.length !== m.size) {
      throw new FirmwareError(
        'ERR_FIRMWARE_INVALID',
        `the image is ${imageBytes.length} bytes, the manifest says ${m.size}`,
      );
    }
    if (sha256Hex(imageBytes) !== m.digest) {
      throw new FirmwareError(
        'ERR_FIRMWARE_INVALID',
        'the image does not match the digest in the signed manifest',
      );
    }
    const existing = this.deps.store.firmware.image(m.digest);
    if (existing) return existing; // stored once
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const file = join(this.dir, m.digest);
    if (!existsSync(file)) {
      writeFileSync(`${file}.tmp`, imageBytes, { mode: 0o600 });
      renameSync(`${file}.tmp`, file);
    }
    const image: FirmwareImage = {
      digest: m.digest,
      vendor: m.vendor,
      deviceClass: m.class,
      version: m.version,
      size: m.size,
      severity: m.severity,
      manifest: manifestBytes.toString('utf8'),
      createdAt: this.now(),
    };
    try {
      this.deps.store.transaction(() => {
        this.deps.store.firmware.insertImage(image);
        this.deps.audit.append({
          actor,
          action: 'firmware.upload',
          target: m.digest,
          details: {
            vendor: m.vendor,
            class: m.class,
            version: m.version,
            size: m.size,
            severity: m.severity,
          },
        });
      });
    } catch (err) {
      if (/UNIQUE/.test(String(err))) {
        throw new FirmwareError(
          'ERR_FIRMWARE_CONFLICT',
          `${m.vendor}/${m.class} ${m.version} exists with other bytes`,
        );
      }
      throw err;
    }
    return image;
  }

  images(): FirmwareImage[] {
    return this.deps.store.firmware.images();
  }

  createCampaign(digest: string, input: unknown, actor: string): CampaignView {
    const image = this.deps.store.firmware.image(digest);
    if (!image) throw new FirmwareError('ERR_FIRMWARE_NOT_FOUND', `no firmware image ${digest}`);
    const parsed = campaignSettingsSchema.safeParse(input);
    if (!parsed.success) {
      throw new FirmwareError('ERR_FIRMWARE_INVALID', firstIssue(parsed.error, 'settings'));
    }
    const settings = parsed.data;
    const targets = this.deps.store.devices
      .list({ state: 'active' })
      .filter(
        (d) =>
          d.type === image.deviceClass &&
          d.firmwareVersion !== image.version &&
          (settings.segment === undefined || d.segment === settings.segment) &&
          (settings.versions === undefined || settings.versions.includes(d.firmwareVersion ?? '')),
      );
    if (targets.length === 0) {
      throw new FirmwareError(
        'ERR_FIRMWARE_STATE',
        `no active ${image.deviceClass} device needs ${image.version}`,
      );
    }
    const canary = Math.max(1, Math.ceil((targets.length * settings.canaryPercent) / 100));
    const now = this.now();
    const id = this.deps.store.transaction(() => {
      const id = this.deps.store.firmware.insertCampaign({
        image: digest,
        state: 'running',
        settings: JSON.stringify(settings),
        actor,
        reason: null,
        createdAt: now,
        updatedAt: now,
      });
      for (const [i, d] of targets.entries()) {
        this.deps.store.firmware.addMember({
          campaignId: id,
          deviceId: d.id,
          stage: i < canary ? 'canary' : 'rest',
          status: 'pending',
          fromVersion: d.firmwareVersion,
          error: null,
          updatedAt: now,
        });
      }
      this.deps.audit.append({
        actor,
        action: 'firmware.campaign.create',
        target: String(id),
        details: { image: digest, version: image.version, devices: targets.length, canary, ...settings },
      });
      return id;
    });
    return this.view(id);
  }

  view(id: number): CampaignView {
    const campaign = this.deps.store.firmware.campaign(id);
    if (!campaign) throw new FirmwareError('ERR_FIRMWARE_NOT_FOUND', `no campaign ${id}`);
    const image = this.deps.store.firmware.image(campaign.image) as FirmwareImage;
    const devices = this.deps.store.firmware.members(id);
    const counts = { pending: 0, notified: 0, fetching: 0, succeeded: 0, failed: 0 };
    for (const d of devices) counts[d.status]++;
    return {
      campaign,
      image,
      settings: campaignSettingsSchema.parse(JSON.parse(campaign.settings)),
      counts,
      devices,
    };
  }

  campaigns(): Campaign[] {
    return this.deps.store.firmware.campaigns();
  }

  setPaused(id: number, paused: boolean, actor: string): CampaignView {
    const c = this.view(id).campaign;
    const from = paused ? 'running' : 'paused';
    if (c.state !== from)
      throw new FirmwareError('ERR_FIRMWARE_STATE', `campaign ${id} is ${c.state}, not ${from}`);
    this.deps.store.transaction(() => {
      this.deps.store.firmware.setCampaignState(id, paused ? 'paused' : 'running', null, this.now());
      this.deps.audit.append({
        actor,
        action: paused ? 'firmware.campaign.pause' : 'firmware.campaign.resume',
        target: String(id),
        details: {},
      });
    });
    return this.view(id);
  }

  private inWindow(s: CampaignSettings, now: number): boolean {
    if (!s.window) return true;
    const local = new Date(now + s.window.utcOffsetMinutes * 60_000);
    const h = local.getUTCHours();
    const { fromHour, toHour } = s.window;
    const hours = fromHour <= toHour ? h >= fromHour && h < toHour : h >= fromHour || h < toHour;
    return s.window.days.includes(local.getUTCDay()) && hours;
  }

  /**
   * Tells the devices whose turn it is: running campaigns, highest severity first, inside their window; the
   * canary stage first, the rest once every canary device has finished. Returns how many were told.
   */
  tick(): number {
    const { store } = this.deps;
    let told = 0;
    for (const c of store.firmware.campaigns('running')) {
      const v = this.view(c.id);
      if (!this.inWindow(v.settings, this.deps.clock.now())) continue;
      const canaryOpen = v.devices.some(
        (d) => d.stage === 'canary' && d.status !== 'succeeded' && d.status !== 'failed',
      );
      const due = v.devices.filter((d) => d.status === 'pending' && (d.stage === 'canary' || !canaryOpen));
      if (due.length === 0) continue;
      const notice: FirmwareNotice = {
        type: 'firmware',
        path: `/fw/${v.image.digest}`,
        version: v.image.version,
        digest: v.image.digest,
        size: v.image.size,
      };
      const now = this.now();
      store.transaction(() => {
        for (const d of due) {
          store.downlink.enqueue({
            deviceId: d.deviceId,
            payload: Buffer.from(JSON.stringify(notice)),
            contentFormat: 50,
            receivedAt: now,
          });
          store.firmware.setMember(c.id, d.deviceId, 'notified', null, now);
        }
      });
      for (const d of due) this.announce({ deviceId: d.deviceId, campaign: c.id, phase: 'notified' });
      told += due.length;
    }
    return told;
  }

  /** The image for a device that was told to fetch it (and nobody else); marks it fetching. */
  fetch(deviceId: string, digest: string): Buffer {
    const m = this.deps.store.firmware.openMembership(deviceId);
    const c = m && this.deps.store.firmware.campaign(m.campaignId);
    if (!m || !c || c.image !== digest) {
      throw new FirmwareError(
        'ERR_FIRMWARE_STATE',
        `device ${deviceId} has no campaign for ${digest.slice(0, 12)}`,
      );
    }
    if (m.status === 'notified')
      this.deps.store.firmware.setMember(m.campaignId, deviceId, 'fetching', null, this.now());
    return readFileSync(join(this.dir, digest));
  }

  /**
   * The device says what it runs now (or that it failed). Success is the target version; anything else is a
   * failure, recorded per device. Then the campaign halts if failures passed the threshold, or completes.
   */
  report(
    deviceId: string,
    r: { version?: string; result?: 'ok' | 'failed'; error?: string },
  ): CampaignDevice['status'] {
    const { store, audit } = this.deps;
    // A halted campaign tells and serves nobody more, but devices already flashing still report their outcome.
    const m = store.firmware.openMembership(deviceId, ['running', 'paused', 'halted']);
    if (!m)
      throw new FirmwareError('ERR_FIRMWARE_STATE', `device ${deviceId} has no firmware update in progress`);
    const v = this.view(m.campaignId);
    const ok = r.result !== 'failed' && r.version === v.image.version;
    const error = ok
      ? null
      : (r.error ?? `reports ${r.version ?? 'no version'}, expected ${v.image.version}`).slice(0, 300);
    const now = this.now();
    store.transaction(() => {
      store.firmware.setMember(m.campaignId, deviceId, ok ? 'succeeded' : 'failed', error, now);
      if (r.version) store.devices.setFirmwareVersion(deviceId, r.version, now);
      audit.append({
        actor: `device:${deviceId}`,
        action: ok ? 'firmware.update.succeeded' : 'firmware.update.failed',
        target: deviceId,
        details: { campaign: m.campaignId, version: r.version ?? null, expected: v.image.version, error },
      });
      this.evaluate(m.campaignId, now);
    });
    this.announce({ deviceId, campaign: m.campaignId, phase: 'reported' });
    return ok ? 'succeeded' : 'failed';
  }

  private evaluate(id: number, now: string): void {
    const { store, audit } = this.deps;
    const v = this.view(id);
    const done = v.counts.succeeded + v.counts.failed;
    const failedPct = done === 0 ? 0 : (v.counts.failed / done) * 100;
    if (
      v.campaign.state === 'running' &&
      done >= v.settings.minSample &&
      failedPct > v.settings.maxFailurePercent
    ) {
      const reason = `${v.counts.failed} of ${done} devices failed (${failedPct.toFixed(1)} %, more than ${v.settings.maxFailurePercent} %)`;
      store.firmware.setCampaignState(id, 'halted', reason, now);
      audit.append({
        actor: 'system',
        action: 'firmware.campaign.halt',
        target: String(id),
        details: { reason },
      });
      raiseAlert(this.deps, {
        deviceId: null,
        severity: 'high',
        kind: 'firmware.campaign_halted',
        explanation: `Firmware campaign ${id} (${v.image.deviceClass} ${v.image.version}) halted: ${reason}`,
        evidence: { campaign: id, ...v.counts },
        dedupeKey: `firmware.campaign_halted:${id}`,
      });
      return;
    }
    if (done === v.devices.length && v.campaign.state !== 'halted') {
      store.firmware.setCampaignState(id, 'completed', null, now);
      audit.append({
        actor: 'system',
        action: 'firmware.campaign.complete',
        target: String(id),
        details: v.counts,
      });
    }
  }
}

/** Tells due devices every `intervalMs` in the running gateway (campaigns made with the CLI included). */
export function startFirmwareScheduler(
  firmware: FirmwareService,
  onError: (err: unknown) => void,
  intervalMs = 2000,
): { close(): void } {
  const timer = setInterval(() => {
    try {
      firmware.tick();
    } catch (err) {
      onError(err);
    }
  }, intervalMs);
  timer.unref();
  return { close: () => clearInterval(timer) };
}
