import { createHash, createHmac, randomBytes } from 'node:crypto';
import { type AeadKey, ChaChaAeadKey, NativeAeadKey, NodeCryptoAeadKey } from './aead.ts';
import { DtlsError } from './errors.ts';
import { type DtlsCryptoAddon, loadDtlsCryptoAddon } from './native.ts';
import { nodeCryptoPrf, type Prf } from './prf.ts';
import { CIPHER_SUITES, type CipherSuite } from './suites.ts';

/**
 * Who computes the DTLS server's cryptography that runs per record and per handshake (record AEAD, PRF, cookie
 * HMAC, transcript hash). `native`: the portcullis-dtls-crypto addon (native/dtls-crypto) — per record about a
 * seventh of `node-crypto`'s cost, per handshake a third less server CPU. `node-crypto` builds node:crypto objects
 * per operation; it is the fallback where the addon does not load and the reference the addon is checked against.
 * Signatures and ECDHE stay on node:crypto in both.
 */
export type CryptoImplementation = 'native' | 'node-crypto';

export interface DtlsCrypto {
  readonly implementation: CryptoImplementation;
  readonly prf: Prf;
  hmacSha256(key: Buffer, ...parts: Buffer[]): Buffer;
  sha256(parts: readonly Buffer[]): Buffer;
  aeadKey(suite: CipherSuite, key: Buffer, salt: Buffer): AeadKey;
}

const nodeCrypto: DtlsCrypto = {
  implementation: 'node-crypto',
  prf: nodeCryptoPrf,
  hmacSha256(key, ...parts) {
    const h = createHmac('sha256', key);
    for (const p of parts) h.update(p);
    return h.digest();
  },
  sha256(parts) {
    const h = createHash('sha256');
    for (const p of parts) h.update(p);
    return h.digest();
  },
  aeadKey: (suite, key, salt) =>
    suite.aead === 'chacha20-poly1305'
      ? new ChaChaAeadKey(suite, key, salt)
      : new NodeCryptoAeadKey(suite, key, salt),
};

function nativeCrypto(addon: DtlsCryptoAddon): DtlsCrypto {
  return {
    implementation: 'native',
    prf(secret, labelAndSeed, length) {
      const out = Buffer.allocUnsafe(length);
      addon.prf(secret, labelAndSeed, out);
      return out;
    },
    hmacSha256(key, ...parts) {
      const out = Buffer.allocUnsafe(32);
      addon.hmacSha256(key, out, ...parts);
      return out;
    },
    sha256(parts) {
      const out = Buffer.allocUnsafe(32);
      addon.sha256(parts, out);
      return out;
    },
    // The addon does the AES suites; ChaCha20-Poly1305 runs on node:crypto (see ChaChaAeadKey).
    aeadKey: (suite, key, salt) =>
      suite.aead === 'chacha20-poly1305'
        ? new ChaChaAeadKey(suite, key, salt)
        : new NativeAeadKey(suite, key, salt, addon),
  };
}

/**
 * Proves the addon computes what node:crypto computes — PRF (with a secret longer than an HMAC block), HMAC,
 * hash, both AEADs, and a forged record refused — before any session relies on it: an addon built against the
 * wrong headers must not protect traffic. Returns what disagreed, or null.
 */
export function selfTest(candidate: DtlsCrypto, reference: DtlsCrypto = nodeCrypto): string | null {
  const short = randomBytes(48);
  const long = randomBytes(131);
  const seed = randomBytes(77);
  const data = randomBytes(300);
  try {
    for (const secret of [short, long]) {
      if (!candidate.prf(secret, seed, 100).equals(reference.prf(secret, seed, 100))) return 'PRF';
      if (!candidate.hmacSha256(secret, seed, data).equals(reference.hmacSha256(secret, seed, data)))
        return 'HMAC';
    }
    if (!candidate.sha256([seed, data]).equals(reference.sha256([seed, data]))) return 'SHA-256';
    for (const name of ['TLS_PSK_WITH_AES_128_CCM_8', 'TLS_PSK_WITH_AES_128_GCM_SHA256'] as const) {
      const suite = { name, ...CIPHER_SUITES[name] };
      const key = randomBytes(16);
      const salt = randomBytes(4);
      const explicit = randomBytes(8);
      const aad = randomBytes(13);
      const sealed = candidate.aeadKey(suite, key, salt).seal(explicit, aad, data);
      const forged = Buffer.from(sealed);
      forged[10] = (forged[10] as number) ^ 1;
      const opener = candidate.aeadKey(suite, key, salt);
      if (
        !sealed.equals(reference.aeadKey(suite, key, salt).seal(explicit, aad, data)) ||
        !opener.open(sealed, aad)?.equals(data) ||
        opener.open(forged, aad) !== null
      ) {
        return suite.aead;
      }
    }
  } catch (err) {
    return `an error (${(err as Error).message})`;
  }
  return null;
}

function loadNative(): DtlsCrypto | string {
  const addon = loadDtlsCryptoAddon();
  if (typeof addon === 'string') return addon;
  const candidate = nativeCrypto(addon);
  const disagreement = selfTest(candidate);
  return disagreement
    ? `the portcullis-dtls-crypto addon disagrees with node:crypto on ${disagreement}`
    : candidate;
}

let loaded: DtlsCrypto | string | undefined;

/**
 * The addon, loaded and self-tested on first use rather than at import: most CLI commands import this module
 * (through the identity code) but never serve DTLS.
 */
function native(): DtlsCrypto | string {
  loaded ??= loadNative();
  return loaded;
}

/** What sessions get by default, and why it is not the addon when it is not. */
export function dtlsCryptoStatus(): { implementation: CryptoImplementation; fallbackReason?: string } {
  const n = native();
  return typeof n === 'string'
    ? { implementation: 'node-crypto', fallbackReason: n }
    : { implementation: 'native' };
}

/** The requested implementation, or the default; asking for `native` where it does not load is an error. */
export function resolveDtlsCrypto(implementation?: CryptoImplementation): DtlsCrypto {
  switch (implementation) {
    case undefined: {
      const n = native();
      return typeof n === 'string' ? nodeCrypto : n;
    }
    case 'node-crypto':
      return nodeCrypto;
    case 'native': {
      const n = native();
      if (typeof n === 'string') {
        throw new DtlsError('ERR_DTLS_OPTIONS', `native DTLS crypto requested, but ${n}`);
      }
      return n;
    }
    default:
      throw new DtlsError(
        'ERR_DTLS_OPTIONS',
        `unknown DTLS crypto implementation "${String(implementation)}"`,
      );
  }
}
