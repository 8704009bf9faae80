import { join } from 'node:path';
import type { Config } from '../config/index.ts';
import { KeystoreError } from './errors.ts';
import { SoftwareKeystore } from './software.ts';
import type { Keystore } from './types.ts';

export { KeystoreError } from './errors.ts';
export { SoftwareKeystore } from './software.ts';
export type { Keystore, KeystoreBackend, KeystoreStatus } from './types.ts';

/** Opens the configured backend. Never falls back from `tpm2` to `software`: that would be a silent downgrade. */
export function openKeystore(config: Config): Keystore {
  if (config.keystore.backend === 'software') return new SoftwareKeystore(join(config.dataDir, 'keystore'));
  throw new KeystoreError(
    'ERR_KEYSTORE_BACKEND',
    'keystore backend tpm2 is not available in this build yet; refusing to fall back to software',
  );
}
