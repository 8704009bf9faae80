import { createCipheriv, createDecipheriv, createSecretKey, type KeyObject } from 'node:crypto';
import type { DtlsCryptoAddon } from './native.ts';
import { aeadParameters, type CipherSuite } from './suites.ts';

const EXPLICIT_NONCE = 8;

/** One direction of record protection: a key, its implicit salt (or IV), and the suite's AEAD. */
export abstract class AeadKey {
  readonly tagLength: number;
  /** Bytes of explicit nonce on each record: 8 for the AES suites, 0 for ChaCha20-Poly1305 (RFC 7905). */
  readonly recordIvLength: number;

  constructor(suite: CipherSuite) {
    this.tagLength = suite.tagLength;
    this.recordIvLength = aeadParameters(suite.aead).recordIvLength;
  }

  /** Ciphertext expansion: explicit nonce plus tag. */
  get overhead(): number {
    return this.recordIvLength + this.tagLength;
  }

  /**
   * Writes explicit_nonce || ciphertext || tag into `out` at `offset` (room for `overhead` + plaintext bytes)
   * and returns the number of bytes written. `explicit` is the record's epoch||sequence, never reused; the AES
   * suites carry it as the explicit nonce, ChaCha20-Poly1305 folds it into its IV instead.
   */
  abstract sealInto(explicit: Buffer, aad: Buffer, plaintext: Buffer, out: Buffer, offset: number): number;

  /** The plaintext length of a record fragment of this length (negative: too short to be one). */
  plaintextLength(fragmentLength: number): number {
    return fragmentLength - this.recordIvLength - this.tagLength;
  }

  /**
   * Returns the plaintext, or null if the record does not authenticate. `aad` covers plaintextLength().
   * `sequence` (the record's epoch||sequence) is needed where the nonce is not on the wire (ChaCha20).
   */
  open(fragment: Buffer, aad: Buffer, sequence?: Buffer): Buffer | null {
    const ptLen = this.plaintextLength(fragment.length);
    return ptLen < 0 ? null : this.openFragment(fragment, aad, ptLen, sequence);
  }

  /** open() for a fragment long enough to hold a nonce and a tag around `ptLen` bytes. */
  protected abstract openFragment(
    fragment: Buffer,
    aad: Buffer,
    ptLen: number,
    sequence?: Buffer,
  ): Buffer | null;

  /**
   * Moves the bytes this key keeps for its life into the session's own allocation (bytes.ts packOwned); a key
   * without such bytes (ChaCha20's KeyObject) keeps what it has.
   */
  relocate(_move: (b: Buffer) => Buffer): void {}

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
  private keySalt: Buffer;

  constructor(
    suite: CipherSuite,
    key: Buffer,
    salt: Buffer,
    private readonly addon: DtlsCryptoAddon,
  ) {
    super(suite);
    this.gcm = suite.aead === 'aes-128-gcm';
    // From Node's pool: an established session moves it into its own allocation (relocate, packSession), so
    // no pool slab stays pinned for the session's life, and a handshake pays no ArrayBuffer of its own per key.
    this.keySalt = Buffer.allocUnsafe(key.length + salt.length);
    key.copy(this.keySalt, 0);
    salt.copy(this.keySalt, key.length);
  }

  override relocate(move: (b: Buffer) => Buffer): void {
    this.keySalt = move(this.keySalt);
  }

  sealInto(explicit: Buffer, aad: Buffer, plaintext: Buffer, out: Buffer, offset: number): number {
    return this.addon.seal(this.gcm, this.keySalt, explicit, aad, plaintext, out, offset);
  }

  protected openFragment(fragment: Buffer, aad: Buffer, ptLen: number): Buffer | null {
    const out = Buffer.allocUnsafe(ptLen);
    return this.addon.open(this.gcm, this.keySalt, fragment, aad, out) ? out : null;
  }
}

/**
 * ChaCha20-Poly1305 (RFC 7905) through node:crypto: the addon does AES only, and these suites are for peers
 * without AES hardware, whose record rates are low. Nonce: the 12-byte IV from the key block XORed with the
 * 64-bit epoch||sequence, left-padded with zeros (RFC 7905 §2).
 */
export class ChaChaAeadKey extends AeadKey {
  private readonly key: KeyObject;
  private readonly iv: Buffer;
  private readonly nonceBuffer = Buffer.alloc(12);

  constructor(suite: CipherSuite, key: Buffer, iv: Buffer) {
    super(suite);
    if (key.length !== 32 || iv.length !== 12)
      throw new RangeError('ChaCha20-Poly1305 needs a 32-byte key and 12-byte IV');
    this.key = createSecretKey(key);
    this.iv = Buffer.from(iv);
  }

  private nonce(sequence: Buffer): Buffer {
    this.iv.copy(this.nonceBuffer);
    for (let i = 0; i < 8; i++) {
      this.nonceBuffer[4 + i] = (this.nonceBuffer[4 + i] as number) ^ (sequence[i] as number);
    }
    return this.nonceBuffer;
  }

  sealInto(explicit: Buffer, aad: Buffer, plaintext: Buffer, out: Buffer, offset: number): number {
    const c = createCipheriv('chacha20-poly1305', this.key, this.nonce(explicit), { authTagLength: 16 });
    c.setAAD(aad, { plaintextLength: plaintext.length });
    let at = offset;
    at += c.update(plaintext).copy(out, at);
    at += c.final().copy(out, at);
    at += c.getAuthTag().copy(out, at);
    return at - offset;
  }

  protected openFragment(fragment: Buffer, aad: Buffer, ptLen: number, sequence?: Buffer): Buffer | null {
    if (!sequence) throw new RangeError('ChaCha20-Poly1305 records open with their sequence number');
    const d = createDecipheriv('chacha20-poly1305', this.key, this.nonce(sequence), { authTagLength: 16 });
    d.setAuthTag(fragment.subarray(ptLen));
    d.setAAD(aad, { plaintextLength: ptLen });
    const pt = d.update(fragment.subarray(0, ptLen));
    try {
      d.final();
    } catch {
      return null;
    }
    return pt;
  }
}

/** Through node:crypto: a Cipher object per record. The fallback, and the addon's reference. */
export class NodeCryptoAeadKey extends AeadKey {
  private readonly algorithm: 'aes-128-ccm' | 'aes-128-gcm' | 'chacha20-poly1305';
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
