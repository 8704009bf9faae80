import {
  createCipheriv,
  createDecipheriv,
  createPrivateKey,
  createPublicKey,
  createSecretKey,
  generateKeyPairSync,
  type KeyObject,
  randomBytes,
  sign,
  webcrypto,
} from 'node:crypto';
import { chmodSync, existsSync, lstatSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { checkDataDirectory, trustedOwners, UnsafePathError } from '../config/local-files.ts';
import { deriveFromDataKey, FileCounter } from './audit-anchor.ts';
import { KeystoreError } from './errors.ts';
import { IdentityCa } from './openssl-ca.ts';
import type { Keystore, KeystoreStatus, MonotonicCounter, UplinkKey } from './types.ts';

const WRAP_VERSION = 1;
const IV_LENGTH = 12;
const TAG_LENGTH = 16;

/**
 * Reads a key file, refusing one that others can read (a leaked key file is a leaked key) and one that another
 * account owns or that is not a plain file (a key planted by someone else decrypts everything wrapped after).
 */
function readSecretFile(path: string): Buffer {
  const st = lstatSync(path);
  if (!st.isFile()) throw new UnsafePathError(path, 'is not a regular file; a key must be one');
  if (!trustedOwners().has(st.uid)) {
    throw new UnsafePathError(path, `owned by uid ${st.uid}, not by root or the gateway's user`);
  }
  const mode = st.mode & 0o777;
  if (mode & 0o077) {
    throw new UnsafePathError(path, `is accessible to other users (mode ${mode.toString(8)}); expected 0600`);
  }
  return readFileSync(path);
}

function writeSecretFile(path: string, data: Buffer | string): void {
  // wx: never overwrite an existing key (that would orphan every secret wrapped under it).
  writeFileSync(path, data, { mode: 0o600, flag: 'wx' });
  chmodSync(path, 0o600);
}

/** A P-256 private key file (PKCS#8 PEM, 0600), made on first use; returns its PEM. */
export function ensureKeyFile(path: string): string {
  if (!existsSync(path)) {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    writeSecretFile(path, privateKey.export({ format: 'pem', type: 'pkcs8' }) as string);
  }
  return readSecretFile(path).toString('utf8');
}

/** AES-256-GCM wrapping shared by every backend once it holds the data key. */
export function wrapWith(dataKey: Buffer | KeyObject, plaintext: Buffer, context: string): Buffer {
  const iv = randomBytes(IV_LENGTH);
  const c = createCipheriv('aes-256-gcm', dataKey, iv);
  c.setAAD(Buffer.from(context, 'utf8'));
  const body = Buffer.concat([c.update(plaintext), c.final()]);
  return Buffer.concat([Buffer.from([WRAP_VERSION]), iv, c.getAuthTag(), body]);
}

export function unwrapWith(dataKey: Buffer | KeyObject, wrapped: Buffer, context: string): Buffer {
  if (wrapped.length < 1 + IV_LENGTH + TAG_LENGTH || wrapped[0] !== WRAP_VERSION) {
    throw new KeystoreError('ERR_KEYSTORE_UNWRAP', 'wrapped secret is malformed');
  }
  const iv = wrapped.subarray(1, 1 + IV_LENGTH);
  const tag = wrapped.subarray(1 + IV_LENGTH, 1 + IV_LENGTH + TAG_LENGTH);
  const d = createDecipheriv('aes-256-gcm', dataKey, iv);
  d.setAAD(Buffer.from(context, 'utf8'));
  d.setAuthTag(tag);
  try {
    return Buffer.concat([d.update(wrapped.subarray(1 + IV_LENGTH + TAG_LENGTH)), d.final()]);
  } catch {
    throw new KeystoreError(
      'ERR_KEYSTORE_UNWRAP',
      'wrapped secret does not authenticate (tampered, moved, or wrapped under another data key)',
    );
  }
}

/** Builds a PKCS#10 request signed by a P-256 key (PKCS#8), for the cloud CA to issue the uplink certificate. */
export async function csrFor(privateKeyPem: string, subject: string): Promise<string> {
  const priv = createPrivateKey(privateKeyPem);
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
  const pkcs8 = priv.export({ format: 'der', type: 'pkcs8' });
  const spki = createPublicKey(priv).export({ format: 'der', type: 'spki' });
  const keys = {
    privateKey: await webcrypto.subtle.importKey('pkcs8', pkcs8, alg, false, ['sign']),
    publicKey: await webcrypto.subtle.importKey('spki', spki, alg, true, ['verify']),
  };
  try {
    const x509 = await import('@peculiar/x509');
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({
      name: subject,
      keys,
      signingAlgorithm: alg,
    });
    return csr.toString('pem');
  } catch (err) {
    throw new KeystoreError('ERR_KEYSTORE_CSR', `cannot build the CSR: ${(err as Error).message}`);
  }
}

/**
 * Keys as files (0600) in `<dataDir>/keystore`, for machines without a TPM. Said loudly in status and logs:
 * anyone who can read these files holds every device secret.
 */
export class SoftwareKeystore implements Keystore {
  readonly backend = 'software' as const;
  readonly hardwareBacked = false;
  private readonly dataKey: KeyObject;
  private readonly uplinkKeyPath: string;

  constructor(dir: string) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    // The keystore, and every directory above it, must be nobody else's to change (owner and mode).
    checkDataDirectory(dir);
    const dataKeyPath = join(dir, 'data.key');
    if (!existsSync(dataKeyPath)) writeSecretFile(dataKeyPath, randomBytes(32));
    const raw = readSecretFile(dataKeyPath);
    if (raw.length !== 32)
      throw new KeystoreError('ERR_KEYSTORE_FILE', `${dataKeyPath} is not a 256-bit key`);
    // A KeyObject keeps the data key out of ordinary Buffers that could end up in a log by accident.
    this.dataKey = createSecretKey(raw);
    this.uplinkKeyPath = join(dir, 'uplink.key');
    const identityKey = join(dir, 'identity.key');
    ensureKeyFile(identityKey);
    this.ca = new IdentityCa(identityKey, join(dir, 'identity.pem'), [], process.env);
  }

  private readonly ca: IdentityCa;

  identityCertificate(): string {
    return this.ca.certificate('/CN=portcullis gateway identity (software)');
  }

  signLeaf(csrPem: string, opts: { days: number; sans: string[] }): string {
    this.identityCertificate();
    return this.ca.signLeaf(csrPem, opts);
  }

  wrap(plaintext: Buffer, context: string): Buffer {
    return wrapWith(this.dataKey, plaintext, context);
  }

  unwrap(wrapped: Buffer, context: string): Buffer {
    return unwrapWith(this.dataKey, wrapped, context);
  }

  private uplinkKeyPem(): string {
    return ensureKeyFile(this.uplinkKeyPath);
  }

  uplinkKey(): UplinkKey {
    return { kind: 'pem', pem: this.uplinkKeyPem() };
  }

  uplinkCsr(subject: string): Promise<string> {
    return csrFor(this.uplinkKeyPem(), subject);
  }

  status(): KeystoreStatus {
    return { backend: this.backend, hardwareBacked: false, uplinkKey: existsSync(this.uplinkKeyPath) };
  }

  deriveKey(purpose: string): KeyObject {
    return deriveFromDataKey(this.dataKey, purpose);
  }

  signWithIdentity(data: Buffer): Buffer {
    // The certificate an outside party checks the signature with exists before anything is signed.
    this.identityCertificate();
    const keyPem = ensureKeyFile(join(dirname(this.uplinkKeyPath), 'identity.key'));
    return sign('sha256', data, createPrivateKey(keyPem));
  }

  auditCounter(): MonotonicCounter {
    return new FileCounter(dirname(this.uplinkKeyPath));
  }
}
