import { createRequire } from 'node:module';

/** The portcullis-dtls-crypto addon (native/dtls-crypto/src/dtls_crypto.c); outputs go into caller's Buffers. */
export interface DtlsCryptoAddon {
  seal(
    gcm: boolean,
    keySalt: Buffer,
    explicitNonce: Buffer,
    aad: Buffer,
    plaintext: Buffer,
    out: Buffer,
    offset: number,
  ): number;
  open(gcm: boolean, keySalt: Buffer, fragment: Buffer, aad: Buffer, out: Buffer): boolean;
  prf(secret: Buffer, labelAndSeed: Buffer, out: Buffer): void;
  hmacSha256(key: Buffer, out: Buffer, ...parts: Buffer[]): void;
  sha256(parts: readonly Buffer[], out: Buffer): void;
}

/** The addon, or why it does not load (not built, built for another Node, OpenSSL symbols missing). */
export function loadDtlsCryptoAddon(): DtlsCryptoAddon | string {
  try {
    return createRequire(import.meta.url)('portcullis-dtls-crypto') as DtlsCryptoAddon;
  } catch (err) {
    return `the portcullis-dtls-crypto addon does not load (${(err as Error).message.split('\n')[0]})`;
  }
}
