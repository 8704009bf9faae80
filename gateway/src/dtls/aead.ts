import { createCipheriv, createDecipheriv, createSecretKey, type KeyObject } from 'node:crypto';
import type { DtlsCryptoAddon } from './native.ts';
import type { CipherSuite } from './suites.ts';

const EXPLICIT_NONCE = 8;

/** One direction of record protection: a key, its implicit salt, and the suite's AEAD. */
export abstract class AeadKey {
  readonly tagLength: number;

  constructor(suite: CipherSuite) {
    this.tagLength = suite.tagLength;
  }

  /** Ciphertext expansion: explicit nonce plus tag. */
  get overhead(): number {
    return EXPLICIT_NONCE + this.tagLength;
  }

  /**
   * Writes explicit_nonce || ciphertext || tag into `out` at `offset` (room for `overhead` + plaintext bytes)
   * and returns the number of bytes written. The explicit nonce is epoch||sequence, never reused.
   */
  abstract sealInto(explicit: Buffer, aad: Buffer, plaintext: Buffer, out: Buffer, offset: number): number;

  /** The plaintext length of a record fragment of this length (negative: too short to be one). */
  plaintextLength(fragmentLength: number): number {
    return fragmentLength - EXPLICIT_NONCE - this.tagLength;
  }

  /** Returns the plaintext, or null if the record does not authenticate. `aad` covers plaintextLength(). */
  open(fragment: Buffer, aad: Buffer): Buffer | null {
    const ptLen = this.plaintextLength(fragment.length);
    return ptLen < 0 ? null : this.openFragment(fragment, aad, ptLen);
  }

  /** open() for a fragment long enough to hold a nonce and a tag around `ptLen` bytes. */
  protected abstract openFragment(fragment: Buffer, aad: Buffer, ptLen: number): Buffer | null;

  /** Returns explicit_nonce || ciphertext || tag. */
  seal(explicit: Buffer, aad: Buffer, plaintext: Buffer): Buffer {
    const out = Buffer.allocUnsafe(this.overhead + plaintext.length);
    this.sealInto(explicit, aad, plaintext, out, 0);
    return out;
  }
}

/** Through the addon: no per-record objects, no per-session native memory. */
export class NativeAeadKey extends AeadKey {
  private readonly gcm: boolean;
  /** key || salt, the layout the addon takes; a session's whole record-protection state. */
  private readonly keySalt: Buffer;

  constructor(
    suite: CipherSuite,
    key: Buffer,
    salt: Buffer,
    private readonly addon: DtlsCryptoAddon,
  ) {
    super(suite);
    this.gcm = suite.aead === 'aes-128-gcm';
    // Its own 20 bytes, not a slice of Node's 8 KB allocation pool: a session lives for hours and would keep
    // a whole pool slab alive.
    this.keySalt = Buffer.allocUnsafeSlow(key.length + salt.length);
    key.copy(this.keySalt, 0);
    salt.copy(this.keySalt, key.length);
  }

  sealInto(explicit: Buffer, aad: Buffer, plaintext: Buffer, out: Buffer, offset: number): number {
    return this.addon.seal(this.gcm, this.keySalt, explicit, aad, plaintext, out, offset);
  }

  protected openFragment(fragment: Buffer, aad: Buffer, ptLen: number): Buffer | null {
    const out = Buffer.allocUnsafe(ptLen);
    return this.addon.open(this.gcm, this.keySalt, fragment, aad, out) ? out : null;
  }
}

/** Through node:crypto: a Cipher object per record. The fallback, and the addon's reference. */
export class NodeCryptoAeadKey extends AeadKey {
  private readonly algorithm: 'aes-128-ccm' | 'aes-128-gcm';
  /** A KeyObject, so the key is not re-imported for every record. */
  private readonly key: KeyObject;
  /** salt || explicit nonce, rewritten per record: cipher construction copies it, nothing keeps it. */
  private readonly nonceBuffer: Buffer;

  constructor(suite: CipherSuite, key: Buffer, salt: Buffer) {
    super(suite);
    this.algorithm = suite.aead;
    this.key = createSecretKey(key);
    this.nonceBuffer = Buffer.alloc(salt.length + EXPLICIT_NONCE);
    salt.copy(this.nonceBuffer, 0);
  }

  private nonce(explicit: Buffer): Buffer {
    explicit.copy(this.nonceBuffer, this.nonceBuffer.length - EXPLICIT_NONCE, 0, EXPLICIT_NONCE);
    return this.nonceBuffer;
  }

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

  protected openFragment(fragment: Buffer, aad: Buffer, ptLen: number): Buffer | null {
    const nonce = this.nonce(fragment.subarray(0, EXPLICIT_NONCE));
    const body = fragment.subarray(EXPLICIT_NONCE, EXPLICIT_NONCE + ptLen);
    const tag = fragment.subarray(EXPLICIT_NONCE + ptLen);
    const d =
      this.algorithm === 'aes-128-ccm'
        ? createDecipheriv('aes-128-ccm', this.key, nonce, { authTagLength: 8 })
        : createDecipheriv('aes-128-gcm', this.key, nonce, { authTagLength: 16 });
    d.setAuthTag(tag);
    d.setAAD(aad, { plaintextLength: ptLen });
    const pt = d.update(body);
    try {
      d.final();
    } catch {
      return null;
    }
    return pt;
  }
}
