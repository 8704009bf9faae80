import { createCipheriv, createDecipheriv } from 'node:crypto';
import type { CipherSuite } from './suites.ts';

const EXPLICIT_NONCE = 8;

/** One direction of record protection: a key, its implicit salt, and the suite's AEAD. */
export class AeadKey {
  private readonly algorithm: 'aes-128-ccm' | 'aes-128-gcm';
  readonly tagLength: number;

  constructor(
    suite: CipherSuite,
    private readonly key: Buffer,
    private readonly salt: Buffer,
  ) {
    this.algorithm = suite.aead;
    this.tagLength = suite.tagLength;
  }

  /** Ciphertext expansion: explicit nonce plus tag. */
  get overhead(): number {
    return EXPLICIT_NONCE + this.tagLength;
  }

  private nonce(explicit: Buffer): Buffer {
    return Buffer.concat([this.salt, explicit]);
  }

  /** Returns explicit_nonce || ciphertext || tag. The explicit nonce is epoch||sequence, never reused. */
  seal(explicit: Buffer, aad: Buffer, plaintext: Buffer): Buffer {
    const c =
      this.algorithm === 'aes-128-ccm'
        ? createCipheriv('aes-128-ccm', this.key, this.nonce(explicit), { authTagLength: 8 })
        : createCipheriv('aes-128-gcm', this.key, this.nonce(explicit), { authTagLength: 16 });
    c.setAAD(aad, { plaintextLength: plaintext.length });
    const body = c.update(plaintext);
    c.final();
    return Buffer.concat([explicit, body, c.getAuthTag()]);
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
