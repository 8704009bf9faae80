import { createRequire } from 'node:module';
import { z } from 'zod';

/**
 * The `policy:` section: device profiles that every sensor message is checked against before it may reach the
 * durable queue (docs/policy.md). Its own file so the profile fields have one definition for the configuration,
 * the per-device overrides (stored on the device) and the policy service.
 */

const METHODS = ['GET', 'POST', 'PUT', 'DELETE'] as const;
export const DAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'] as const;

/** The Sparkplug B scalar types a profile may map a reading's field to. */
export const SPARKPLUG_METRIC_TYPES = [
  'Int8',
  'Int16',
  'Int32',
  'Int64',
  'UInt8',
  'UInt16',
  'UInt32',
  'UInt64',
  'Float',
  'Double',
  'Boolean',
  'String',
] as const;

const hhmm = z.string().regex(/^([01]\d|2[0-3]):[0-5]\d$|^24:00$/, { error: 'must be HH:MM (00:00-24:00)' });

/** A resource a device may use: an exact path, or a collection `/prefix/*`, and the methods on it. */
export const resourceRuleSchema = z.strictObject({
  path: z
    .string()
    .regex(/^\/[A-Za-z0-9._~\-/]*(\/\*)?$/, { error: 'must be a path such as /telemetry or /fw/*' }),
  methods: z.array(z.enum(METHODS)).min(1).max(4),
});

/** When the device may talk, in the site's time zone (`policy.timeZone`); `to` before `from` spans midnight. */
export const timeWindowSchema = z.strictObject({
  days: z
    .array(z.enum(DAYS))
    .min(1)
    .max(7)
    .default([...DAYS]),
  from: hhmm,
  to: hhmm,
});

/** A token bucket: `perSecond` tokens flow in, at most `burst` are held; one message takes one. */
export const rateSchema = z.strictObject({
  perSecond: z.number().positive().max(100_000),
  burst: z.number().int().min(1).max(100_000),
});

/** A flow (Node-RED "policy decision" node) asked for every message of the profile, within a time budget. */
export const flowDecisionSchema = z.strictObject({
  flow: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, { error: 'must be a flow name' }),
  budgetMs: z.number().int().min(1).max(1000).default(50),
  /** No answer in time, or no flow registered: refuse (closed) or let the message through (open). */
  onTimeout: z.enum(['closed', 'open']).default('closed'),
});

/** JSON Schema documents are checked by ajv when the configuration is loaded (policy service). */
const jsonSchemaDocument = z.union([z.record(z.string(), z.unknown()), z.boolean()]);

/** Every field a profile may set; a device's overrides are the same fields, each optional. */
export const profileFieldsSchema = z.strictObject({
  resources: z.array(resourceRuleSchema).min(1).max(64).optional(),
  /** CoAP Content-Format numbers (0 text/plain, 50 JSON, 60 CBOR, 42 octet-stream...). */
  contentFormats: z.array(z.number().int().min(0).max(65535)).min(1).max(32).optional(),
  maxPayloadBytes: z.number().int().min(0).max(1_048_576).optional(),
  /** JSON Schema for the payload: JSON payloads are parsed, CBOR payloads decoded, and both checked against it. */
  schema: jsonSchemaDocument.optional(),
  rate: rateSchema.optional(),
  timeWindows: z.array(timeWindowSchema).min(1).max(16).optional(),
  /** Segments the device must be placed in (`portcullis device place`). */
  segments: z.array(z.string().min(1).max(24)).min(1).max(32).optional(),
  decision: flowDecisionSchema.optional(),
  /**
   * Sparkplug B (`uplink.format: sparkplug-b`): the reading's fields as typed metrics — `field` is the path in
   * the JSON/CBOR reading (`door/open` for nested objects). With it, DBIRTH declares exactly these metrics and
   * DDATA carries only them (docs/fleet.md); without it every field is sent as it comes.
   */
  metrics: z
    .array(
      z.strictObject({
        name: z.string().regex(/^[^#+]{1,128}$/, { error: 'must be 1-128 characters, no # or +' }),
        field: z.string().min(1).max(256),
        type: z.enum(SPARKPLUG_METRIC_TYPES),
      }),
    )
    .min(1)
    .max(256)
    .optional(),
});
export type ProfileFields = z.output<typeof profileFieldsSchema>;
export const PROFILE_FIELDS = Object.keys(profileFieldsSchema.shape) as (keyof ProfileFields)[];

export const profileNameSchema = z.string().regex(/^[a-z][a-z0-9-]{0,31}$/, {
  error: 'must be 1-32 characters: a-z, 0-9 or "-", starting with a letter',
});

function isTimeZone(tz: string): boolean {
  try {
    new Intl.DateTimeFormat('en-GB', { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}

/**
 * Whether a JSON Schema compiles (ajv, loaded only when a profile has a schema): a schema that does not is a
 * configuration error at load, for `config check` as for start — never a refusal of every message later.
 */
function schemaProblem(schema: unknown): string | null {
  const { Ajv } = createRequire(import.meta.url)('ajv') as typeof import('ajv');
  try {
    new Ajv({ strict: false }).compile(schema as object);
    return null;
  } catch (err) {
    return (err as Error).message;
  }
}

export const policySchema = z
  .strictObject({
    /** The site's time zone (IANA name): time windows are read in it. */
    timeZone: z
      .string()
      .refine(isTimeZone, { error: 'must be an IANA time zone such as Europe/Berlin' })
      .default('UTC'),
    /** The profile of devices that name none; unset: such devices are checked for known and active only. */
    defaultProfile: profileNameSchema.optional(),
    profiles: z.record(profileNameSchema, profileFieldsSchema).default({}),
    /** What the gateway does about failed sensor authentications beyond the alert (docs/policy.md). */
    response: z
      .strictObject({
        /** Block a brute-forcing source address in the firewall (an ipset entry that times out). */
        blockSource: z.boolean().default(false),
        blockSeconds: z.number().int().min(10).max(86_400).default(900),
      })
      .prefault({}),
  })
  .refine((p) => p.defaultProfile === undefined || p.profiles[p.defaultProfile] !== undefined, {
    error: 'defaultProfile must name a profile in profiles',
    path: ['defaultProfile'],
  })
  .superRefine((p, ctx) => {
    for (const [name, profile] of Object.entries(p.profiles)) {
      if (profile.schema === undefined) continue;
      const problem = schemaProblem(profile.schema);
      if (problem)
        ctx.addIssue({
          code: 'custom',
          path: ['profiles', name, 'schema'],
          message: `not a JSON Schema ajv compiles: ${problem}`,
        });
    }
  });
export type PolicyConfig = z.output<typeof policySchema>;
