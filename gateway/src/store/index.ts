import { type Db, type OpenOptions, openDatabase } from './database.ts';
import { ActivityRepository } from './repositories/activity.ts';
import { AlertRepository } from './repositories/alerts.ts';
import { AllowListRepository } from './repositories/allowlists.ts';
import { BaselineRepository, RateLimitRepository } from './repositories/anomaly.ts';
import { AuditRepository } from './repositories/audit.ts';
import { BackupRepository } from './repositories/backup.ts';
import { ControlTokenRepository } from './repositories/control-tokens.ts';
import { CredentialRepository } from './repositories/credentials.ts';
import { DeviceRepository } from './repositories/devices.ts';
import { DownlinkRepository } from './repositories/downlink.ts';
import { FirewallRulesetRepository } from './repositories/firewall-rulesets.ts';
import { FirmwareRepository } from './repositories/firmware.ts';
import { FleetRepository } from './repositories/fleet.ts';
import { MudControllerRepository } from './repositories/mud-controllers.ts';
import { PullSourceRepository } from './repositories/pull-sources.ts';
import { QueueRepository } from './repositories/queue.ts';
import { SegmentRepository } from './repositories/segments.ts';
import { TrustAnchorCrlRepository, TrustAnchorRepository } from './repositories/trust-anchors.ts';
import { UiSessionRepository } from './repositories/ui-sessions.ts';
import { UpdateRepository } from './repositories/updates.ts';
import { UserRepository } from './repositories/users.ts';

export { type Db, StoreError } from './database.ts';
export { LATEST_SCHEMA_VERSION } from './migrations.ts';
export type { ActivityBucket } from './repositories/activity.ts';
export type { Alert, NewAlert, Severity } from './repositories/alerts.ts';
export type { StoredAllowList } from './repositories/allowlists.ts';
export type { RateLimit } from './repositories/anomaly.ts';
export type { AuditCheckpointRow, AuditHeadRow, AuditRow } from './repositories/audit.ts';
export type { WrappedSecretRow } from './repositories/backup.ts';
export type { StoredControlToken } from './repositories/control-tokens.ts';
export type { Credential } from './repositories/credentials.ts';
export type {
  CredentialKind,
  Device,
  DeviceState,
  NewDevice,
  Quarantine,
  QuarantineMode,
  SessionDevice,
} from './repositories/devices.ts';
export type { DownlinkCommand } from './repositories/downlink.ts';
export type { RulesetStatus, StoredRuleset } from './repositories/firewall-rulesets.ts';
export type {
  Campaign,
  CampaignDevice,
  CampaignDeviceStatus,
  CampaignState,
  FirmwareImage,
} from './repositories/firmware.ts';
export type {
  FleetApplied,
  FleetLock,
  FleetProfile,
  FleetRefusal,
  FleetTrust,
} from './repositories/fleet.ts';
export type { PullSource } from './repositories/pull-sources.ts';
export type { QueuedMessage } from './repositories/queue.ts';
export type { Segment, SegmentRole } from './repositories/segments.ts';
export type { TrustAnchor, TrustAnchorCrl } from './repositories/trust-anchors.ts';
export type { StoredUiSession } from './repositories/ui-sessions.ts';
export type { UpdateRecord, UpdateStatus } from './repositories/updates.ts';
export type { Role, User } from './repositories/users.ts';

export const DATABASE_FILE = 'portcullis.db';

/** One SQLite database with a repository per aggregate. */
export class Store {
  private depth = 0;
  private readonly afterCommits: Array<() => void> = [];
  readonly devices: DeviceRepository;
  readonly credentials: CredentialRepository;
  readonly segments: SegmentRepository;
  readonly users: UserRepository;
  readonly alerts: AlertRepository;
  readonly queue: QueueRepository;
  readonly audit: AuditRepository;
  readonly trustAnchors: TrustAnchorRepository;
  readonly trustAnchorCrls: TrustAnchorCrlRepository;
  readonly downlink: DownlinkRepository;
  readonly pullSources: PullSourceRepository;
  readonly allowLists: AllowListRepository;
  readonly mudControllers: MudControllerRepository;
  readonly rulesets: FirewallRulesetRepository;
  readonly baselines: BaselineRepository;
  readonly rateLimits: RateLimitRepository;
  readonly activity: ActivityRepository;
  readonly updates: UpdateRepository;
  readonly firmware: FirmwareRepository;
  readonly fleet: FleetRepository;
  readonly controlTokens: ControlTokenRepository;
  readonly uiSessions: UiSessionRepository;
  readonly backup: BackupRepository;

  // Private: SQL lives in the repositories above, nowhere else (tests that tamper open the file themselves).
  private constructor(private readonly db: Db) {
    this.devices = new DeviceRepository(db);
    this.credentials = new CredentialRepository(db);
    this.segments = new SegmentRepository(db);
    this.users = new UserRepository(db);
    this.alerts = new AlertRepository(db);
    this.queue = new QueueRepository(db);
    this.audit = new AuditRepository(db);
    this.trustAnchors = new TrustAnchorRepository(db);
    this.trustAnchorCrls = new TrustAnchorCrlRepository(db);
    this.downlink = new DownlinkRepository(db);
    this.pullSources = new PullSourceRepository(db);
    this.allowLists = new AllowListRepository(db);
    this.mudControllers = new MudControllerRepository(db);
    this.rulesets = new FirewallRulesetRepository(db);
    this.baselines = new BaselineRepository(db);
    this.rateLimits = new RateLimitRepository(db);
    this.activity = new ActivityRepository(db);
    this.updates = new UpdateRepository(db);
    this.firmware = new FirmwareRepository(db);
    this.fleet = new FleetRepository(db);
    this.controlTokens = new ControlTokenRepository(db);
    this.uiSessions = new UiSessionRepository(db);
    this.backup = new BackupRepository(db);
  }

  static open(file: string, options: OpenOptions = {}): Store {
    return new Store(openDatabase(file, options));
  }

  /** A transaction is open on this connection (what is read now may yet be rolled back). */
  get inTransaction(): boolean {
    return this.db.inTransaction;
  }

  /** Run `fn` in one IMMEDIATE transaction: all of it survives a crash, or none of it. */
  transaction<T>(fn: () => T): T {
    const pending = this.afterCommits.length;
    this.depth++;
    let result: T;
    try {
      result = this.db.transaction(fn).immediate();
    } catch (err) {
      // What the rolled-back part asked to announce never happened.
      this.afterCommits.length = pending;
      throw err;
    } finally {
      this.depth--;
    }
    if (this.depth === 0) {
      const due = this.afterCommits.splice(0);
      for (const f of due) f();
    }
    return result;
  }

  /**
   * Runs `fn` once what was just written is committed: now outside `transaction`, at the outermost commit inside
   * one, never when it rolls back — so an event announces only what a reader can find.
   */
  afterCommit(fn: () => void): void {
    if (this.depth === 0) fn();
    else this.afterCommits.push(fn);
  }

  /** Changes whenever another connection (e.g. the CLI in its own process) commits to the database. */
  dataVersion(): number {
    return this.db.pragma('data_version', { simple: true }) as number;
  }

  healthy(): boolean {
    try {
      this.db.prepare('SELECT 1').get();
      return true;
    } catch {
      return false;
    }
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}
