import { createPrivateKey, randomBytes, webcrypto } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';

export interface TlsMaterial {
  key: string;
  cert: string;
  /** True when the certificate was generated on this start. */
  generated: boolean;
}

function writeAtomic(path: string, data: string, mode: number): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, data, { mode, flag: 'wx' });
  renameSync(tmp, path);
}

/**
 * The UI's certificate: the configured one, else a self-signed P-256 certificate made on first start and kept in
 * the data directory (key mode 0600). The local CA of the identity module replaces this once it exists.
 */
export async function loadOrCreateUiTls(
  dir: string,
  host: string,
  configured?: { certFile: string; keyFile: string },
  /** File name prefix: the sensors' DTLS listener keeps its own self-signed certificate beside the UI's. */
  name = 'ui',
): Promise<TlsMaterial> {
  if (configured) {
    return {
      cert: readFileSync(configured.certFile, 'utf8'),
      key: readFileSync(configured.keyFile, 'utf8'),
      generated: false,
    };
  }
  const certPath = join(dir, `${name}-cert.pem`);
  const keyPath = join(dir, `${name}-key.pem`);
  if (existsSync(certPath) && existsSync(keyPath)) {
    return { cert: readFileSync(certPath, 'utf8'), key: readFileSync(keyPath, 'utf8'), generated: false };
  }
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const keys = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const now = Date.now();
  const altNames: x509.JsonGeneralName[] = [
    { type: 'dns', value: 'localhost' },
    { type: 'ip', value: '127.0.0.1' },
  ];
  if (isIP(host) && host !== '127.0.0.1' && host !== '0.0.0.0' && host !== '::')
    altNames.push({ type: 'ip', value: host });
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    // A leading 01 keeps the DER integer positive.
    serialNumber: `01${randomBytes(15).toString('hex')}`,
    name: 'CN=Portcullis gateway UI',
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 825 * 24 * 3600 * 1000),
    signingAlgorithm: alg,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(altNames),
    ],
  });
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  const keyPem = createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' }).export({
    type: 'pkcs8',
    format: 'pem',
  }) as string;
  const certPem = cert.toString('pem');
  writeAtomic(keyPath, keyPem, 0o600);
  writeAtomic(certPath, certPem, 0o644);
  return { cert: certPem, key: keyPem, generated: true };
}
