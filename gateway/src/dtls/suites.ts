export type KeyExchange = 'psk' | 'ecdhe_ecdsa' | 'ecdhe_psk';
export type AeadAlgorithm = 'aes-128-ccm' | 'aes-128-gcm' | 'chacha20-poly1305';

export interface CipherSuite {
  readonly id: number;
  readonly name: CipherSuiteName;
  readonly keyExchange: KeyExchange;
  readonly aead: AeadAlgorithm;
  readonly tagLength: 8 | 16;
}

/** Key and implicit IV lengths from the key block, and the explicit nonce each record carries. */
export function aeadParameters(aead: AeadAlgorithm): {
  keyLength: number;
  fixedIvLength: number;
  recordIvLength: number;
} {
  // AES-GCM and AES-CCM (RFC 5288, RFC 6655): 4-byte salt from the key block, 8-byte explicit nonce per record.
  // ChaCha20-Poly1305 (RFC 7905 §2): 12-byte IV from the key block XORed with the 64-bit epoch||sequence; no
  // explicit nonce on the wire.
  return aead === 'chacha20-poly1305'
    ? { keyLength: 32, fixedIvLength: 12, recordIvLength: 0 }
    : { keyLength: 16, fixedIvLength: 4, recordIvLength: 8 };
}

/**
 * Only AEAD suites with the SHA-256 PRF: no CBC, RC4, 3DES or NULL can ever be negotiated. Ids: RFC 6655 and
 * RFC 7251 (CCM_8), RFC 5487 and RFC 5289 (GCM), RFC 8442 (ECDHE_PSK with AES), RFC 7905 (ChaCha20-Poly1305).
 */
export const CIPHER_SUITES = {
  TLS_PSK_WITH_AES_128_CCM_8: { id: 0xc0a8, keyExchange: 'psk', aead: 'aes-128-ccm', tagLength: 8 },
  TLS_PSK_WITH_AES_128_GCM_SHA256: { id: 0x00a8, keyExchange: 'psk', aead: 'aes-128-gcm', tagLength: 16 },
  TLS_PSK_WITH_CHACHA20_POLY1305_SHA256: {
    id: 0xccab,
    keyExchange: 'psk',
    aead: 'chacha20-poly1305',
    tagLength: 16,
  },
  TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8: {
    id: 0xc0ae,
    keyExchange: 'ecdhe_ecdsa',
    aead: 'aes-128-ccm',
    tagLength: 8,
  },
  TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256: {
    id: 0xc02b,
    keyExchange: 'ecdhe_ecdsa',
    aead: 'aes-128-gcm',
    tagLength: 16,
  },
  TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256: {
    id: 0xcca9,
    keyExchange: 'ecdhe_ecdsa',
    aead: 'chacha20-poly1305',
    tagLength: 16,
  },
  TLS_ECDHE_PSK_WITH_AES_128_CCM_8_SHA256: {
    id: 0xd003,
    keyExchange: 'ecdhe_psk',
    aead: 'aes-128-ccm',
    tagLength: 8,
  },
  TLS_ECDHE_PSK_WITH_AES_128_GCM_SHA256: {
    id: 0xd001,
    keyExchange: 'ecdhe_psk',
    aead: 'aes-128-gcm',
    tagLength: 16,
  },
  TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256: {
    id: 0xccac,
    keyExchange: 'ecdhe_psk',
    aead: 'chacha20-poly1305',
    tagLength: 16,
  },
} as const satisfies Record<string, Omit<CipherSuite, 'name'>>;

export type CipherSuiteName = keyof typeof CIPHER_SUITES;

export const CIPHER_SUITE_NAMES = Object.keys(CIPHER_SUITES) as CipherSuiteName[];

/**
 * Forward-secret suites first: a client that offers ECDHE gets it. Within each, CCM_8 (the smallest records,
 * what constrained stacks use), then GCM, then ChaCha20-Poly1305 — unless the client itself puts a ChaCha20
 * suite first (an MCU without AES hardware), see `serverPreference` in server-handshake/negotiate.ts.
 */
export const DEFAULT_SUITE_ORDER: readonly CipherSuiteName[] = [
  'TLS_ECDHE_PSK_WITH_AES_128_CCM_8_SHA256',
  'TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8',
  'TLS_ECDHE_PSK_WITH_AES_128_GCM_SHA256',
  'TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256',
  'TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256',
  'TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256',
  'TLS_PSK_WITH_AES_128_CCM_8',
  'TLS_PSK_WITH_AES_128_GCM_SHA256',
  'TLS_PSK_WITH_CHACHA20_POLY1305_SHA256',
];

export function suiteByName(name: CipherSuiteName): CipherSuite {
  return { name, ...CIPHER_SUITES[name] };
}

/** Read per handshake (the client's first suite): one shared, frozen object per suite, not a copy each time. */
const SUITES_BY_ID: ReadonlyMap<number, CipherSuite> = new Map(
  CIPHER_SUITE_NAMES.map((name) => [CIPHER_SUITES[name].id, Object.freeze(suiteByName(name))]),
);

export function suiteById(id: number): CipherSuite | undefined {
  return SUITES_BY_ID.get(id);
}

export function usesPsk(s: CipherSuite): boolean {
  return s.keyExchange === 'psk' || s.keyExchange === 'ecdhe_psk';
}

export function usesEcdhe(s: CipherSuite): boolean {
  return s.keyExchange === 'ecdhe_ecdsa' || s.keyExchange === 'ecdhe_psk';
}
