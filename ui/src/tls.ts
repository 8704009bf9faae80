import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import type { Config } from '../../gateway/src/config/index.ts';
import { operationalCertificate } from '../../gateway/src/identity/gateway-certificate.ts';
import type { Keystore } from '../../gateway/src/keystore/index.ts';

export interface TlsMaterial {
  key: string;
  cert: string;
  /** What a browser should trust: the configured certificate, or the gateway's identity CA file. */
  trust: string;
}

/**
 * The UI's certificate: the configured one (`ui.tls`), else a leaf issued by the gateway's identity CA — whose
 * key is in the keystore (the TPM on the appliance) — kept in `<dataDir>/tls/ui-{cert,key}.pem` and renewed
 * before it expires. A technician's browser trusts `<dataDir>/tls/identity-ca.pem` once, for every gateway
 * certificate.
 */
export async function uiTls(
  config: Config,
  keystore: Keystore,
  dir: string,
  now: number,
): Promise<TlsMaterial> {
  const configured = config.ui.tls;
  if (configured) {
    return {
      cert: readFileSync(configured.certFile, 'utf8'),
      key: readFileSync(configured.keyFile, 'utf8'),
      trust: configured.certFile,
    };
  }
  const host = config.ui.host;
  const sans = host === '0.0.0.0' || host === '::' ? ['localhost', hostname()] : [host];
  const c = await operationalCertificate(keystore, dir, 'ui', sans, now);
  return { cert: c.certPem, key: c.keyPem, trust: `${dir}/identity-ca.pem` };
}
