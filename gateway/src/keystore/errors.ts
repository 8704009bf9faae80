import { PortcullisError } from '../errors.ts';

/** Codes: ERR_KEYSTORE_UNWRAP, ERR_KEYSTORE_FILE, ERR_KEYSTORE_CSR, ERR_KEYSTORE_BACKEND. */
export class KeystoreError extends PortcullisError {}
