import type { UplinkKey } from '../uplink/connection.ts';

export type KeystoreBackend = 'software' | 'tpm2';

export interface KeystoreStatus {
  backend: KeystoreBackend;
  hardwareBacked: boolean;
  uplinkKey: boolean;
}

/**
 * Where the gateway's keys live. The data key that encrypts secrets at rest (device PSKs, TOTP secrets, CA
 * keys) never leaves the keystore in the clear; callers only wrap and unwrap.
 */
export interface Keystore {
  readonly backend: KeystoreBackend;
  readonly hardwareBacked: boolean;
  /** AES-256-GCM under the data key; `context` is bound as AAD so a blob cannot be moved to another row. */
  wrap(plaintext: Buffer, context: string): Buffer;
  /** Throws `ERR_KEYSTORE_UNWRAP` when the blob was tampered with, moved, or wrapped under another key. */
  unwrap(wrapped: Buffer, context: string): Buffer;
  /** The uplink's TLS client key, created on first use; null only if it cannot exist (never silently). */
  uplinkKey(): UplinkKey;
  /** A PKCS#10 request for the uplink key, for the cloud operator's CA to sign. */
  uplinkCsr(subject: string): Promise<string>;
  /** The gateway's identity certificate (a self-signed CA, PEM); its key never leaves the keystore. */
  identityCertificate(): string;
  /** Issues a short-lived leaf for `csrPem`, signed by the identity key. */
  signLeaf(csrPem: string, opts: { days: number; sans: string[] }): string;
  status(): KeystoreStatus;
}
