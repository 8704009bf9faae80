import { createPrivateKey, createPublicKey, type KeyObject, sign, verify } from 'node:crypto';
import semver from 'semver';
import { z } from 'zod';
import { parseJsonWith } from '../json.ts';
import { UpdateError } from './errors.ts';

/** Paths inside a release: relative, forward slashes, no `.`/`..` segments, no hidden tricks. */
const relPath = z
  .string()
  .min(1)
  .max(512)
  .regex(/^[A-Za-z0-9@._+-]+(\/[A-Za-z0-9@._+-]+)*$/, { error: 'a relative path of plain segments' })
  .refine((p) => p.split('/').every((s) => s !== '.' && s !== '..'), { error: 'no "." or ".." segments' });

const version = z
  .string()
  .refine((v) => semver.valid(v) === v, { error: 'must be a semantic version (1.2.3)' });

export const manifestSchema = z.strictObject({
  format: z.literal(1),
  product: z.literal('portcullis'),
  version,
  /** Oldest installed version this bundle may replace. */
  minVersion: version,
  /** Node.js process.arch values the release runs on. */
  hardware: z.array(z.enum(['x64', 'arm64'])).min(1),
  notes: z.string().max(10_000),
  createdAt: z.iso.datetime(),
  /** SHA-256 (hex) of every file of the release, by path under `files/`. */
  files: z.record(relPath, z.string().regex(/^[0-9a-f]{64}$/)).refine((f) => Object.keys(f).length > 0, {
    error: 'a release has files',
  }),
});
export type Manifest = z.infer<typeof manifestSchema>;

export function parseManifest(bytes: Buffer): Manifest {
  const r = parseJsonWith(manifestSchema, bytes.toString('utf8'), 'manifest');
  if (!r.ok) {
    throw new UpdateError(
      'ERR_UPDATE_INVALID',
      r.notJson ? 'manifest.json is not JSON' : `manifest.json: ${r.problem}`,
    );
  }
  return r.data;
}

/** The release key's public half, as pinned in the image (PEM, Ed25519). */
export function loadReleaseKey(pem: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPublicKey(pem);
  } catch {
    throw new UpdateError('ERR_UPDATE_CONFIG', 'the pinned release key is not a public key in PEM');
  }
  if (key.asymmetricKeyType !== 'ed25519')
    throw new UpdateError('ERR_UPDATE_CONFIG', 'the pinned release key must be Ed25519');
  return key;
}

/** Ed25519 over the manifest's exact bytes; the signature file holds it in base64. */
export function signManifest(bytes: Buffer, privatePem: string): string {
  return sign(null, bytes, createPrivateKey(privatePem)).toString('base64');
}

export function checkSignature(bytes: Buffer, signature: Buffer, key: KeyObject): void {
  const sig = Buffer.from(signature.toString('utf8').trim(), 'base64');
  if (sig.length !== 64 || !verify(null, bytes, key, sig)) {
    throw new UpdateError('ERR_UPDATE_SIGNATURE', 'the bundle is not signed by the pinned release key');
  }
}
