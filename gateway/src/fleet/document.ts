/**
 * Signed desired-state documents (docs/fleet.md). The signature covers the exact payload bytes (base64 in the
 * envelope), so neither side needs a JSON canonicaliser: the gateway verifies the bytes, then parses them.
 */
import { createHash, createPublicKey, type KeyObject, sign, verify } from 'node:crypto';
import { z } from 'zod';
import { firstIssue } from '../errors.ts';
import { FleetError } from './errors.ts';

export const ENVELOPE_FORMAT = 'portcullis-fleet-document/1';
/** Domain separation: an operator key's signature over anything else is never a document signature. */
const SIGNING_CONTEXT = Buffer.from('portcullis fleet document v1\n');

/** Documents larger than this are refused before anything is parsed. */
export const MAX_DOCUMENT_BYTES = 256 * 1024;

const deviceId = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/);

/** A PSK sealed to one gateway's HPKE key: `to` is that key's id (fleet/hpke.ts). */
export const sealedPskSchema = z.strictObject({
  to: z.string().regex(/^[0-9a-f]{16}$/),
  enc: z.base64().max(200),
  ct: z.base64().max(400),
});
export type SealedPsk = z.infer<typeof sealedPskSchema>;

export const specSchema = z.strictObject({
  devices: z
    .strictObject({
      add: z
        .array(
          z.strictObject({
            id: deviceId,
            pskIdentity: z.string().min(1).max(128),
            /** One entry per gateway the document is for: never a PSK in clear. */
            psk: z.array(sealedPskSchema).min(1).max(1000),
            segment: z.string().max(64).optional(),
            name: z.string().max(128).optional(),
            type: z.string().max(64).optional(),
          }),
        )
        .max(1000)
        .default([]),
      decommission: z.array(deviceId).max(1000).default([]),
      quarantine: z
        .array(
          z.strictObject({
            id: deviceId,
            mode: z.enum(['observe', 'isolate']).default('observe'),
            reason: z.string().min(1).max(500),
          }),
        )
        .max(1000)
        .default([]),
      release: z.array(deviceId).max(1000).default([]),
    })
    .prefault({}),
  /**
   * Device policy (docs/policy.md): a profile named in the gateway's `policy.profiles` (null: the default) and
   * per-device overrides, through the policy service as `portcullis device policy` does.
   */
  policy: z
    .array(
      z.strictObject({
        device: deviceId,
        profile: z.string().max(32).nullable().optional(),
        overrides: z.record(z.string(), z.unknown()).optional(),
      }),
    )
    .max(1000)
    .default([]),
  /**
   * New policy profiles (the fields of `policy.profiles`), defined before the document's `policy` assignments
   * so they can name them. A profile of the gateway's own configuration cannot be redefined.
   */
  profiles: z.record(z.string().max(32), z.record(z.string(), z.unknown())).default({}),
  /** Allow-lists: a MUD file (RFC 8520, as JSON) per device, imported as `portcullis device mud` imports it. */
  allowLists: z
    .array(z.strictObject({ device: deviceId, mud: z.record(z.string(), z.unknown()) }))
    .max(100)
    .default([]),
  /**
   * Sensor firmware: images fetched by URL (the vendor's manifest and its signature carried here; the bytes must
   * hash to the manifest's digest and the signature verify with the vendor key on the gateway, as for an upload),
   * and campaigns over images on the gateway by digest (the settings of `portcullis firmware campaign`).
   */
  firmware: z
    .strictObject({
      images: z
        .array(
          z.strictObject({
            url: z.string().min(1).max(2048),
            /** The manifest's exact bytes (base64): the vendor's signature covers them. */
            manifest: z.base64().max(8192),
            signature: z.base64().max(1024),
          }),
        )
        .max(5)
        .default([]),
      campaigns: z
        .array(
          z.strictObject({
            image: z.string().regex(/^[0-9a-f]{64}$/),
            settings: z.record(z.string(), z.unknown()).default({}),
          }),
        )
        .max(20)
        .default([]),
    })
    .prefault({}),
  /**
   * A gateway update: the bundle's URL and SHA-256. The bytes must hash to it and the bundle's own release
   * signature must verify (the key pinned in `updates.publicKeyFile`) before anything else of the document
   * changes; the installation follows the commit.
   */
  update: z
    .strictObject({ url: z.string().min(1).max(2048), sha256: z.string().regex(/^[0-9a-f]{64}$/) })
    .optional(),
  /** Rotation: from this document on, only this Ed25519 key (PEM SPKI) signs. Signed by the current key. */
  rotateOperatorKey: z.string().max(1000).optional(),
  /**
   * A config fragment the gateway records, reports in its state and exposes to policy flows: labels such as
   * the site's device profile (`profile: cold-chain-v2`). Replaced whole by each applied document of the scope.
   */
  labels: z.record(z.string().max(64), z.string().max(256)).optional(),
});
export type DocumentSpec = z.infer<typeof specSchema>;

export const bodySchema = z.strictObject({
  kind: z.literal('portcullis-desired-state'),
  version: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER),
  issuedAt: z.iso.datetime(),
  expires: z.iso.datetime(),
  /** Exactly one: a gateway (its topic prefix) or a group. */
  target: z.union([
    z.strictObject({ gateway: z.string().min(1).max(200) }),
    z.strictObject({ group: z.string().min(1).max(64) }),
  ]),
  spec: specSchema,
});
export type DocumentBody = z.infer<typeof bodySchema>;

const envelopeSchema = z.strictObject({
  format: z.literal(ENVELOPE_FORMAT),
  keyId: z.string().regex(/^[0-9a-f]{16}$/),
  payload: z.base64().min(1),
  signature: z.base64().optional(),
});
export type Envelope = z.infer<typeof envelopeSchema>;

/** First 16 hex digits of SHA-256 over the raw 32-byte Ed25519 public key. */
export function keyIdOf(key: KeyObject): string {
  const raw = key.export({ format: 'der', type: 'spki' }).subarray(-32);
  return createHash('sha256').update(raw).digest('hex').slice(0, 16);
}

export function ed25519PublicKey(pem: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPublicKey(pem);
  } catch (err) {
    throw new FleetError('ERR_FLEET_MALFORMED', 'not a public key (PEM)', { cause: err });
  }
  if (key.asymmetricKeyType !== 'ed25519') {
    throw new FleetError('ERR_FLEET_MALFORMED', `operator keys are Ed25519, not ${key.asymmetricKeyType}`);
  }
  return key;
}

export function signDocument(body: DocumentBody, privateKey: KeyObject): Envelope {
  const parsed = bodySchema.safeParse(body);
  if (!parsed.success) throw new FleetError('ERR_FLEET_MALFORMED', firstIssue(parsed.error, 'document'));
  const payload = Buffer.from(JSON.stringify(parsed.data));
  const signature = sign(null, Buffer.concat([SIGNING_CONTEXT, payload]), privateKey);
  return {
    format: ENVELOPE_FORMAT,
    keyId: keyIdOf(createPublicKey(privateKey)),
    payload: payload.toString('base64'),
    signature: signature.toString('base64'),
  };
}

/** The envelope's shape only (nothing trusted yet). */
export function parseEnvelope(bytes: Buffer): Envelope {
  if (bytes.length > MAX_DOCUMENT_BYTES) {
    throw new FleetError(
      'ERR_FLEET_MALFORMED',
      `document is ${bytes.length} bytes, over ${MAX_DOCUMENT_BYTES}`,
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new FleetError('ERR_FLEET_MALFORMED', 'document is not JSON');
  }
  const env = envelopeSchema.safeParse(json);
  if (!env.success) throw new FleetError('ERR_FLEET_MALFORMED', firstIssue(env.error, 'envelope'));
  return env.data;
}

/**
 * Verifies the signature with `key` (whose id must be the envelope's), then parses the body. Order matters:
 * nothing of an unverified payload is interpreted.
 */
export function verifyDocument(env: Envelope, key: KeyObject): { body: DocumentBody; hash: string } {
  if (!env.signature) throw new FleetError('ERR_FLEET_UNSIGNED', 'document carries no signature');
  if (env.keyId !== keyIdOf(key)) {
    throw new FleetError(
      'ERR_FLEET_UNKNOWN_KEY',
      `document is signed by key ${env.keyId}, not by the pinned operator key ${keyIdOf(key)}`,
    );
  }
  const payload = Buffer.from(env.payload, 'base64');
  const ok = verify(
    null,
    Buffer.concat([SIGNING_CONTEXT, payload]),
    key,
    Buffer.from(env.signature, 'base64'),
  );
  if (!ok) throw new FleetError('ERR_FLEET_BAD_SIGNATURE', `signature does not verify with key ${env.keyId}`);
  let json: unknown;
  try {
    json = JSON.parse(payload.toString('utf8'));
  } catch {
    throw new FleetError('ERR_FLEET_MALFORMED', 'signed payload is not JSON');
  }
  const body = bodySchema.safeParse(json);
  if (!body.success) throw new FleetError('ERR_FLEET_MALFORMED', firstIssue(body.error, 'document'));
  return { body: body.data, hash: createHash('sha256').update(payload).digest('hex') };
}
