import { join } from 'node:path';
import type { Config } from '../config/index.ts';
import { SoftwareKeystore } from './software.ts';
import { Tpm2Keystore } from './tpm2.ts';
import type { Keystore } from './types.ts';

export { KeystoreError } from './errors.ts';
export { SoftwareKeystore } from './software.ts';
export { Tpm2Keystore } from './tpm2.ts';
export type { Keystore, KeystoreBackend, KeystoreStatus, MonotonicCounter } from './types.ts';

/** The appliance's kernel resource manager. */
export const DEFAULT_TCTI = 'device:/dev/tpmrm0';

/** Opens the configured backend. Never falls back from `tpm2` to `software`: that would be a silent downgrade. */
export function openKeystore(config: Config): Keystore {
  const dir = join(config.dataDir, 'keystore');
  if (config.keystore.backend === 'software') return new SoftwareKeystore(dir);
  return new Tpm2Keystore(dir, config.keystore.tcti ?? DEFAULT_TCTI);
}
