import { createRequire } from 'node:module';
import type { Ajv as AjvClass, ValidateFunction } from 'ajv';
import {
  DAYS,
  type PolicyConfig,
  PROFILE_FIELDS,
  type ProfileFields,
  profileFieldsSchema,
} from '../config/policy-schema.ts';
import type { SessionDevice } from '../store/index.ts';
import { PolicyError } from './errors.ts';

/** The rule that refused a message (stable names: audit entries, counters, the CLI and docs/policy.md use them). */
export type PolicyRule =
  | 'identity'
  | 'state'
  | 'profile'
  | 'resource'
  | 'method'
  | 'time'
  | 'segment'
  | 'contentFormat'
  | 'size'
  | 'schema'
  | 'rate'
  | 'flow';

export const POLICY_RULES: readonly PolicyRule[] = [
  'identity',
  'state',
  'profile',
  'resource',
  'method',
  'time',
  'segment',
  'contentFormat',
  'size',
  'schema',
  'rate',
  'flow',
];

/** The CoAP response code each rule's refusal gets (RFC 7252 §5.9, RFC 8516 for 4.29). */
export const RULE_CODES: Record<PolicyRule, string> = {
  identity: '4.01',
  state: '4.03',
  profile: '4.03',
  resource: '4.03',
  method: '4.05',
  time: '4.03',
  segment: '4.03',
  contentFormat: '4.15',
  size: '4.13',
  schema: '4.00',
  rate: '4.29',
  flow: '4.03',
};

/** One message as the policy sees it. */
export interface PolicyRequest {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  resource: string;
  contentFormat: number | null;
  payload: Buffer;
}

export type PolicyDecision =
  | { allow: true; by: string }
  | {
      allow: false;
      rule: PolicyRule;
      /** CoAP response code. */
      code: string;
      reason: string;
      /** Who decided: `profile:NAME`, `device` (an override), `gateway` (state), `flows:NAME`. */
      by: string;
      /** Seconds until the device may try again (4.29's Max-Age, RFC 8516 §4). */
      maxAge?: number;
    };

/** Where an effective field comes from. */
export type FieldSource = `profile:${string}` | 'device' | 'unset';

export interface EffectivePolicy {
  deviceId: string;
  /** The profile the device takes (its own, else the default), or null: known-and-active only. */
  profile: string | null;
  profileFrom: 'device' | 'default' | 'none';
  fields: Partial<ProfileFields>;
  sources: Record<keyof ProfileFields, FieldSource>;
  /** Why the effective policy cannot be used (an unknown profile, bad overrides): every message is refused. */
  broken?: string;
}

// ajv and cbor-x cost ~90 ms and ~35 ms to load: only a profile with a schema loads them (every CLI command
// opens the core; most never decide a message).
const requireCjs = createRequire(import.meta.url);
let ajvClass: typeof AjvClass | undefined;
let cborDecode: ((b: Buffer) => unknown) | undefined;
const newAjv = (): AjvClass => {
  ajvClass ??= (requireCjs('ajv') as { Ajv: typeof AjvClass }).Ajv;
  return new ajvClass({ allErrors: false, strict: false });
};
const decodeCbor = (b: Buffer): unknown => {
  cborDecode ??= (requireCjs('cbor-x') as { decode: (b: Buffer) => unknown }).decode;
  return cborDecode(b);
};

const TELEMETRY = '/telemetry';
const CF_JSON = 50;
const CF_CBOR = 60;

interface Compiled {
  effective: EffectivePolicy;
  /** Minute-of-week ranges, in the site's time zone. */
  windows: { days: Set<number>; from: number; to: number }[] | undefined;
  validate: ValidateFunction | undefined;
  resources: { exact: Map<string, Set<string>>; prefixes: [string, Set<string>][] } | undefined;
  contentFormats: Set<number> | undefined;
  segments: Set<string> | undefined;
}

function minutes(hhmm: string): number {
  const [h, m] = hhmm.split(':').map(Number);
  return h! * 60 + m!;
}

/**
 * The per-message decision, one implementation for the data path, `portcullis policy test` and the UI. Pure
 * apart from the rate buckets (kept here, per device) and a cache of compiled policies keyed by the device's
 * profile and overrides, so a changed profile or override applies at the next message.
 */
export class PolicyEngine {
  private ajv: AjvClass | undefined;
  /** Compiled policies of devices with overrides of their own, by device. */
  private readonly compiled = new Map<string, { key: string; c: Compiled }>();
  /**
   * Compiled policies of devices without overrides, by profile key, shared: most devices of a site take a
   * profile as it is, and a compiled copy each was ~350 bytes a device (3 MiB at 10,000; issue 23). Only the
   * decision reads a compiled policy, and nothing it reads is the device's own (`effective.deviceId` is the first
   * device's that compiled it, and unread here).
   */
  private readonly byProfile = new Map<string, Compiled>();
  private readonly schemas = new Map<string, ValidateFunction>();
  private readonly buckets = new Map<
    string,
    { tokens: number; at: number; perSecond: number; burst: number }
  >();
  // Made at the first time-window check: the first Intl.DateTimeFormat loads ICU's locale and zone data
  // (~7 MiB resident), which a gateway whose profiles have no time windows never needs.
  private dayFormat: Intl.DateTimeFormat | undefined;
  private minuteCache = { minute: Number.NaN, value: 0 };

  constructor(private cfg: PolicyConfig) {
    this.checkSchemas(cfg.profiles);
  }

  get config(): PolicyConfig {
    return this.cfg;
  }

  /**
   * New profile definitions (a fleet document's): checked like the configuration's, then in force from the
   * next message; rate buckets are kept (they are per device, not per profile definition).
   */
  replaceProfiles(profiles: PolicyConfig['profiles']): void {
    this.checkSchemas(profiles);
    this.cfg = { ...this.cfg, profiles };
    this.compiled.clear();
    this.byProfile.clear();
  }

  private checkSchemas(profiles: PolicyConfig['profiles']): void {
    // Every profile's schema compiles now: a bad one is a configuration error at start, not a refusal later.
    for (const [name, p] of Object.entries(profiles)) {
      if (p.schema !== undefined) {
        try {
          this.schemaFor(p.schema);
        } catch (err) {
          throw new PolicyError(
            'ERR_POLICY_SCHEMA_INVALID',
            `profile ${name}: schema: ${(err as Error).message}`,
          );
        }
      }
    }
  }

  /** The device's effective policy and where each field comes from (`portcullis policy show`). */
  effective(device: SessionDevice): EffectivePolicy {
    const own = device.policyProfile;
    const profile = own ?? this.config.defaultProfile ?? null;
    const sources = Object.fromEntries(PROFILE_FIELDS.map((f) => [f, 'unset'])) as EffectivePolicy['sources'];
    const out: EffectivePolicy = {
      deviceId: device.id,
      profile,
      profileFrom: own ? 'device' : profile ? 'default' : 'none',
      fields: {},
      sources,
    };
    const base = profile === null ? {} : this.config.profiles[profile];
    if (!base) {
      out.broken = `profile ${profile} is not in the configuration`;
      return out;
    }
    for (const f of PROFILE_FIELDS) {
      if (base[f] !== undefined) {
        (out.fields as Record<string, unknown>)[f] = base[f];
        sources[f] = `profile:${profile}`;
      }
    }
    const parsed = profileFieldsSchema.safeParse(device.policyOverrides);
    if (!parsed.success) {
      out.broken = `the device's policy overrides are invalid: ${parsed.error.issues[0]?.message ?? 'bad shape'}`;
      return out;
    }
    for (const f of PROFILE_FIELDS) {
      if (parsed.data[f] !== undefined) {
        (out.fields as Record<string, unknown>)[f] = parsed.data[f];
        sources[f] = 'device';
      }
    }
    return out;
  }

  /**
   * Decides one message. `dryRun` (policy test, the UI) reads the rate bucket without taking a token. The flow
   * rule is not decided here (it is asynchronous): the caller asks the flow when this allows and
   * `flowDecision` names one.
   */
  decide(device: SessionDevice | undefined, req: PolicyRequest, now: number, dryRun = false): PolicyDecision {
    if (!device) return refuse('identity', 'unknown credential', 'gateway');
    if (device.state !== 'active') return refuse('state', `device is ${device.state}`, 'gateway');
    const c = this.compile(device);
    const eff = c.effective;
    if (eff.broken) return refuse('profile', eff.broken, 'gateway');
    if (eff.profile === null && isEmpty(device.policyOverrides)) {
      return { allow: true, by: 'gateway' };
    }
    const by = eff.sources;

    if (c.resources) {
      const methods = c.resources.exact.get(req.resource) ?? prefixMatch(c.resources.prefixes, req.resource);
      if (!methods) return refuse('resource', `${req.resource} is not an allowed resource`, by.resources);
      if (!methods.has(req.method))
        return refuse('method', `${req.method} is not allowed on ${req.resource}`, by.resources);
    }
    if (c.windows && !this.inWindow(c.windows, now)) {
      return refuse('time', `outside the device's time windows (${this.config.timeZone})`, by.timeWindows);
    }
    if (c.segments && !(device.segment && c.segments.has(device.segment))) {
      return refuse(
        'segment',
        `device is in segment ${device.segment ?? '(none)'}, not one the profile allows`,
        by.segments,
      );
    }
    // Content format and schema describe readings: they apply to telemetry (pushed, or pulled as POST /telemetry),
    // not to the gateway's own protocol resources (a firmware report has its format checked by its handler).
    const reading = req.payload.length > 0 && req.resource === TELEMETRY;
    if (
      c.contentFormats &&
      reading &&
      !(req.contentFormat !== null && c.contentFormats.has(req.contentFormat))
    ) {
      return refuse(
        'contentFormat',
        `content format ${req.contentFormat ?? 'none'} is not allowed`,
        by.contentFormats,
      );
    }
    const max = eff.fields.maxPayloadBytes;
    if (max !== undefined && req.payload.length > max) {
      return refuse('size', `payload is ${req.payload.length} bytes (limit ${max})`, by.maxPayloadBytes);
    }
    if (c.validate && reading) {
      const problem = this.checkSchema(c.validate, req);
      if (problem) return refuse('schema', problem, by.schema);
    }
    const rate = eff.fields.rate;
    if (rate) {
      const wait = this.take(device.id, rate, now, dryRun);
      if (wait > 0) {
        return {
          ...refuse('rate', `over ${rate.perSecond}/s (burst ${rate.burst})`, by.rate),
          maxAge: Math.max(1, Math.ceil(wait / 1000)),
        };
      }
    }
    return { allow: true, by: eff.profile ? `profile:${eff.profile}` : 'device' };
  }

  /** Whether `now` (in the site's time zone) falls in one of the windows; `to` before `from` spans midnight. */
  private inWindow(windows: NonNullable<Compiled['windows']>, now: number): boolean {
    const m = this.minuteOfWeek(now);
    const day = Math.floor(m / 1440);
    const t = m % 1440;
    for (const w of windows) {
      if (w.from <= w.to) {
        if (w.days.has(day) && t >= w.from && t < w.to) return true;
      } else if ((w.days.has(day) && t >= w.from) || (w.days.has((day + 6) % 7) && t < w.to)) return true;
    }
    return false;
  }

  /** The flow the device's messages are put to, with its budget (after `decide` allowed). */
  flowDecision(device: SessionDevice): ProfileFields['decision'] {
    return this.compile(device).effective.fields.decision;
  }

  /** Forgets devices' rate buckets (a device removed; tests). */
  forget(deviceId: string): void {
    this.buckets.delete(deviceId);
  }

  private checkSchema(validate: ValidateFunction, req: PolicyRequest): string | null {
    let value: unknown;
    if (req.contentFormat === CF_CBOR) {
      try {
        value = decodeCbor(req.payload);
      } catch {
        return 'payload is not valid CBOR';
      }
    } else if (req.contentFormat === CF_JSON || req.contentFormat === null || req.contentFormat === 0) {
      try {
        value = JSON.parse(req.payload.toString('utf8'));
      } catch {
        return 'payload is not valid JSON';
      }
    } else {
      return `a schema applies, and content format ${req.contentFormat} is neither JSON (50) nor CBOR (60)`;
    }
    if (validate(value)) return null;
    const e = validate.errors?.[0];
    // The schema's words, never the payload's values: a refused payload may carry anything.
    return `payload does not match the schema: ${e ? `${e.instancePath || '/'} ${e.message}` : 'invalid'}`;
  }

  /** Milliseconds until a token is there (0: taken now). */
  private take(id: string, rate: { perSecond: number; burst: number }, now: number, dryRun: boolean): number {
    let b = this.buckets.get(id);
    // A changed rate starts a full bucket.
    if (!b || b.perSecond !== rate.perSecond || b.burst !== rate.burst) {
      b = { tokens: rate.burst, at: now, perSecond: rate.perSecond, burst: rate.burst };
      if (!dryRun) this.buckets.set(id, b);
    }
    const tokens = Math.min(rate.burst, b.tokens + (Math.max(0, now - b.at) / 1000) * rate.perSecond);
    if (tokens < 1) {
      if (!dryRun) {
        b.tokens = tokens;
        b.at = now;
      }
      return ((1 - tokens) / rate.perSecond) * 1000;
    }
    if (!dryRun) {
      b.tokens = tokens - 1;
      b.at = now;
    }
    return 0;
  }

  private minuteOfWeek(now: number): number {
    const minute = Math.floor(now / 60_000);
    if (minute === this.minuteCache.minute) return this.minuteCache.value;
    let day = 0;
    let h = 0;
    let m = 0;
    this.dayFormat ??= new Intl.DateTimeFormat('en-GB', {
      timeZone: this.cfg.timeZone,
      weekday: 'short',
      hour: '2-digit',
      minute: '2-digit',
      hourCycle: 'h23',
    });
    for (const p of this.dayFormat.formatToParts(new Date(now))) {
      if (p.type === 'weekday')
        day = DAYS.indexOf(p.value.toLowerCase().slice(0, 3) as (typeof DAYS)[number]);
      else if (p.type === 'hour') h = Number(p.value);
      else if (p.type === 'minute') m = Number(p.value);
    }
    const value = day * 1440 + h * 60 + m;
    this.minuteCache = { minute, value };
    return value;
  }

  private schemaFor(schema: unknown): ValidateFunction {
    const key = JSON.stringify(schema);
    let v = this.schemas.get(key);
    if (!v) {
      this.ajv ??= newAjv();
      v = this.ajv.compile(schema as object);
      this.schemas.set(key, v);
    }
    return v;
  }

  private compile(device: SessionDevice): Compiled {
    if (isEmpty(device.policyOverrides)) {
      // Most devices override nothing: they take their profile's shared policy, found by the profile's name
      // (no serialisation per message), with no entry of their own (~0.09 KiB a device at 10,000; issue 23).
      const profile = device.policyProfile ?? '';
      let shared = this.byProfile.get(profile);
      if (!shared) {
        shared = this.build(device);
        this.byProfile.set(profile, shared);
      }
      // One whose overrides were removed: its own compiled policy is stale now.
      if (this.compiled.size > 0) this.compiled.delete(device.id);
      return shared;
    }
    const key = `${device.policyProfile ?? ''}\u0000${JSON.stringify(device.policyOverrides)}`;
    const hit = this.compiled.get(device.id);
    if (hit && hit.key === key) return hit.c;
    const c = this.build(device);
    this.compiled.set(device.id, { key, c });
    return c;
  }

  private build(device: SessionDevice): Compiled {
    const effective = this.effective(device);
    const f = effective.fields;
    let validate: ValidateFunction | undefined;
    if (!effective.broken && f.schema !== undefined) {
      try {
        validate = this.schemaFor(f.schema);
      } catch (err) {
        effective.broken = `the device's schema does not compile: ${(err as Error).message}`;
      }
    }
    const c: Compiled = {
      effective,
      validate,
      windows: f.timeWindows?.map((w) => ({
        days: new Set(w.days.map((d) => DAYS.indexOf(d))),
        from: minutes(w.from),
        to: minutes(w.to),
      })),
      resources: f.resources && {
        exact: new Map(
          f.resources.filter((r) => !r.path.endsWith('/*')).map((r) => [r.path, new Set<string>(r.methods)]),
        ),
        prefixes: f.resources
          .filter((r) => r.path.endsWith('/*'))
          .map((r) => [r.path.slice(0, -1), new Set<string>(r.methods)]),
      },
      contentFormats: f.contentFormats && new Set(f.contentFormats),
      segments: f.segments && new Set(f.segments),
    };
    return c;
  }
}

function isEmpty(o: Record<string, unknown>): boolean {
  for (const _ in o) return false;
  return true;
}

function prefixMatch(prefixes: [string, Set<string>][], path: string): Set<string> | undefined {
  for (const [p, m] of prefixes) if (path.startsWith(p) && path.length > p.length) return m;
  return undefined;
}

function refuse(rule: PolicyRule, reason: string, by: string): Extract<PolicyDecision, { allow: false }> {
  return { allow: false, rule, code: RULE_CODES[rule], reason, by };
}
