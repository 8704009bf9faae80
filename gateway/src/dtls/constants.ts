/** Wire constants from RFC 5246, RFC 6347, RFC 6066, RFC 7250, RFC 7627, RFC 8422, RFC 8449 and RFC 9146. */

export const DTLS_1_2 = 0xfefd;
/** RFC 6347 §4.2.1: HelloVerifyRequest is sent with the DTLS 1.0 version for backward compatibility. */
export const DTLS_1_0 = 0xfeff;

export const ContentType = {
  changeCipherSpec: 20,
  alert: 21,
  handshake: 22,
  applicationData: 23,
  /** RFC 9146 record carrying a Connection ID. */
  tls12Cid: 25,
} as const;

export const HandshakeType = {
  helloRequest: 0,
  clientHello: 1,
  serverHello: 2,
  helloVerifyRequest: 3,
  certificate: 11,
  serverKeyExchange: 12,
  certificateRequest: 13,
  serverHelloDone: 14,
  certificateVerify: 15,
  clientKeyExchange: 16,
  finished: 20,
} as const;

export const AlertLevel = { warning: 1, fatal: 2 } as const;

export const AlertDescription = {
  closeNotify: 0,
  unexpectedMessage: 10,
  badRecordMac: 20,
  recordOverflow: 22,
  handshakeFailure: 40,
  badCertificate: 42,
  unsupportedCertificate: 43,
  certificateRevoked: 44,
  certificateExpired: 45,
  certificateUnknown: 46,
  illegalParameter: 47,
  unknownCa: 48,
  accessDenied: 49,
  decodeError: 50,
  decryptError: 51,
  protocolVersion: 70,
  insufficientSecurity: 71,
  internalError: 80,
  noRenegotiation: 100,
  unsupportedExtension: 110,
  unknownPskIdentity: 115,
} as const;

export const ExtensionType = {
  /** RFC 6066 §4. */
  maxFragmentLength: 1,
  supportedGroups: 10,
  ecPointFormats: 11,
  signatureAlgorithms: 13,
  clientCertificateType: 19,
  serverCertificateType: 20,
  extendedMasterSecret: 23,
  /** RFC 8449. */
  recordSizeLimit: 28,
  /** RFC 5077. */
  sessionTicket: 35,
  connectionId: 54,
  renegotiationInfo: 0xff01,
} as const;

/** TLS_EMPTY_RENEGOTIATION_INFO_SCSV (RFC 5746). */
export const RENEGOTIATION_SCSV = 0x00ff;

export const NamedGroup = { secp256r1: 23, x25519: 29 } as const;
export type GroupName = keyof typeof NamedGroup;

/** ecdsa_secp256r1_sha256 (hash sha256 = 4, signature ecdsa = 3). */
export const ECDSA_SECP256R1_SHA256 = 0x0403;
export const CLIENT_CERT_TYPE_ECDSA_SIGN = 64;

export const CertificateType = { x509: 0, rawPublicKey: 2 } as const;

export const RECORD_HEADER_LENGTH = 13;
export const HANDSHAKE_HEADER_LENGTH = 12;
/** RFC 6347 §4.1: a record's plaintext is at most 2^14 bytes; ciphertext may add 2048. */
export const MAX_PLAINTEXT = 1 << 14;
export const MAX_CIPHERTEXT = MAX_PLAINTEXT + 2048;
