import { createCipheriv, createDecipheriv, createSecretKey, type KeyObject } from 'node:crypto';
import type { CipherSuite } from './suites.ts';

const EXPLICIT_NONCE = 8;

/** One direction of record protection: a key, its implicit salt, and the suite's AEAD. */
export class AeadKey {
  private readonly algorithm: 'aes-128-ccm' | 'aes-128-gcm';
  readonly tagLength: number;
  /** A KeyObject, so the key is not re-imported for every record. */
  private readonly key: KeyObject;
  /** salt || explicit nonce, rewritten per record: cipher construction copies it, nothing keeps it. */
  private readonly nonceBuffer: Buffer;

  constructor(suite: CipherSuite, key: Buffer, salt: Buffer) {
    this.algorithm = suite.aead;
    this.tagLength = suite.tagLength;
    this.key = createSecretKey(key);
    this.nonceBuffer = Buffer.alloc(salt.length + EXPLICIT_NONCE);
    salt.copy(this.nonceBuffer, 0);
  }

  /** Ciphertext expansion: explicit nonce plus tag. */
  get overhead(): number {
    return EXPLICIT_NONCE + this.tagLength;
  }

  private nonce(explicit: Buffer): Buffer {
    explicit.copy(this.nonceBuffer, this.nonceBuffer.length - EXPLICIT_NONCE, 0, EXPLICIT_NONCE);
    return this.nonceBuffer;
  }

  /**
   * Writes explicit_nonce || ciphertext || tag into `out` at `offset` (room for `overhead` + plaintext bytes)
   * and returns the number of bytes written. The explicit nonce is epoch||sequence, never reused.
   */
  sealInto(explicit: Buffer, aad: Buffer, plaintext: Buffer, out: Buffer, offset: number): number {
    const c =
      this.algorithm === 'aes-128-ccm'
        ? createCipheriv('aes-128-ccm', this.key, this.nonce(explicit), { authTagLength: 8 })
        : createCipheriv('aes-128-gcm', this.key, this.nonce(explicit), { authTagLength: 16 });
    c.setAAD(aad, { plaintextLength: plaintext.length });
    explicit.copy(out, offset, 0, EXPLICIT_NONCE);
    let at = offset + EXPLICIT_NONCE;
    at += c.update(plaintext).copy(out, at);
    at += c.final().copy(out, at);
    at += c.getAuthTag().copy(out, at);
    return at - offset;
  }

  /** Returns explicit_nonce || ciphertext || tag. */
  seal(explicit: Buffer, aad: Buffer, plaintext: Buffer): Buffer {
    const out = Buffer.allocUnsafe(this.overhead + plaintext.length);
    this.sealInto(explicit, aad, plaintext, out, 0);
    return out;
  }

  /** Returns the plaintext, or null if the record does not authenticate. */
  open(fragment: Buffer, aadFor: (plaintextLength: number) => Buffer): Buffer | null {
    const ptLen = fragment.length - EXPLICIT_NONCE - this.tagLength;
    if (ptLen < 0) return null;
    const nonce = this.nonce(fragment.subarray(0, EXPLICIT_NONCE));
    const body = fragment.subarray(EXPLICIT_NONCE, EXPLICIT_NONCE + ptLen);
    const tag = fragment.subarray(EXPLICIT_NONCE + ptLen);
    const d =
      this.algorithm === 'aes-128-ccm'
        ? createDecipheriv('aes-128-ccm', this.key, nonce, { authTagLength: 8 })
        : createDecipheriv('aes-128-gcm', this.key, nonce, { authTagLength: 16 });
    d.setAuthTag(tag);
    d.setAAD(aadFor(ptLen), { plaintextLength: ptLen });
    const pt = d.update(body);
    try {
      d.final();
    } catch {
      return null;
    }
    return pt;
  }
}
