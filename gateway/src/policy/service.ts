import { AuditAggregator } from '../audit/aggregate.ts';
import type { AuditLog } from '../audit/index.ts';
import type { Clock } from '../clock.ts';
import { type PolicyConfig, profileFieldsSchema, profileNameSchema } from '../config/policy-schema.ts';
import { firstIssue } from '../errors.ts';
import type { Device, RateLimit, SessionDevice, Store } from '../store/index.ts';
import {
  type EffectivePolicy,
  type PolicyDecision,
  PolicyEngine,
  type PolicyRequest,
  type PolicyRule,
  RULE_CODES,
} from './engine.ts';
import { PolicyError } from './errors.ts';

/** A flow registered as a decision point (control socket, scope `policy:decide`). */
export interface FlowDecider {
  /** Resolves with the flow's answer, or `undefined` when none came within `budgetMs` (or none is registered). */
  ask(flow: string, question: FlowQuestion, budgetMs: number): Promise<'allow' | 'deny' | undefined>;
}

export interface FlowQuestion {
  deviceId: string;
  profile: string | null;
  method: string;
  resource: string;
  contentFormat: number | null;
  /** base64 */
  payload: string;
}

/** A refusal as the rest of the gateway hears of it (anomaly detector, events). */
export interface PolicyRefusal {
  ts: number;
  deviceId: string;
  rule: PolicyRule;
  code: string;
  resource: string;
  by: string;
}

export interface RefusalCounts {
  total: number;
  byRule: Partial<Record<PolicyRule, number>>;
  last: { ts: string; rule: PolicyRule; reason: string } | null;
}

/** Refused messages are audited once per device, rule and minute with a count: a flood writes one entry. */
const AUDIT_WINDOW_MS = 60_000;
const AUDIT_MAX_KEYS = 2000;
/** Devices whose refusals are counted in memory (bounded: ids come from the store, not the peer). */
const MAX_COUNTED_DEVICES = 100_000;

/**
 * The one policy service: the data path (`check`), the CLI (`show`, `test`, `assign`) and the UI call it alike.
 * Decisions come from `PolicyEngine`; this adds the flow decision point, counting, the aggregated audit and the
 * refusal listeners (the behaviour detector).
 */
export class PolicyService {
  readonly engine: PolicyEngine;
  private readonly counts = new Map<string, RefusalCounts>();
  private aggregator: AuditAggregator | undefined;
  private readonly listeners = new Set<(r: PolicyRefusal) => void>();
  private decider: FlowDecider | undefined;

  constructor(
    private readonly deps: {
      config: PolicyConfig;
      store: Store;
      audit: AuditLog;
      clock: Clock;
      /** Runs a write so the data path's next review notices it (identity's change stamp); default: a transaction. */
      transact?: <T>(fn: () => T) => T;
    },
  ) {
    this.engine = new PolicyEngine({ ...deps.config, profiles: this.profiles() });
  }

  /**
   * The profiles in force: the configuration's, and those signed fleet documents defined (docs/fleet.md). A
   * stored definition that no longer parses is left out (its devices are then refused: fail closed).
   */
  profiles(): PolicyConfig['profiles'] {
    const out: PolicyConfig['profiles'] = {};
    for (const p of this.deps.store.fleet.profiles()) {
      const f = profileFieldsSchema.safeParse(p.fields);
      if (f.success && profileNameSchema.safeParse(p.name).success) out[p.name] = f.data;
    }
    return { ...out, ...this.deps.config.profiles };
  }

  /**
   * Defines (or redefines) a profile from a fleet document: never one of the configuration's (the site's own
   * file wins). Checked as the configuration's are; audited. In force once `reloadProfiles` runs after the
   * caller's transaction committed (a rolled-back document must not leave it in the engine).
   */
  defineProfile(name: string, fields: unknown, actor: string, keyId: string): void {
    if (!profileNameSchema.safeParse(name).success) {
      throw new PolicyError('ERR_POLICY_PROFILE_INVALID', `${name} is not a profile name`);
    }
    if (this.deps.config.profiles[name]) {
      throw new PolicyError(
        'ERR_POLICY_PROFILE_LOCAL',
        `profile ${name} is defined in the gateway's configuration and cannot be redefined remotely`,
      );
    }
    const parsed = profileFieldsSchema.safeParse(fields);
    if (!parsed.success) {
      throw new PolicyError('ERR_POLICY_PROFILE_INVALID', firstIssue(parsed.error, `profile ${name}`));
    }
    if (parsed.data.schema !== undefined) {
      try {
        new PolicyEngine({ ...this.deps.config, profiles: { [name]: { schema: parsed.data.schema } } });
      } catch (err) {
        throw new PolicyError('ERR_POLICY_SCHEMA_INVALID', `profile ${name}: ${(err as Error).message}`);
      }
    }
    const ts = new Date(this.deps.clock.now()).toISOString();
    this.deps.store.transaction(() => {
      this.deps.store.fleet.putProfile({ name, fields: parsed.data, keyId, definedAt: ts });
      this.deps.audit.append({
        actor,
        action: 'policy.profile.define',
        target: name,
        details: { fields: Object.keys(parsed.data) },
      });
    });
  }

  /** Takes the stored profile definitions into the engine (after a fleet document committed). */
  reloadProfiles(): void {
    this.engine.replaceProfiles(this.profiles());
  }

  /** The flow decision points (set by the control API when it runs). */
  setFlowDecider(d: FlowDecider | undefined): void {
    this.decider = d;
  }

  onRefusal(l: (r: PolicyRefusal) => void): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  /**
   * Decides one message on the data path, before anything is queued: the engine's rules, then the profile's
   * flow if it names one (within its budget, failing closed or open as the profile says). A refusal is counted,
   * audited (aggregated) and told to the listeners.
   */
  async check(device: SessionDevice | undefined, req: PolicyRequest): Promise<PolicyDecision> {
    const now = this.deps.clock.now();
    let d = this.engine.decide(device, req, now);
    if (d.allow && device) {
      const flow = this.engine.flowDecision(device);
      if (flow) d = await this.askFlow(device, req, flow);
    }
    if (!d.allow && device) this.refused(device.id, d, req.resource, now);
    return d;
  }

  private async askFlow(
    device: SessionDevice,
    req: PolicyRequest,
    flow: { flow: string; budgetMs: number; onTimeout: 'closed' | 'open' },
  ): Promise<PolicyDecision> {
    const by = `flows:${flow.flow}`;
    let answer: 'allow' | 'deny' | undefined;
    try {
      answer = await this.decider?.ask(
        flow.flow,
        {
          deviceId: device.id,
          profile: this.engine.effective(device).profile,
          method: req.method,
          resource: req.resource,
          contentFormat: req.contentFormat,
          payload: req.payload.toString('base64'),
        },
        flow.budgetMs,
      );
    } catch {
      answer = undefined;
    }
    if (answer === 'allow') return { allow: true, by };
    if (answer === 'deny')
      return { allow: false, rule: 'flow', code: RULE_CODES.flow, reason: 'the flow refused', by };
    if (flow.onTimeout === 'open')
      return { allow: true, by: `${by} (no answer in ${flow.budgetMs} ms: open)` };
    return {
      allow: false,
      rule: 'flow',
      code: RULE_CODES.flow,
      reason: `no answer from the flow within ${flow.budgetMs} ms (fails closed)`,
      by,
    };
  }

  private refused(
    deviceId: string,
    d: Extract<PolicyDecision, { allow: false }>,
    resource: string,
    now: number,
  ) {
    let c = this.counts.get(deviceId);
    if (!c && this.counts.size < MAX_COUNTED_DEVICES) {
      c = { total: 0, byRule: {}, last: null };
      this.counts.set(deviceId, c);
    }
    if (c) {
      c.total++;
      c.byRule[d.rule] = (c.byRule[d.rule] ?? 0) + 1;
      c.last = { ts: new Date(now).toISOString(), rule: d.rule, reason: d.reason };
    }
    this.aggregator ??= new AuditAggregator((e) => this.deps.audit.append(e), this.deps.clock, {
      windowMs: AUDIT_WINDOW_MS,
      maxKeys: AUDIT_MAX_KEYS,
      maxTallyValues: 8,
    });
    this.aggregator.record(
      {
        action: 'policy.refused',
        actor: 'system',
        target: deviceId,
        fixed: { rule: d.rule, code: d.code, by: d.by },
      },
      // The reason's words come from the rule and the schema, never from the payload.
      { resource: resource.slice(0, 64), reason: d.reason.slice(0, 160) },
      {
        action: 'policy.refused',
        actor: 'system',
        target: null,
        fixed: { rule: 'overflow', code: '', by: '' },
      },
    );
    const r: PolicyRefusal = { ts: now, deviceId, rule: d.rule, code: d.code, resource, by: d.by };
    for (const l of this.listeners) {
      try {
        l(r);
      } catch {
        // a listener's failure is its own; the data path goes on
      }
    }
  }

  /** The automatic rate limit (an anomaly response) in force on a device now, if any. */
  rateLimit(deviceId: string): RateLimit | undefined {
    const now = new Date(this.deps.clock.now()).toISOString();
    return this.deps.store.rateLimits.active(now).find((l) => l.deviceId === deviceId);
  }

  /**
   * A person lifts a device's rate limit before it runs out (CLI `device unlimit`, the device page, the
   * control API): removed and audited in one transaction. False when the device had none.
   */
  liftRateLimit(deviceId: string, actor: string): boolean {
    const transact = this.deps.transact ?? ((fn) => this.deps.store.transaction(fn));
    return transact(() => {
      const lifted = this.deps.store.rateLimits.delete(deviceId);
      if (lifted)
        this.deps.audit.append({ actor, action: 'device.rate-limit.lift', target: deviceId, details: {} });
      return lifted;
    });
  }

  /** Refusals counted since the gateway started (the device page). */
  refusals(deviceId: string): RefusalCounts {
    return this.counts.get(deviceId) ?? { total: 0, byRule: {}, last: null };
  }

  /** The device's effective policy and each field's source (`portcullis policy show`, the device page). */
  show(deviceId: string): EffectivePolicy {
    return this.engine.effective(this.device(deviceId));
  }

  /**
   * What the policy would decide for one message now, without taking a rate token or asking a flow
   * (`portcullis policy test`). A profile with a flow says so in `by`.
   */
  test(deviceId: string, req: PolicyRequest): PolicyDecision & { flow?: string } {
    const device = this.device(deviceId);
    const d = this.engine.decide(device, req, this.deps.clock.now(), true);
    const flow = d.allow ? this.engine.flowDecision(device) : undefined;
    return flow ? { ...d, flow: flow.flow } : d;
  }

  /** Gives a device a profile (null: the default) and overrides; audited, applies at its next message. */
  assign(
    deviceId: string,
    change: { profile?: string | null; overrides?: Record<string, unknown> },
    actor: string,
  ): EffectivePolicy {
    const device = this.device(deviceId);
    const profile = change.profile === undefined ? device.policyProfile : change.profile;
    if (profile !== null) {
      if (!profileNameSchema.safeParse(profile).success || !this.profiles()[profile]) {
        throw new PolicyError(
          'ERR_POLICY_PROFILE_NOT_FOUND',
          `no profile ${profile} in the configuration (policy.profiles) or defined by a fleet document`,
        );
      }
    }
    const overrides = change.overrides ?? device.policyOverrides;
    const parsed = profileFieldsSchema.safeParse(overrides);
    if (!parsed.success)
      throw new PolicyError('ERR_POLICY_OVERRIDES_INVALID', firstIssue(parsed.error, 'overrides'));
    if (parsed.data.schema !== undefined) {
      try {
        new PolicyEngine({ ...this.deps.config, profiles: { probe: { schema: parsed.data.schema } } });
      } catch (err) {
        throw new PolicyError('ERR_POLICY_SCHEMA_INVALID', `overrides: ${(err as Error).message}`);
      }
    }
    const ts = new Date(this.deps.clock.now()).toISOString();
    this.deps.store.transaction(() => {
      this.deps.store.devices.setPolicy(deviceId, profile, parsed.data, ts);
      this.deps.audit.append({
        actor,
        action: 'device.policy',
        target: deviceId,
        details: { profile, overrides: Object.keys(parsed.data) },
      });
    });
    this.engine.forget(deviceId);
    return this.show(deviceId);
  }

  /** Writes the pending aggregated refusals (at stop). */
  close(): void {
    this.aggregator?.close();
  }

  private device(id: string): Device {
    const d = this.deps.store.devices.get(id);
    if (!d) throw new PolicyError('ERR_POLICY_NOT_FOUND', `device ${id} not found`);
    return d;
  }
}
