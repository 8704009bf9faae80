import type { KeyObject } from 'node:crypto';

export type KeystoreBackend = 'software' | 'tpm2';

/**
 * A counter that only goes up, kept outside the database: the audit log binds its keyed head to it so a database
 * rolled back to an earlier copy no longer matches (docs/audit.md). A TPM NV counter on `tpm2`; a file in the
 * keystore directory on `software` (which only an attacker without the keystore's files cannot roll back).
 */
export interface MonotonicCounter {
  readonly kind: 'tpm2-nv' | 'file';
  /**
   * The current value, creating the counter on first use; `fresh` when this keystore had none before. With
   * `create` false (a read-only check) a missing counter is reported as fresh at 0 and not created.
   */
  open(create?: boolean): { value: number; fresh: boolean };
  /** Adds one and returns the new value. */
  increment(): number;
}

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
  /**
   * A 256-bit key for one purpose, derived (HKDF-SHA-256) from the data key: the same purpose gives the same key
   * on every start, and it is as protected as the data key (sealed in the TPM on `tpm2`).
   */
  deriveKey(purpose: string): KeyObject;
  /** ECDSA P-256 / SHA-256 signature (DER) by the identity key, which never leaves the keystore. */
  signWithIdentity(data: Buffer): Buffer;
  /** The counter that anchors the audit log's sequence (see MonotonicCounter). */
  auditCounter(): MonotonicCounter;
}

/** How the uplink proves itself: a PEM key in this process, or a provider key only a TPM can use. */
export type UplinkKey =
  | { kind: 'pem'; pem: string }
  /**
   * A key that lives in the TPM: `keyPem` is the TPM-wrapped blob (TSS2 PRIVATE KEY), usable only through
   * OpenSSL's tpm2 provider, which `opensslConfig` loads in a separate process (see uplink/broker-worker.ts).
   */
  | { kind: 'tpm2'; keyPem: string; opensslConfig: string; env: Record<string, string> };
