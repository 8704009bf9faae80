import { createPrivateKey, X509Certificate } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Keystore } from '../keystore/index.ts';
import { csrFor, ensureKeyFile } from '../keystore/software.ts';

const LEAF_DAYS = 397;
/** Reissued at start when less than this is left (a gateway restarts with every update). */
const RENEW_BEFORE_MS = 60 * 24 * 3600_000;

export interface OperationalCertificate {
  certPem: string;
  keyPem: string;
  /** The identity certificate that issued it: what sensors and browsers are told to trust. */
  caPem: string;
}

/**
 * A certificate for one of the gateway's listeners (the sensors' DTLS server): its own software key, which signs
 * every handshake at full speed, certified by the gateway's identity key, which stays in the keystore (the TPM).
 * Writes `<name>-key.pem` (0600), `<name>-cert.pem` and `identity-ca.pem` (public) into `dir`.
 */
export async function operationalCertificate(
  keystore: Keystore,
  dir: string,
  name: string,
  sans: string[],
  now: number,
): Promise<OperationalCertificate> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const caPem = keystore.identityCertificate();
  writeFileSync(join(dir, 'identity-ca.pem'), caPem, { mode: 0o644 });
  const ca = new X509Certificate(caPem);
  const keyPath = join(dir, `${name}-key.pem`);
  const certPath = join(dir, `${name}-cert.pem`);
  const keyPem = ensureKeyFile(keyPath);
  let certPem = existsSync(certPath) ? readFileSync(certPath, 'utf8') : '';
  const current = certPem ? new X509Certificate(certPem) : null;
  const fresh =
    current?.checkIssued(ca) === true &&
    current.verify(ca.publicKey) &&
    current.checkPrivateKey(createPrivateKey(keyPem)) &&
    Date.parse(current.validTo) - now > RENEW_BEFORE_MS;
  if (!fresh) {
    certPem = keystore.signLeaf(await csrFor(keyPem, `CN=portcullis ${name}`), { days: LEAF_DAYS, sans });
    writeFileSync(certPath, certPem, { mode: 0o644 });
  }
  return { certPem, keyPem, caPem };
}
