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

const LABELS = {
  master: Buffer.from('master secret', 'ascii'),
  extendedMaster: Buffer.from('extended master secret', 'ascii'),
  keyExpansion: Buffer.from('key expansion', 'ascii'),
  client: Buffer.from('client finished', 'ascii'),
  server: Buffer.from('server finished', 'ascii'),
};

/** label || seed in one allocation (the labels are encoded once, at load). */
function labelled(label: Buffer, seed: Buffer, seed2?: Buffer): Buffer {
  const out = Buffer.allocUnsafe(label.length + seed.length + (seed2 ? seed2.length : 0));
  label.copy(out, 0);
  seed.copy(out, label.length);
  if (seed2) seed2.copy(out, label.length + seed.length);
  return out;
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
    ? prf(preMaster, labelled(LABELS.extendedMaster, sessionHash), 48)
    : prf(preMaster, labelled(LABELS.master, clientRandom, serverRandom), 48);
}

export interface KeyBlock {
  clientKey: Buffer;
  serverKey: Buffer;
  clientSalt: Buffer;
  serverSalt: Buffer;
}

/**
 * AEAD suites: no MAC keys; 16-byte AES keys with 4-byte implicit nonce salts (RFC 5288, RFC 6655), or 32-byte
 * ChaCha20 keys with 12-byte IVs (RFC 7905). `clientSalt`/`serverSalt` are the fixed IVs either way.
 */
export function keyBlock(
  prf: Prf,
  master: Buffer,
  clientRandom: Buffer,
  serverRandom: Buffer,
  lengths: { keyLength: number; fixedIvLength: number } = { keyLength: 16, fixedIvLength: 4 },
): KeyBlock {
  const k = lengths.keyLength;
  const iv = lengths.fixedIvLength;
  const kb = prf(master, labelled(LABELS.keyExpansion, serverRandom, clientRandom), 2 * (k + iv));
  return {
    clientKey: kb.subarray(0, k),
    serverKey: kb.subarray(k, 2 * k),
    clientSalt: kb.subarray(2 * k, 2 * k + iv),
    serverSalt: kb.subarray(2 * k + iv, 2 * (k + iv)),
  };
}

export function finishedVerifyData(
  prf: Prf,
  master: Buffer,
  who: 'client' | 'server',
  transcriptHash: Buffer,
): Buffer {
  return prf(master, labelled(LABELS[who], transcriptHash), 12);
}
