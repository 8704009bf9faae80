import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import type { Config } from '../../gateway/src/config/index.ts';
import { operationalCertificate } from '../../gateway/src/identity/gateway-certificate.ts';
import type { Keystore } from '../../gateway/src/keystore/index.ts';

/**
 * What the UI offers in TLS 1.2: ECDHE with AES-GCM or ChaCha20-Poly1305, for ECDSA (the gateway's own
 * certificate) and RSA (a site's PKI) keys. No CBC suite (Lucky 13-style padding oracles), no static RSA key
 * exchange (no forward secrecy). TLS 1.3's suites are all AEAD and stay as OpenSSL sets them.
 */
export const UI_TLS_CIPHERS = [
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

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
