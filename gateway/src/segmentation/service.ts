import { join } from 'node:path';
import { raiseAlert } from '../alerts.ts';
import type { AuditLog } from '../audit/index.ts';
import { type Clock, isoTime } from '../clock.ts';
import type { Config } from '../config/index.ts';
import type { GatewayEvents } from '../events.ts';
import type { IdentityService } from '../identity/index.ts';
import { isIpv4 } from '../net/ipv4.ts';
import type { Device, QuarantineMode, Segment, Store, StoredRuleset } from '../store/index.ts';
import { type AllowList, allowListSchema } from './allowlist.ts';
import { type ApplyTimings, FirewallApplier, ruleLines } from './applier.ts';
import { type CompiledRuleset, compileRuleset, SET } from './compiler.ts';
import { SegmentationError } from './errors.ts';
import { parseMud } from './mud.ts';
import { NameCache } from './resolver.ts';
import { type FirewallTools, systemFirewallTools } from './tools.ts';

export interface ApplyResult {
  hash: string;
  warnings: string[];
  timings: ApplyTimings;
  rules: number;
  setEntries: number;
}

export interface QuarantineResult {
  device: Device;
  /**
   * enforced: the kernel set changed before this returned; off: firewall.enforce is off (only the DTLS side
   * acts); no-address: the firewall does not know the device's address; failed: recorded, but the kernel call
   * failed (`error`) — a running gateway retries on its next reconcile.
   */
  firewall: 'enforced' | 'off' | 'no-address' | 'failed';
  error?: string;
}

/**
 * Segments, allow-lists (MUD), the ruleset, and quarantine. The one place that turns the store's state into
 * kernel state; the CLI, the gateway process (and later the UI, Node-RED and the anomaly engine) all call it.
 */
export class SegmentationService {
  readonly applier: FirewallApplier;
  private readonly names: NameCache;

  constructor(
    private readonly deps: {
      config: Config;
      store: Store;
      audit: AuditLog;
      identity: IdentityService;
      clock: Clock;
      tools?: FirewallTools;
      names?: NameCache;
      /** Where a failed apply's alert is announced to flows. */
      events?: GatewayEvents;
    },
  ) {
    this.applier = new FirewallApplier(
      deps.tools ?? systemFirewallTools(),
      join(deps.config.dataDir, 'firewall.lock'),
    );
    this.names = deps.names ?? new NameCache(undefined, () => deps.clock.now());
  }

  /** Every stored allow-list, validated again on the way out: a corrupt row stops the compile, never widens it. */
  allowLists(): AllowList[] {
    return this.deps.store.allowLists.list().map((row) => {
      const entries = allowListSchema.safeParse(JSON.parse(row.entries));
      if (!entries.success) {
        throw new SegmentationError(
          'ERR_FIREWALL_COMPILE',
          `the stored allow-list of ${row.deviceId} is invalid`,
        );
      }
      return {
        deviceId: row.deviceId,
        source: row.source,
        mudUrl: row.mudUrl,
        manufacturer: row.manufacturer,
        entries: entries.data,
      };
    });
  }

  /** Compiles the ruleset from the current state, resolving DNS names first when they are due. */
  async render(options: { refreshNames?: boolean } = {}): Promise<CompiledRuleset> {
    const { config, store } = this.deps;
    const lists = this.allowLists();
    const names = lists.flatMap((l) =>
      l.entries.flatMap((e) => (e.peer.kind === 'dns' ? [e.peer.name] : [])),
    );
    if (options.refreshNames || this.names.isStale(names, config.firewall.dnsRefreshSeconds * 1000)) {
      await this.names.refresh(names);
    }
    return compileRuleset({
      segments: config.segments,
      ports: { dtls: config.dtls.port, ui: config.ui.port },
      wanInterface: config.firewall.wanInterface,
      dtlsRateLimit: config.firewall.dtlsRateLimit,
      devices: store.devices.list(),
      allowLists: lists,
      controllers: store.mudControllers.list(),
      dns: this.names.snapshot(),
    });
  }

  /**
   * Compiles and applies. Every attempt is recorded with its hash and audited; a failure raises a high alert
   * and leaves the previous ruleset in force (the applier restores it).
   */
  async apply(actor: string, compiled?: CompiledRuleset): Promise<ApplyResult> {
    const r = compiled ?? (await this.render());
    const { store, audit, clock } = this.deps;
    const summary = {
      hash: r.hash,
      rules: r.iptables.split('\n').filter((l) => l.startsWith('-A ')).length,
      setEntries: r.sets.reduce((n, s) => n + s.entries.length, 0),
    };
    try {
      const timings = await this.applier.apply(r);
      store.transaction(() => {
        store.rulesets.record(
          { hash: r.hash, iptables: r.iptables, ipsets: r.ipsets, status: 'applied', error: null, actor },
          isoTime(clock),
        );
        audit.append({
          actor,
          action: 'firewall.apply',
          target: r.hash,
          details: { ...summary, warnings: r.warnings },
        });
      });
      return { ...summary, warnings: r.warnings, timings };
    } catch (err) {
      const e =
        err instanceof SegmentationError
          ? err
          : new SegmentationError('ERR_FIREWALL_APPLY', (err as Error).message, { cause: err });
      if (e.code === 'ERR_FIREWALL_BUSY') throw e;
      const status = e.code === 'ERR_FIREWALL_APPLY' ? 'rolled-back' : 'failed';
      store.transaction(() => {
        store.rulesets.record(
          { hash: r.hash, iptables: r.iptables, ipsets: r.ipsets, status, error: e.message, actor },
          isoTime(clock),
        );
        audit.append({
          actor,
          action: 'firewall.apply.failed',
          target: r.hash,
          details: { ...summary, code: e.code, error: e.message },
        });
        raiseAlert(this.deps, {
          deviceId: null,
          severity: 'high',
          kind: 'firewall.apply_failed',
          explanation: `Firewall ruleset ${r.hash.slice(0, 12)} was not applied (${e.code}): ${e.message}`,
          evidence: { hash: r.hash, code: e.code },
          dedupeKey: 'firewall.apply_failed',
        });
      });
      throw e;
    }
  }

  /**
   * Whether the kernel enforces the ruleset last applied: its filter table read back now (`iptables-save`) against
   * the stored one. What the compliance report calls "in force" — never the config flag alone.
   */
  async inForce(): Promise<{
    state: 'in-force' | 'differs' | 'none-applied' | 'unreadable';
    detail: string;
  }> {
    const last = this.deps.store.rulesets.lastApplied();
    if (!last) return { state: 'none-applied', detail: 'no ruleset has been applied' };
    let live: string;
    try {
      live = await this.applier.live();
    } catch (err) {
      return {
        state: 'unreadable',
        detail: `the kernel's filter table cannot be read: ${(err as Error).message}`,
      };
    }
    const want = ruleLines(last.iptables);
    const have = ruleLines(live);
    if (want.join('\n') === have.join('\n')) {
      return {
        state: 'in-force',
        detail: `ruleset ${last.hash.slice(0, 12)} read back from the kernel (${want.length} lines)`,
      };
    }
    const at = want.findIndex((l, k) => have[k] !== l);
    return {
      state: 'differs',
      detail: `the kernel's filter table differs from ruleset ${last.hash.slice(0, 12)} at line ${(at === -1 ? want.length : at) + 1}`,
    };
  }

  /** The hash of the ruleset last applied successfully, if any. */
  lastAppliedHash(): string | undefined {
    return this.deps.store.rulesets.lastApplied()?.hash;
  }

  /** The ruleset last applied successfully (its text, who, when), if any. */
  lastApplied(): StoredRuleset | undefined {
    return this.deps.store.rulesets.lastApplied();
  }

  /** The last attempt to apply a ruleset, whatever its outcome. */
  latestAttempt(): StoredRuleset | undefined {
    return this.deps.store.rulesets.latest();
  }

  /** The segments as the store mirrors them from the configuration. */
  segments(): Segment[] {
    return this.deps.store.segments.list();
  }

  /** The MUD controllers known by address (`portcullis mud controllers`). */
  controllers(): { uri: string; address: string }[] {
    return this.deps.store.mudControllers.list();
  }

  /** Imports a MUD file as the device's whole allow-list (replacing any previous one), or changes nothing. */
  importMud(deviceId: string, text: string, actor: string): AllowList {
    const { store, identity, audit } = this.deps;
    const list = parseMud(text, deviceId);
    identity.transact(() => {
      if (!store.devices.get(deviceId))
        throw new SegmentationError('ERR_SEGMENT_INVALID', `device ${deviceId} not found`);
      store.allowLists.put({ ...list, entries: JSON.stringify(list.entries) }, isoTime(this.deps.clock));
      audit.append({
        actor,
        action: 'mud.import',
        target: deviceId,
        details: { mudUrl: list.mudUrl, manufacturer: list.manufacturer, entries: list.entries.length },
      });
    });
    return list;
  }

  /** Registers (or removes) an address serving a MUD controller class or a MUD URL's my-controller. */
  setController(uri: string, address: string, present: boolean, actor: string): boolean {
    if (!isIpv4(address))
      throw new SegmentationError('ERR_SEGMENT_INVALID', `${address} is not an IPv4 address`);
    if (uri.length === 0 || uri.length > 512)
      throw new SegmentationError('ERR_SEGMENT_INVALID', 'controller URI must be 1-512 characters');
    const { store, identity, audit } = this.deps;
    return identity.transact(() => {
      const changed = present
        ? store.mudControllers.add(uri, address)
        : store.mudControllers.remove(uri, address);
      if (changed)
        audit.append({
          actor,
          action: present ? 'mud.controller.add' : 'mud.controller.remove',
          target: uri,
          details: { address },
        });
      return changed;
    });
  }

  /**
   * Quarantines a device and, when the firewall is enforced, changes the kernel set at once (one ipset call,
   * no recompile). The record is written first: if the kernel call fails, the next reconcile still applies it.
   */
  async quarantine(
    id: string,
    req: { reason: string; mode?: QuarantineMode },
    actor: string,
  ): Promise<QuarantineResult> {
    const mode = req.mode ?? this.deps.config.firewall.quarantineMode;
    const device = this.deps.identity.quarantine(id, { mode, reason: req.reason }, actor);
    return this.enforce(device, async (address) => {
      await this.applier.setMember(SET.quarantine, address, true);
      if (mode === 'isolate') await this.applier.setMember(SET.isolate, address, true);
    });
  }

  async release(id: string, actor: string, reason?: string): Promise<QuarantineResult> {
    const device = this.deps.identity.release(id, actor, reason);
    return this.enforce(device, async (address) => {
      await this.applier.setMember(SET.isolate, address, false);
      await this.applier.setMember(SET.quarantine, address, false);
    });
  }

  /**
   * Blocks a source address in the firewall for `seconds` (an ipset entry with a timeout: the kernel lifts it,
   * nothing has to remember to). The response to credential guessing (docs/policy.md); audited either way.
   */
  async blockSource(
    address: string,
    seconds: number,
    actor: string,
    reason: string,
  ): Promise<'blocked' | 'off' | 'not-ipv4' | 'failed'> {
    const { audit, config } = this.deps;
    if (!config.firewall.enforce) return 'off';
    // The firewall is IPv4 (pc-* sets are family inet); an IPv6 source is alerted on, not blocked.
    if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(address)) return 'not-ipv4';
    try {
      await this.applier.block(address, seconds);
      audit.append({ actor, action: 'firewall.block', target: address, details: { seconds, reason } });
      return 'blocked';
    } catch (err) {
      if (!(err instanceof SegmentationError)) throw err;
      audit.append({
        actor,
        action: 'firewall.block',
        target: address,
        details: { seconds, reason, error: `${err.code}: ${err.message}` },
      });
      return 'failed';
    }
  }

  /** The kernel side of a quarantine change, after its record is committed. */
  private async enforce(
    device: Device,
    change: (address: string) => Promise<void>,
  ): Promise<QuarantineResult> {
    if (!this.deps.config.firewall.enforce) return { device, firewall: 'off' };
    if (!device.address) return { device, firewall: 'no-address' };
    try {
      await change(device.address);
      return { device, firewall: 'enforced' };
    } catch (err) {
      if (!(err instanceof SegmentationError)) throw err;
      return { device, firewall: 'failed', error: `${err.code}: ${err.message}` };
    }
  }
}
