import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KeystoreError } from './errors.ts';
import { firstErrorLine, runTool } from './tools.ts';

/**
 * The gateway's identity as a small CA, through the openssl CLI so the same code serves a key file and a key
 * inside the TPM (`providerArgs` load the tpm2 provider). The identity certificate is self-signed and long-lived;
 * the keys that sign every handshake are short-lived leaves it issues.
 */
export class IdentityCa {
  constructor(
    private readonly keyPath: string,
    private readonly certPath: string,
    private readonly providerArgs: string[],
    private readonly env: NodeJS.ProcessEnv,
  ) {}

  private openssl(args: string[]): string {
    try {
      return runTool('openssl', args, this.env).toString();
    } catch (err) {
      throw new KeystoreError(
        'ERR_KEYSTORE_IDENTITY',
        `identity CA: openssl ${args[0]} failed (${firstErrorLine(err)})`,
      );
    }
  }

  /** The self-signed identity certificate (PEM), made on first use from the identity key. */
  certificate(subject: string): string {
    if (!existsSync(this.certPath)) {
      this.openssl([
        'req',
        '-x509',
        ...this.providerArgs,
        '-key',
        this.keyPath,
        '-subj',
        subject,
        '-days',
        '7300',
        '-addext',
        'basicConstraints=critical,CA:TRUE,pathlen:0',
        '-addext',
        'keyUsage=critical,keyCertSign,cRLSign',
        '-set_serial',
        `0x${randomBytes(12).toString('hex')}`,
        '-out',
        this.certPath,
      ]);
    }
    return readFileSync(this.certPath, 'utf8');
  }

  /** Issues a leaf for the CSR: server and client authentication, the given SANs, `days` of validity. */
  signLeaf(csrPem: string, opts: { days: number; sans: string[] }): string {
    const work = mkdtempSync(join(tmpdir(), 'portcullis-ca-'));
    try {
      writeFileSync(join(work, 'leaf.csr'), csrPem);
      const san = opts.sans.map((s) => (/^[\d.]+$|:/.test(s) ? `IP:${s}` : `DNS:${s}`)).join(',');
      writeFileSync(
        join(work, 'leaf.ext'),
        [
          'basicConstraints=critical,CA:FALSE',
          'keyUsage=critical,digitalSignature',
          'extendedKeyUsage=serverAuth,clientAuth',
          ...(san ? [`subjectAltName=${san}`] : []),
          '',
        ].join('\n'),
      );
      return this.openssl([
        'x509',
        '-req',
        ...this.providerArgs,
        '-in',
        join(work, 'leaf.csr'),
        '-CA',
        this.certPath,
        '-CAkey',
        this.keyPath,
        '-set_serial',
        `0x${randomBytes(12).toString('hex')}`,
        '-days',
        String(opts.days),
        '-extfile',
        join(work, 'leaf.ext'),
      ]);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  }
}
