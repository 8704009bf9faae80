import { createHmac, type KeyObject, timingSafeEqual, verify, X509Certificate } from 'node:crypto';
import type { Keystore, MonotonicCounter } from '../keystore/index.ts';

/**
 * What the audit log needs from the keystore to make its head unforgeable from the database alone: a MAC key, a
 * counter outside the database, and the identity key to sign checkpoints with (docs/audit.md).
 */
export interface AuditSealing {
  /** HMAC-SHA-256 key for the head, derived from the keystore's data key (sealed in the TPM on `tpm2`). */
  readonly key: KeyObject;
  readonly counter: MonotonicCounter;
  /** ECDSA P-256 / SHA-256 (DER) by the gateway identity key. */
  sign(data: Buffer): Buffer;
  /** The identity certificate (PEM) an outside party verifies checkpoints with. */
  identityCertificate(): string;
}

/** The HKDF purpose of the head key: changing it re-keys every head, so it is versioned. */
export const AUDIT_HEAD_KEY_PURPOSE = 'portcullis audit head v1';

export function sealingFrom(keystore: Keystore): AuditSealing {
  return {
    key: keystore.deriveKey(AUDIT_HEAD_KEY_PURPOSE),
    counter: keystore.auditCounter(),
    sign: (data) => keystore.signWithIdentity(data),
    identityCertificate: () => keystore.identityCertificate(),
  };
}

/** HMAC over the head's sequence number, hash and counter value (hex). */
export function headMac(key: KeyObject, seq: number, hash: string, counter: number): string {
  return createHmac('sha256', key)
    .update(`portcullis audit head v1\n${seq}\n${hash}\n${counter}\n`)
    .digest('hex');
}

export function macMatches(expected: string, presented: string): boolean {
  const a = Buffer.from(expected, 'hex');
  const b = Buffer.from(presented, 'hex');
  return a.length === b.length && a.length > 0 && timingSafeEqual(a, b);
}

/**
 * The exact bytes a checkpoint's signature covers: plain lines an outside party rebuilds from the exported
 * fields (with printf and `openssl dgst -verify`, or node:crypto) without a JSON canonicaliser.
 */
export function checkpointMessage(c: { seq: number; hash: string; counter: number; ts: string }): Buffer {
  return Buffer.from(
    `portcullis audit checkpoint v1\nseq=${c.seq}\nhash=${c.hash}\ncounter=${c.counter}\nts=${c.ts}\n`,
    'utf8',
  );
}

/** Whether the checkpoint's signature verifies with the identity certificate's public key. */
export function verifyCheckpoint(
  c: { seq: number; hash: string; counter: number; ts: string; signature: string },
  certificatePem: string,
): boolean {
  try {
    const key = new X509Certificate(certificatePem).publicKey;
    return verify('sha256', checkpointMessage(c), key, Buffer.from(c.signature, 'base64'));
  } catch {
    return false;
  }
}
