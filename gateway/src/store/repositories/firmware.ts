import type { Db } from '../database.ts';

export interface FirmwareImage {
  digest: string;
  vendor: string;
  deviceClass: string;
  version: string;
  size: number;
  /** CVSS base score of what the image fixes (0 when none was given): campaigns run highest first. */
  severity: number;
  manifest: string;
  createdAt: string;
}

export type CampaignState = 'running' | 'paused' | 'halted' | 'completed';
export type CampaignDeviceStatus = 'pending' | 'notified' | 'fetching' | 'succeeded' | 'failed';

export interface Campaign {
  id: number;
  image: string;
  state: CampaignState;
  settings: string;
  actor: string;
  reason: string | null;
  createdAt: string;
  updatedAt: string;
}

export interface CampaignDevice {
  campaignId: number;
  deviceId: string;
  stage: 'canary' | 'rest';
  status: CampaignDeviceStatus;
  fromVersion: string | null;
  error: string | null;
  updatedAt: string;
}

const image = (r: Record<string, unknown>): FirmwareImage => ({
  digest: r.digest as string,
  vendor: r.vendor as string,
  deviceClass: r.device_class as string,
  version: r.version as string,
  size: r.size as number,
  severity: r.severity as number,
  manifest: r.manifest as string,
  createdAt: r.created_at as string,
});
const campaign = (r: Record<string, unknown>): Campaign => ({
  id: r.id as number,
  image: r.image as string,
  state: r.state as CampaignState,
  settings: r.settings as string,
  actor: r.actor as string,
  reason: (r.reason as string | null) ?? null,
  createdAt: r.created_at as string,
  updatedAt: r.updated_at as string,
});
const member = (r: Record<string, unknown>): CampaignDevice => ({
  campaignId: r.campaign_id as number,
  deviceId: r.device_id as string,
  stage: r.stage as 'canary' | 'rest',
  status: r.status as CampaignDeviceStatus,
  fromVersion: (r.from_version as string | null) ?? null,
  error: (r.error as string | null) ?? null,
  updatedAt: r.updated_at as string,
});

export class FirmwareRepository {
  constructor(private readonly db: Db) {}

  putVendorKey(vendor: string, deviceClass: string, pem: string, now: string): void {
    this.db
      .prepare(
        `INSERT INTO firmware_vendor_keys (vendor, device_class, public_key, created_at) VALUES (?, ?, ?, ?)
         ON CONFLICT(vendor, device_class) DO UPDATE SET public_key = excluded.public_key, created_at = excluded.created_at`,
      )
      .run(vendor, deviceClass, pem, now);
  }

  vendorKey(vendor: string, deviceClass: string): string | undefined {
    return (
      this.db
        .prepare('SELECT public_key FROM firmware_vendor_keys WHERE vendor = ? AND device_class = ?')
        .get(vendor, deviceClass) as { public_key: string } | undefined
    )?.public_key;
  }

  insertImage(i: FirmwareImage): void {
    this.db
      .prepare(
        `INSERT INTO firmware_images (digest, vendor, device_class, version, size, severity, manifest, created_at)
         VALUES (@digest, @vendor, @deviceClass, @version, @size, @severity, @manifest, @createdAt)`,
      )
      .run(i);
  }

  image(digest: string): FirmwareImage | undefined {
    const r = this.db.prepare('SELECT * FROM firmware_images WHERE digest = ?').get(digest);
    return r ? image(r as Record<string, unknown>) : undefined;
  }

  images(): FirmwareImage[] {
    return (
      this.db.prepare('SELECT * FROM firmware_images ORDER BY created_at').all() as Record<string, unknown>[]
    ).map(image);
  }

  insertCampaign(c: Omit<Campaign, 'id'>): number {
    return Number(
      this.db
        .prepare(
          `INSERT INTO firmware_campaigns (image, state, settings, actor, reason, created_at, updated_at)
           VALUES (@image, @state, @settings, @actor, @reason, @createdAt, @updatedAt)`,
        )
        .run(c).lastInsertRowid,
    );
  }

  campaign(id: number): Campaign | undefined {
    const r = this.db.prepare('SELECT * FROM firmware_campaigns WHERE id = ?').get(id);
    return r ? campaign(r as Record<string, unknown>) : undefined;
  }

  /** Highest severity first, then oldest. */
  campaigns(state?: CampaignState): Campaign[] {
    return (
      this.db
        .prepare(
          `SELECT c.* FROM firmware_campaigns c JOIN firmware_images i ON i.digest = c.image
           WHERE (@state IS NULL OR c.state = @state) ORDER BY i.severity DESC, c.id`,
        )
        .all({ state: state ?? null }) as Record<string, unknown>[]
    ).map(campaign);
  }

  setCampaignState(id: number, state: CampaignState, reason: string | null, now: string): void {
    this.db
      .prepare('UPDATE firmware_campaigns SET state = ?, reason = ?, updated_at = ? WHERE id = ?')
      .run(state, reason, now, id);
  }

  addMember(m: CampaignDevice): void {
    this.db
      .prepare(
        `INSERT INTO firmware_campaign_devices (campaign_id, device_id, stage, status, from_version, error, updated_at)
         VALUES (@campaignId, @deviceId, @stage, @status, @fromVersion, @error, @updatedAt)`,
      )
      .run(m);
  }

  members(campaignId: number): CampaignDevice[] {
    return (
      this.db
        .prepare('SELECT * FROM firmware_campaign_devices WHERE campaign_id = ? ORDER BY device_id')
        .all(campaignId) as Record<string, unknown>[]
    ).map(member);
  }

  /** The device's membership, told and not finished, in a campaign in one of `states`. */
  openMembership(
    deviceId: string,
    states: readonly CampaignState[] = ['running', 'paused'],
  ): CampaignDevice | undefined {
    const r = this.db
      .prepare(
        `SELECT m.* FROM firmware_campaign_devices m JOIN firmware_campaigns c ON c.id = m.campaign_id
         WHERE m.device_id = ? AND c.state IN (SELECT value FROM json_each(?)) AND m.status IN ('notified', 'fetching')
         ORDER BY m.campaign_id LIMIT 1`,
      )
      .get(deviceId, JSON.stringify(states));
    return r ? member(r as Record<string, unknown>) : undefined;
  }

  setMember(
    campaignId: number,
    deviceId: string,
    status: CampaignDeviceStatus,
    error: string | null,
    now: string,
  ): void {
    this.db
      .prepare(
        'UPDATE firmware_campaign_devices SET status = ?, error = ?, updated_at = ? WHERE campaign_id = ? AND device_id = ?',
      )
      .run(status, error, now, campaignId, deviceId);
  }
}
