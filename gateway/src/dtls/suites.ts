export type KeyExchange = 'psk' | 'ecdhe_ecdsa' | 'ecdhe_psk';
export type AeadAlgorithm = 'aes-128-ccm' | 'aes-128-gcm';

export interface CipherSuite {
  readonly id: number;
  readonly name: CipherSuiteName;
  readonly keyExchange: KeyExchange;
  readonly aead: AeadAlgorithm;
  readonly tagLength: 8 | 16;
}

/** Only AEAD suites with SHA-256 PRF: no CBC, RC4, 3DES or NULL can ever be negotiated. */
export const CIPHER_SUITES = {
  TLS_PSK_WITH_AES_128_CCM_8: { id: 0xc0a8, keyExchange: 'psk', aead: 'aes-128-ccm', tagLength: 8 },
  TLS_PSK_WITH_AES_128_GCM_SHA256: { id: 0x00a8, keyExchange: 'psk', aead: 'aes-128-gcm', tagLength: 16 },
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
  TLS_ECDHE_PSK_WITH_AES_128_CCM_8_SHA256: {
    id: 0xd003,
    keyExchange: 'ecdhe_psk',
    aead: 'aes-128-ccm',
    tagLength: 8,
  },
} as const satisfies Record<string, Omit<CipherSuite, 'name'>>;

export type CipherSuiteName = keyof typeof CIPHER_SUITES;

export const CIPHER_SUITE_NAMES = Object.keys(CIPHER_SUITES) as CipherSuiteName[];

export const DEFAULT_SUITE_ORDER: readonly CipherSuiteName[] = [
  'TLS_PSK_WITH_AES_128_CCM_8',
  'TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8',
  'TLS_PSK_WITH_AES_128_GCM_SHA256',
  'TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256',
];

export function suiteByName(name: CipherSuiteName): CipherSuite {
  return { name, ...CIPHER_SUITES[name] };
}

export function suiteById(id: number): CipherSuite | undefined {
  for (const name of CIPHER_SUITE_NAMES) if (CIPHER_SUITES[name].id === id) return suiteByName(name);
  return undefined;
}

export function usesPsk(s: CipherSuite): boolean {
  return s.keyExchange === 'psk' || s.keyExchange === 'ecdhe_psk';
}

export function usesEcdhe(s: CipherSuite): boolean {
  return s.keyExchange === 'ecdhe_ecdsa' || s.keyExchange === 'ecdhe_psk';
}
