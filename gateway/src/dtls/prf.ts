import { createHmac, createSecretKey } from 'node:crypto';

/** TLS 1.2 PRF with SHA-256 (RFC 5246 §5) over label || seed, already joined. */
export type Prf = (secret: Buffer, labelAndSeed: Buffer, length: number) => Buffer;

/** The PRF on node:crypto's Hmac: the fallback, and the reference the addon is checked against. */
export const nodeCryptoPrf: Prf = (secret, labelAndSeed, length) => {
  // Imported once for the two HMACs per output block.
  const key = createSecretKey(secret);
  const out = Buffer.allocUnsafe(length);
  let a = labelAndSeed;
  let filled = 0;
  while (filled < length) {
    a = createHmac('sha256', key).update(a).digest();
    const block = createHmac('sha256', key).update(a).update(labelAndSeed).digest();
    filled += block.copy(out, filled);
  }
  return out;
};

function labelled(label: string, ...seed: Buffer[]): Buffer {
  return Buffer.concat([Buffer.from(label, 'ascii'), ...seed]);
}

export function masterSecret(
  prf: Prf,
  preMaster: Buffer,
  clientRandom: Buffer,
  serverRandom: Buffer,
  sessionHash: Buffer | null,
): Buffer {
  // RFC 7627: with Extended Master Secret the secret binds the whole handshake up to ClientKeyExchange.
  return sessionHash
    ? prf(preMaster, labelled('extended master secret', sessionHash), 48)
    : prf(preMaster, labelled('master secret', clientRandom, serverRandom), 48);
}

export interface KeyBlock {
  clientKey: Buffer;
  serverKey: Buffer;
  clientSalt: Buffer;
  serverSalt: Buffer;
}

/** AEAD suites: no MAC keys, 16-byte AES keys, 4-byte implicit nonce salts (RFC 5288, RFC 6655). */
export function keyBlock(prf: Prf, master: Buffer, clientRandom: Buffer, serverRandom: Buffer): KeyBlock {
  const kb = prf(master, labelled('key expansion', serverRandom, clientRandom), 40);
  return {
    clientKey: kb.subarray(0, 16),
    serverKey: kb.subarray(16, 32),
    clientSalt: kb.subarray(32, 36),
    serverSalt: kb.subarray(36, 40),
  };
}

export function finishedVerifyData(
  prf: Prf,
  master: Buffer,
  who: 'client' | 'server',
  transcriptHash: Buffer,
): Buffer {
  return prf(master, labelled(`${who} finished`, transcriptHash), 12);
}
