import { createPublicKey, verify } from 'node:crypto';
import { z } from 'zod';
import { parseJsonWith } from '../json.ts';
import { FirmwareError } from './errors.ts';

const name = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, { error: 'letters, digits, ".", "_", "-"' });

/** A SUIT-like firmware manifest: who made it, for which device class, which version, exactly which bytes. */
export const firmwareManifestSchema = z.strictObject({
  vendor: name,
  /** The device class: matched against the device's type. */
  class: name,
  version: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9.+_-]{0,31}$/, { error: 'a version string' }),
  digest: z.string().regex(/^[0-9a-f]{64}$/, { error: 'SHA-256 in hex' }),
  size: z
    .number()
    .int()
    .min(1)
    .max(64 * 1024 * 1024),
  /** CVSS base score of the flaws it fixes: campaigns run highest first. */
  severity: z.number().min(0).max(10).default(0),
  notes: z.string().max(2000).default(''),
});
export type FirmwareManifest = z.infer<typeof firmwareManifestSchema>;

export function parseFirmwareManifest(bytes: Buffer): FirmwareManifest {
  const r = parseJsonWith(firmwareManifestSchema, bytes.toString('utf8'), 'manifest');
  if (!r.ok) {
    throw new FirmwareError(
      'ERR_FIRMWARE_INVALID',
      r.notJson ? 'the manifest is not JSON' : `manifest: ${r.problem}`,
    );
  }
  return r.data;
}

/** The vendor's signature (base64, detached) over the manifest's exact bytes: Ed25519 or ECDSA P-256/SHA-256. */
export function verifyVendorSignature(manifest: Buffer, signature: Buffer, vendorKeyPem: string): void {
  const key = createPublicKey(vendorKeyPem);
  const sig = Buffer.from(signature.toString('utf8').trim(), 'base64');
  const ok =
    key.asymmetricKeyType === 'ed25519'
      ? verify(null, manifest, key, sig)
      : key.asymmetricKeyType === 'ec'
        ? verify('sha256', manifest, key, sig)
        : false;
  if (!ok)
    throw new FirmwareError(
      'ERR_FIRMWARE_SIGNATURE',
      'the manifest is not signed by the vendor key on record',
    );
}

/** A vendor key as given by an admin: a public key, Ed25519 or EC P-256. */
export function checkVendorKey(pem: string): void {
  let type: string | undefined;
  let curve: string | undefined;
  try {
    const k = createPublicKey(pem);
    type = k.asymmetricKeyType;
    curve = k.asymmetricKeyDetails?.namedCurve;
  } catch {
    throw new FirmwareError('ERR_FIRMWARE_INVALID', 'the vendor key is not a public key in PEM');
  }
  if (!(type === 'ed25519' || (type === 'ec' && curve === 'prime256v1'))) {
    throw new FirmwareError('ERR_FIRMWARE_INVALID', 'the vendor key must be Ed25519 or EC P-256');
  }
}
