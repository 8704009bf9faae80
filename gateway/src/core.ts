import { chmodSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { AuditLog, type AuditSealing, sealingFrom, type VerifyResult } from './audit/index.ts';
import type { Clock } from './clock.ts';
import type { Config } from './config/index.ts';
import { checkDataDirectory } from './config/local-files.ts';
import { GatewayEvents } from './events.ts';
import { FirmwareService } from './firmware/index.ts';
import { IdentityError, IdentityService, RevocationService } from './identity/index.ts';
import { type Keystore, openKeystore } from './keystore/index.ts';
import { PolicyService } from './policy/service.ts';
import { SegmentationService, syncSegments } from './segmentation/index.ts';
import {
  type ActivityBucket,
  type Alert,
  type AuditRow,
  DATABASE_FILE,
  type DeviceState,
  Store,
} from './store/index.ts';
import { ControlTokens, UiSessions, UserService } from './users/index.ts';
import { VERSION } from './version.ts';

export interface GatewayStatus {
  version: string;
  uptimeSeconds: number;
  store: 'ok' | 'error';
  keystore: { backend: 'software' | 'tpm2'; hardwareBacked: boolean };
  uplink: { configured: boolean; queueDepth: number };
  /** inForce: the hash of the ruleset last applied successfully. */
  firewall: { enforce: boolean; inForce: string | null };
  devices: Record<DeviceState, number>;
}

/**
 * The one service layer the CLI, the UI and the control API all call: it owns the store and the audit log.
 * Listeners (UI, DTLS) are added on top of it by the gateway process.
 */
export class Core {
  readonly audit: AuditLog;
  /** What happens in this process, for the control API's event stream. */
  readonly events = new GatewayEvents();
  private readonly startedAt: number;

  private readonly identityService: IdentityService | null;
  private segmentationService: SegmentationService | undefined;
  private userService: UserService | undefined;
  private firmwareService: FirmwareService | undefined;
  private revocationService: RevocationService | undefined;
  private policyService: PolicyService | undefined;
  private controlTokenService: ControlTokens | undefined;
  private uiSessionService: UiSessions | undefined;

  private constructor(
    readonly config: Config,
    readonly store: Store,
    readonly clock: Clock,
    readonly keystore: Keystore | null,
  ) {
    // With a keystore the audit head is keyed and anchored in its counter (docs/audit.md).
    this.audit = new AuditLog(store, clock, keystore ? sealingFrom(keystore) : undefined);
    this.startedAt = clock.now();
    this.identityService = keystore
      ? new IdentityService(store, keystore, this.audit, clock, this.events)
      : null;
    // Devices reference segments: the store mirrors the configured ones on every writable open.
    if (keystore) syncSegments(store, config.segments, new Date(clock.now()).toISOString());
  }

  /** Read-only opens (audit verify/export) need no keystore and change nothing. */
  static open(config: Config, clock: Clock, options: { readonly?: boolean } = {}): Core {
    if (!options.readonly) {
      mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
      // Checked again now that it exists (someone may have made it between the config's check and mkdir),
      // then closed to everyone else: it holds the database and, with the software backend, the keys.
      checkDataDirectory(config.dataDir);
      if (statSync(config.dataDir).mode & 0o077) chmodSync(config.dataDir, 0o700);
    }
    const store = Store.open(join(config.dataDir, DATABASE_FILE), {
      synchronous: config.store.synchronous,
      readonly: options.readonly ?? false,
    });
    try {
      return new Core(config, store, clock, options.readonly ? null : openKeystore(config));
    } catch (err) {
      store.close();
      throw err;
    }
  }

  get identity(): IdentityService {
    if (!this.identityService) {
      throw new IdentityError('ERR_IDENTITY_STATE', 'the store was opened read-only');
    }
    return this.identityService;
  }

  /** Revocation lists of the trust anchors (certificate sensors). */
  get revocation(): RevocationService {
    this.revocationService ??= new RevocationService({
      store: this.store,
      audit: this.audit,
      identity: this.identity,
      clock: this.clock,
    });
    return this.revocationService;
  }

  /** Accounts of the technician UI. */
  get users(): UserService {
    this.userService ??= new UserService(
      this.store,
      this.keystore as NonNullable<Core['keystore']>,
      this.audit,
      this.clock,
    );
    return this.userService;
  }

  get segmentation(): SegmentationService {
    this.segmentationService ??= new SegmentationService({
      config: this.config,
      store: this.store,
      audit: this.audit,
      identity: this.identity,
      clock: this.clock,
      events: this.events,
    });
    return this.segmentationService;
  }

  /** Device profiles: the per-message decision of the data path, `policy show/test`, profile assignment. */
  get policy(): PolicyService {
    this.policyService ??= new PolicyService({
      config: this.config.policy,
      store: this.store,
      audit: this.audit,
      clock: this.clock,
      // Through identity, so the data path's next review sees a lifted rate limit (its change stamp moves).
      transact: (fn) => this.identity.transact(fn),
    });
    return this.policyService;
  }

  /** Sensor firmware images and campaigns. */
  get firmware(): FirmwareService {
    this.firmwareService ??= new FirmwareService({
      config: this.config,
      store: this.store,
      audit: this.audit,
      clock: this.clock,
      events: this.events,
    });
    return this.firmwareService;
  }

  /** Tokens of the control socket (flows): created and revoked by admins, audited. */
  get controlTokens(): ControlTokens {
    this.controlTokenService ??= new ControlTokens(this.store, this.audit, this.clock);
    return this.controlTokenService;
  }

  /** Server-side sessions of the technician UI. */
  get uiSessions(): UiSessions {
    this.uiSessionService ??= new UiSessions(this.store, this.clock);
    return this.uiSessionService;
  }

  /** Stored alerts, newest first: the open ones unless `open` is undefined; of one device with `deviceId`. */
  alerts(filter: { open?: boolean; deviceId?: string } = {}): Alert[] {
    return this.store.alerts.list(filter);
  }

  /** Open and high alerts, and a stamp that changes with any alert (the live views poll it). */
  alertSummary(): { open: number; high: number; stamp: string } {
    return this.store.alerts.openSummary();
  }

  /** A device's activity buckets since an ISO time (the charts). */
  deviceActivity(deviceId: string, sinceIso: string): ActivityBucket[] {
    return this.store.activity.since(deviceId, sinceIso);
  }

  /** Audit rows from `fromSeq` in order, details as stored (the API pages through them). */
  auditRows(fromSeq = 1): IterableIterator<AuditRow> {
    return this.store.audit.iterate(fromSeq);
  }

  /** Audit rows newest first, each filter a substring of its column (the audit and device pages). */
  searchAudit(f: Parameters<Store['audit']['search']>[0]): AuditRow[] {
    return this.store.audit.search(f);
  }

  /** Whether the audit head is keyed (then `audit verify` needs the keystore to check it). */
  auditHeadKeyed(): boolean {
    return Boolean(this.store.audit.head()?.mac);
  }

  /** Verifies the chain, and with `sealing` the keyed head and checkpoints, without changing anything. */
  verifyAudit(sealing?: AuditSealing): VerifyResult {
    return new AuditLog(this.store, this.clock, sealing, { readonly: true }).verify();
  }

  /** A person acknowledges an alert (audited with them); the next finding of its kind opens a new one. */
  acknowledgeAlert(id: number, actor: string): Alert {
    return this.store.transaction(() => {
      const alert = this.store.alerts.acknowledge(id, actor, new Date(this.clock.now()).toISOString());
      this.audit.append({
        actor,
        action: 'alert.acknowledge',
        target: String(id),
        details: { kind: alert.kind, deviceId: alert.deviceId },
      });
      return alert;
    });
  }

  status(): GatewayStatus {
    const storeOk = this.store.healthy();
    return {
      version: VERSION,
      uptimeSeconds: Math.floor((this.clock.now() - this.startedAt) / 1000),
      store: storeOk ? 'ok' : 'error',
      keystore: {
        backend: this.config.keystore.backend,
        hardwareBacked: this.config.keystore.backend === 'tpm2',
      },
      uplink: {
        configured: this.config.uplink !== undefined,
        queueDepth: storeOk ? this.store.queue.depth() : 0,
      },
      firewall: {
        enforce: this.config.firewall.enforce,
        inForce: storeOk ? (this.store.rulesets.lastApplied()?.hash ?? null) : null,
      },
      devices: storeOk
        ? this.store.devices.countByState()
        : { pending: 0, active: 0, quarantined: 0, decommissioned: 0 },
    };
  }

  close(): void {
    // Failed logins of the last minute are audited per source when their minute ends: write them first.
    this.userService?.close();
    // Refused messages, likewise aggregated per device and rule per minute.
    this.policyService?.close();
    this.store.close();
  }
}
