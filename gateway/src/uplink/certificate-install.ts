import { createHash, X509Certificate } from 'node:crypto';
import { existsSync, renameSync, writeFileSync } from 'node:fs';
import type { AuditLog } from '../audit/index.ts';
import type { Clock } from '../clock.ts';
import type { Config } from '../config/index.ts';
import { PortcullisError } from '../errors.ts';
import type { Keystore } from '../keystore/index.ts';

/** Codes: ERR_UPLINK_CERT_INVALID (not a certificate, not for this key, not valid now), ERR_UPLINK_CERT_STATE. */
export class UplinkCertificateError extends PortcullisError {}

export interface InstalledCertificate {
  subject: string;
  notAfter: string;
  fingerprint: string;
  file: string;
  /** Whether a certificate was there before (the uplink then takes the new one at its next start). */
  replaced: boolean;
}

/**
 * Puts the cloud CA's answer to the uplink's certificate request where `uplink.certFile` points, after checking
 * it: one PEM certificate, valid now, for the key in the keystore (its public key equals the one the request
 * carried). Written whole (a temporary file renamed), so the uplink's watch never reads half of it, and audited.
 */
export async function installUplinkCertificate(
  deps: { config: Config; keystore: Keystore; audit: AuditLog; clock: Clock },
  pem: string,
  actor: string,
): Promise<InstalledCertificate> {
  const file = deps.config.uplink?.certFile;
  if (!file) {
    throw new UplinkCertificateError(
      'ERR_UPLINK_CERT_STATE',
      'uplink.certFile is not set in the configuration: there is nowhere to put the certificate',
    );
  }
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length !== 1) {
    throw new UplinkCertificateError('ERR_UPLINK_CERT_INVALID', 'paste exactly one PEM certificate');
  }
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(blocks[0] as string);
  } catch {
    throw new UplinkCertificateError('ERR_UPLINK_CERT_INVALID', 'that is not a readable certificate');
  }
  const now = deps.clock.now();
  if (now < Date.parse(cert.validFrom) || now > Date.parse(cert.validTo)) {
    throw new UplinkCertificateError(
      'ERR_UPLINK_CERT_INVALID',
      `the certificate is not valid now (${cert.validFrom} to ${cert.validTo})`,
    );
  }
  // The key's public half, from a request the keystore makes for it (a TPM key has no PEM to compare with).
  const { Pkcs10CertificateRequest } = await import('@peculiar/x509');
  const csr = new Pkcs10CertificateRequest(await deps.keystore.uplinkCsr('CN=portcullis-check'));
  const want = Buffer.from(csr.publicKey.rawData);
  const got = cert.publicKey.export({ type: 'spki', format: 'der' });
  if (!want.equals(got)) {
    throw new UplinkCertificateError(
      'ERR_UPLINK_CERT_INVALID',
      "the certificate is for another key, not this gateway's uplink key (was it signed from this gateway's request?)",
    );
  }
  const replaced = existsSync(file);
  const tmp = `${file}.new`;
  writeFileSync(tmp, `${(blocks[0] as string).trim()}\n`, { mode: 0o644 });
  renameSync(tmp, file);
  const out: InstalledCertificate = {
    subject: cert.subject.replace(/\n/g, ', '),
    notAfter: new Date(cert.validTo).toISOString(),
    fingerprint: createHash('sha256').update(cert.raw).digest('hex'),
    file,
    replaced,
  };
  deps.audit.append({
    actor,
    action: 'uplink.certificate',
    target: out.subject,
    details: { notAfter: out.notAfter, sha256: out.fingerprint, replaced },
  });
  return out;
}
