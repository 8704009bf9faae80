import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  renameSync,
  rmSync,
  symlinkSync,
} from 'node:fs';
import { basename, join } from 'node:path';
import semver from 'semver';
import { raiseAlert } from '../alerts.ts';
import type { AuditLog } from '../audit/index.ts';
import { type Clock, isoTime } from '../clock.ts';
import type { Config } from '../config/index.ts';
import type { GatewayEvents } from '../events.ts';
import { DEFAULT_TCTI } from '../keystore/index.ts';
import type { Store, UpdateRecord } from '../store/index.ts';
import { VERSION } from '../version.ts';
import { extractRelease, readHeader } from './bundle.ts';
import { UpdateError } from './errors.ts';
import { checkSignature, loadReleaseKey, type Manifest, parseManifest } from './manifest.ts';
import { type RollbackCounter, TpmNvCounter } from './rollback-counter.ts';

export interface UpdateDeps {
  options: Config['updates'];
  store: Store;
  audit: AuditLog;
  clock: Clock;
  /** The version of the code running now (used when no release is linked yet). */
  runningVersion: string;
  arch?: string;
  /** Where one exists (the TPM), the counter that proves the store's floor was not rolled back. */
  counter?: RollbackCounter /** Where an alert is announced to flows (absent in a CLI process). */;
  events?: GatewayEvents;
}

export interface UpdateStatusView {
  current: string | null;
  releases: string[];
  /** The anti-rollback floor: bundles at or below it are refused. */
  highest: string;
  history: UpdateRecord[];
}

/**
 * A/B installation of signed gateway bundles: verify (signature, manifest, hardware, version floor) before a
 * byte is unpacked; unpack into a staging folder and check every file's hash; move it to
 * `releases/<version>`; switch the `current` link atomically; run the health check; keep it, or switch back and
 * remove it. Every outcome is recorded and audited.
 */
export class UpdateInstaller {
  constructor(private readonly deps: UpdateDeps) {}

  private get o() {
    return this.deps.options;
  }

  /** The linked release's version, if `current` points at `releases/<version>`. */
  currentVersion(): string | null {
    try {
      const v = basename(readlinkSync(this.o.currentLink));
      return semver.valid(v) === v ? v : null;
    } catch {
      return null;
    }
  }

  status(): UpdateStatusView {
    const releases = existsSync(this.o.releasesDir)
      ? readdirSync(this.o.releasesDir)
          .filter((d) => semver.valid(d) === d)
          .sort(semver.compare)
      : [];
    return {
      current: this.currentVersion(),
      releases,
      highest: this.floor(),
      history: this.deps.store.updates.history(),
    };
  }

  private floor(): string {
    const installed = this.currentVersion() ?? this.deps.runningVersion;
    const stored = this.deps.store.updates.highest();
    return stored && semver.gt(stored, installed) ? stored : installed;
  }

  /**
   * A TPM counter ahead of the value the store recorded means the store is an older copy: its floor cannot be
   * trusted, so nothing installs until a person looks (fail closed).
   */
  private checkCounter(): void {
    const c = this.deps.counter;
    if (!c) return;
    const inTpm = c.read();
    const recorded = this.deps.store.updates.counter();
    // A store that never kept an update (a fresh or reset gateway) has nothing to contradict the TPM with; the
    // linked release still sets the floor.
    const fresh = recorded === undefined && this.deps.store.updates.highest() === undefined;
    if (inTpm !== undefined && !fresh && (recorded === undefined || inTpm > recorded)) {
      throw new UpdateError(
        'ERR_UPDATE_DOWNGRADE',
        `the update record in the database (counter ${recorded ?? 'none'}) is older than the ${c.where} (${inTpm}): the database was restored from an older copy; refusing updates`,
      );
    }
  }

  /** Everything up to an installable manifest; throws (and changes nothing) otherwise. */
  async verify(bundle: string): Promise<Manifest> {
    if (!this.o.publicKeyFile) {
      throw new UpdateError(
        'ERR_UPDATE_CONFIG',
        'no release key is pinned (updates.publicKeyFile): nothing can be installed',
      );
    }
    const key = loadReleaseKey(readFileSync(this.o.publicKeyFile, 'utf8'));
    const header = await readHeader(bundle);
    if (!header.signature) throw new UpdateError('ERR_UPDATE_UNSIGNED', 'the bundle has no manifest.sig');
    checkSignature(header.manifestBytes, header.signature, key);
    const m = parseManifest(header.manifestBytes);
    const arch = this.deps.arch ?? process.arch;
    if (!(m.hardware as string[]).includes(arch)) {
      throw new UpdateError(
        'ERR_UPDATE_INCOMPATIBLE',
        `release ${m.version} is for ${m.hardware.join(', ')}, this is ${arch}`,
      );
    }
    this.checkCounter();
    const floor = this.floor();
    if (!semver.gt(m.version, floor)) {
      throw new UpdateError(
        'ERR_UPDATE_DOWNGRADE',
        `release ${m.version} is not newer than ${floor} (anti-rollback)`,
      );
    }
    const installed = this.currentVersion() ?? this.deps.runningVersion;
    if (semver.lt(installed, m.minVersion)) {
      throw new UpdateError(
        'ERR_UPDATE_INCOMPATIBLE',
        `release ${m.version} needs at least ${m.minVersion} installed (this is ${installed})`,
      );
    }
    return m;
  }

  /** `onPhase` hears when verification passed (installing, with the version) and when the health check starts. */
  async apply(
    bundle: string,
    actor: string,
    onPhase?: (phase: 'installing' | 'health-check', version: string) => void,
  ): Promise<{ version: string; previous: string | null }> {
    mkdirSync(this.o.releasesDir, { recursive: true, mode: 0o755 });
    const lockPath = join(this.o.releasesDir, '.update.lock');
    let lock: number;
    try {
      lock = openSync(lockPath, 'wx');
    } catch {
      throw new UpdateError('ERR_UPDATE_BUSY', `another update is in progress (${lockPath})`);
    }
    try {
      return await this.applyLocked(bundle, actor, onPhase);
    } finally {
      closeSync(lock);
      rmSync(lockPath, { force: true });
    }
  }

  private async applyLocked(
    bundle: string,
    actor: string,
    onPhase?: (phase: 'installing' | 'health-check', version: string) => void,
  ) {
    const previous = this.currentVersion();
    let m: Manifest;
    try {
      m = await this.verify(bundle);
    } catch (err) {
      this.refused(bundle, previous, actor, err);
      throw err;
    }
    onPhase?.('installing', m.version);
    const target = join(this.o.releasesDir, m.version);
    const staging = mkdtempSync(join(this.o.releasesDir, '.staging-'));
    try {
      if (existsSync(target)) throw new UpdateError('ERR_UPDATE_INVALID', `${target} already exists`);
      await extractRelease(bundle, m, staging);
      renameSync(join(staging, 'files'), target);
    } catch (err) {
      this.refused(bundle, previous, actor, err, m.version);
      throw err;
    } finally {
      rmSync(staging, { recursive: true, force: true });
    }
    this.link(target);
    onPhase?.('health-check', m.version);
    const health = await this.healthCheck(m.version);
    const now = isoTime(this.deps.clock);
    if (health.ok) {
      // The counter first: if the transaction below failed, the next attempt is refused (fail closed), never
      // a floor that silently did not rise.
      const counted = this.deps.counter?.increment();
      this.deps.store.transaction(() => {
        this.deps.store.updates.setHighest(m.version, now);
        if (counted !== undefined) this.deps.store.updates.setCounter(counted);
        this.deps.store.updates.record(
          { version: m.version, previous, status: 'installed', actor, error: null },
          now,
        );
        this.deps.audit.append({
          actor,
          action: 'update.install',
          target: m.version,
          details: { previous, files: Object.keys(m.files).length, notes: m.notes.slice(0, 200) },
        });
      });
      return { version: m.version, previous };
    }
    return this.undo(m.version, previous, target, health.reason, actor, now);
  }

  /** Unhealthy: the previous release comes back, the new one goes; recorded, audited and alerted. */
  private undo(
    version: string,
    previous: string | null,
    target: string,
    reason: string,
    actor: string,
    now: string,
  ): never {
    if (previous) this.link(join(this.o.releasesDir, previous));
    else rmSync(this.o.currentLink, { force: true });
    rmSync(target, { recursive: true, force: true });
    this.deps.store.transaction(() => {
      this.deps.store.updates.record({ version, previous, status: 'rolled-back', actor, error: reason }, now);
      this.deps.audit.append({
        actor,
        action: 'update.rollback',
        target: version,
        details: { restored: previous, reason },
      });
      raiseAlert(this.deps, {
        deviceId: null,
        severity: 'high',
        kind: 'update.rolled_back',
        explanation: `Release ${version} failed its health check and was rolled back to ${previous ?? 'nothing'}: ${reason}`,
        evidence: { version, previous },
        dedupeKey: `update.rolled_back:${version}`,
      });
    });
    throw new UpdateError(
      'ERR_UPDATE_HEALTH',
      `release ${version} failed its health check (${reason}); ${previous ?? 'nothing'} restored`,
    );
  }

  /**
   * Switches `current` back to the release before it (the newest kept release older than the linked one),
   * audited; the floor stays where it is (a rollback to a kept release is allowed, installing an older bundle
   * is not). The running code changes at the next restart.
   */
  rollback(actor: string): { version: string; previous: string } {
    const current = this.currentVersion();
    const earlier = this.status().releases.filter((v) => current !== null && semver.lt(v, current));
    const target = earlier.at(-1);
    if (!current || !target) {
      throw new UpdateError(
        'ERR_UPDATE_STATE',
        current
          ? `no release older than ${current} is kept in ${this.o.releasesDir}`
          : 'no release is linked',
      );
    }
    this.link(join(this.o.releasesDir, target));
    const now = isoTime(this.deps.clock);
    this.deps.store.transaction(() => {
      this.deps.store.updates.record(
        { version: target, previous: current, status: 'rolled-back', actor, error: 'rolled back by hand' },
        now,
      );
      this.deps.audit.append({ actor, action: 'update.revert', target, details: { from: current } });
    });
    return { version: target, previous: current };
  }

  /** Points `current` at `target` in one rename (a reader sees the old link or the new, never none). */
  private link(target: string): void {
    const tmp = `${this.o.currentLink}.new`;
    rmSync(tmp, { force: true });
    symlinkSync(target, tmp);
    renameSync(tmp, this.o.currentLink);
  }

  private async healthCheck(version: string): Promise<{ ok: true } | { ok: false; reason: string }> {
    const argv = (this.o.healthCommand ?? [process.execPath, '{current}/bin/portcullis.js', '--version']).map(
      (a) => a.replaceAll('{current}', this.o.currentLink).replaceAll('{version}', version),
    );
    const [cmd, ...args] = argv as [string, ...string[]];
    const { execa } = await import('execa');
    const r = await execa(cmd, args, {
      reject: false,
      timeout: this.o.healthDeadlineSeconds * 1000,
      env: { PORTCULLIS_EXPECTED_VERSION: version },
    });
    if (r.timedOut) return { ok: false, reason: `no answer within ${this.o.healthDeadlineSeconds} s` };
    if (r.exitCode !== 0) return { ok: false, reason: `health check exited ${r.exitCode ?? r.signal}` };
    if (!this.o.healthCommand && !String(r.stdout).includes(version)) {
      return {
        ok: false,
        reason: `the new release reports ${String(r.stdout).trim().slice(0, 40)}, not ${version}`,
      };
    }
    return { ok: true };
  }

  private refused(
    bundle: string,
    previous: string | null,
    actor: string,
    err: unknown,
    version = 'unknown',
  ): void {
    const e = err as { code?: string; message?: string };
    const now = isoTime(this.deps.clock);
    this.deps.store.transaction(() => {
      this.deps.store.updates.record(
        {
          version,
          previous,
          status: 'refused',
          actor,
          error: `${e.code ?? 'ERR'}: ${e.message ?? ''}`.slice(0, 500),
        },
        now,
      );
      this.deps.audit.append({
        actor,
        action: 'update.refused',
        target: basename(bundle),
        details: { code: e.code ?? null, reason: (e.message ?? '').slice(0, 300) },
      });
    });
  }
}

/** The installer of this gateway: its configuration, store and (with the TPM keystore) the TPM's counter. */
export function installerFor(core: {
  config: Config;
  store: Store;
  audit: AuditLog;
  clock: Clock;
  events?: GatewayEvents;
}): UpdateInstaller {
  return new UpdateInstaller({
    options: core.config.updates,
    store: core.store,
    audit: core.audit,
    clock: core.clock,
    events: core.events,
    runningVersion: VERSION,
    counter: rollbackCounterFor(core.config),
  });
}

/** The installer's view for status pages (nothing is changed). */
export function updateStatus(core: Parameters<typeof installerFor>[0]): UpdateStatusView {
  return installerFor(core).status();
}

/** The TPM's counter when the keystore is the TPM; none with the software keystore (the store's floor only). */
export function rollbackCounterFor(config: Config): RollbackCounter | undefined {
  return config.keystore.backend === 'tpm2'
    ? new TpmNvCounter(config.keystore.tcti ?? DEFAULT_TCTI)
    : undefined;
}
