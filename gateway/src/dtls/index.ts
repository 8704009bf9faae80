export {
  anchorProblem,
  certificateFingerprint,
  certificatePath,
  spkiFingerprint,
  verifyCertificateChain,
} from './certificates.ts';
export { AlertDescription } from './constants.ts';
export { type CryptoImplementation, dtlsCryptoStatus } from './crypto.ts';
export { DtlsError } from './errors.ts';
export { CID_LENGTH, DtlsServer, type DtlsServerStats, sourcePrefix } from './server.ts';
export { CIPHER_SUITE_NAMES, type CipherSuiteName, DEFAULT_SUITE_ORDER } from './suites.ts';
export type * from './types.ts';
