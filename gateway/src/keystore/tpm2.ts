import { createSecretKey, type KeyObject, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { arch, tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkDataDirectory } from '../config/local-files.ts';
import { deriveFromDataKey, TpmNvCounter } from './audit-anchor.ts';
import { KeystoreError } from './errors.ts';
import { IdentityCa } from './openssl-ca.ts';
import { unwrapWith, wrapWith } from './software.ts';
import { firstErrorLine, runTool } from './tools.ts';
import type { Keystore, KeystoreStatus, MonotonicCounter, UplinkKey } from './types.ts';

const PROVIDER_PATHS = [
  `/usr/lib/${arch() === 'arm64' ? 'aarch64' : 'x86_64'}-linux-gnu/ossl-modules/tpm2.so`,
  '/usr/lib/x86_64-linux-gnu/ossl-modules/tpm2.so',
  '/usr/lib/aarch64-linux-gnu/ossl-modules/tpm2.so',
];

/** "CN=a,O=b" (RFC 4514, no escapes) → "/CN=a/O=b" for openssl req. */
function slashSubject(subject: string): string {
  const parts = subject.split(',').map((p) => p.trim());
  if (parts.some((p) => !/^[A-Za-z]+=[^/=]+$/.test(p))) {
    throw new KeystoreError(
      'ERR_KEYSTORE_CSR',
      'subject must look like "CN=name,O=org" (no "/" or "=" in values)',
    );
  }
  return `/${parts.join('/')}`;
}

/**
 * Keys in a TPM 2.0 (tpm2-tools and OpenSSL's tpm2 provider, TCTI configurable: /dev/tpmrm0 on the appliance,
 * swtpm behind tpm2-abrmd in tests).
 * - The data key (AES-256) is sealed to the TPM's storage hierarchy; only its sealed blob is on disk, and it
 *   is unsealed into memory at start. Without the TPM the gateway refuses to start; it never falls back.
 * - The uplink's client key is generated inside the TPM and never leaves it: the file holds a TPM-wrapped
 *   blob that only this TPM can load.
 */
export class Tpm2Keystore implements Keystore {
  readonly backend = 'tpm2' as const;
  readonly hardwareBacked = true;
  private readonly env: NodeJS.ProcessEnv;
  private readonly dataKey: KeyObject;
  private readonly uplinkKeyPath: string;
  private readonly opensslConfigPath: string;

  constructor(
    private readonly dir: string,
    private readonly tcti: string,
  ) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    // The key blobs are bound to this TPM, but a swapped blob or config is still a swapped key: same checks.
    checkDataDirectory(dir);
    this.env = { ...process.env, TPM2TOOLS_TCTI: tcti, TPM2OPENSSL_TCTI: tcti };
    this.uplinkKeyPath = join(dir, 'uplink.tss');
    this.opensslConfigPath = join(dir, 'openssl-tpm2.cnf');
    try {
      this.run('tpm2_getrandom', ['4']);
    } catch (err) {
      throw new KeystoreError(
        'ERR_KEYSTORE_TPM',
        `the TPM is not reachable through ${tcti} (${firstErrorLine(err)}); refusing to start without it`,
      );
    }
    this.dataKey = createSecretKey(this.unsealDataKey());
    this.writeOpensslConfig();
    this.ca = new IdentityCa(
      join(dir, 'identity.tss'),
      join(dir, 'identity.pem'),
      ['-provider', 'tpm2', '-provider', 'default'],
      this.env,
    );
  }

  private readonly ca: IdentityCa;

  private ensureTpmKey(path: string, what: string): void {
    if (existsSync(path)) return;
    try {
      this.run('openssl', [
        'genpkey',
        '-provider',
        'tpm2',
        '-provider',
        'default',
        '-algorithm',
        'EC',
        '-pkeyopt',
        'group:P-256',
        '-out',
        path,
      ]);
      chmodSync(path, 0o600);
    } catch (err) {
      throw new KeystoreError(
        'ERR_KEYSTORE_TPM',
        `cannot create the ${what} key in the TPM (${firstErrorLine(err)})`,
      );
    }
  }

  identityCertificate(): string {
    this.ensureTpmKey(join(this.dir, 'identity.tss'), 'identity');
    return this.ca.certificate('/CN=portcullis gateway identity (TPM)');
  }

  signLeaf(csrPem: string, opts: { days: number; sans: string[] }): string {
    this.identityCertificate();
    return this.ca.signLeaf(csrPem, opts);
  }

  private run(cmd: string, args: string[], input?: Buffer): Buffer {
    return runTool(cmd, args, this.env, input);
  }

  /** Creates the sealed data key on first start; unseals it on every start. */
  private unsealDataKey(): Buffer {
    const pub = join(this.dir, 'data-key.seal.pub');
    const priv = join(this.dir, 'data-key.seal.priv');
    const work = mkdtempSync(join(tmpdir(), 'portcullis-tpm-'));
    try {
      const primary = join(work, 'primary.ctx');
      // The storage primary is re-derived from the owner seed each time: same template, same key.
      this.run('tpm2_createprimary', ['-C', 'o', '-g', 'sha256', '-G', 'ecc', '-c', primary]);
      if (!existsSync(pub) || !existsSync(priv)) {
        const key = randomBytes(32);
        try {
          this.run('tpm2_create', ['-C', primary, '-i', '-', '-u', pub, '-r', priv], key);
        } finally {
          key.fill(0);
        }
      }
      const sealed = join(work, 'seal.ctx');
      this.run('tpm2_load', ['-C', primary, '-u', pub, '-r', priv, '-c', sealed]);
      const key = this.run('tpm2_unseal', ['-c', sealed]);
      if (key.length !== 32) throw new Error('unsealed data key has the wrong length');
      return key;
    } catch (err) {
      throw new KeystoreError(
        'ERR_KEYSTORE_TPM',
        `cannot unseal the data key with this TPM (${firstErrorLine(err)}); was the TPM replaced or cleared?`,
      );
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  }

  private writeOpensslConfig(): void {
    const module = PROVIDER_PATHS.find((p) => existsSync(p));
    if (!module)
      throw new KeystoreError('ERR_KEYSTORE_TPM', 'OpenSSL tpm2 provider not found (Debian: tpm2-openssl)');
    // The uplink worker's OpenSSL prefers the TPM for keys and signatures, never for digests, ciphers or RNG.
    writeFileSync(
      this.opensslConfigPath,
      [
        'nodejs_conf = openssl_init',
        '[openssl_init]',
        'providers = provider_sect',
        'alg_section = algorithm_sect',
        '[provider_sect]',
        'default = default_sect',
        'tpm2 = tpm2_sect',
        '[default_sect]',
        'activate = 1',
        '[tpm2_sect]',
        `module = ${module}`,
        'activate = 1',
        '[algorithm_sect]',
        'default_properties = ?provider=tpm2,tpm2.digest!=yes,tpm2.cipher!=yes,tpm2.rand!=yes',
        '',
      ].join('\n'),
      { mode: 0o600 },
    );
  }

  wrap(plaintext: Buffer, context: string): Buffer {
    return wrapWith(this.dataKey, plaintext, context);
  }

  unwrap(wrapped: Buffer, context: string): Buffer {
    return unwrapWith(this.dataKey, wrapped, context);
  }

  private ensureUplinkKey(): void {
    this.ensureTpmKey(this.uplinkKeyPath, 'uplink');
  }

  uplinkKey(): UplinkKey {
    this.ensureUplinkKey();
    return {
      kind: 'tpm2',
      keyPem: readFileSync(this.uplinkKeyPath, 'utf8'),
      opensslConfig: this.opensslConfigPath,
      env: { TPM2OPENSSL_TCTI: this.tcti },
    };
  }

  async uplinkCsr(subject: string): Promise<string> {
    this.ensureUplinkKey();
    try {
      return this.run('openssl', [
        'req',
        '-provider',
        'tpm2',
        '-provider',
        'default',
        '-new',
        '-key',
        this.uplinkKeyPath,
        '-subj',
        slashSubject(subject),
      ]).toString('utf8');
    } catch (err) {
      if (err instanceof KeystoreError) throw err;
      throw new KeystoreError('ERR_KEYSTORE_CSR', `cannot build the CSR in the TPM (${firstErrorLine(err)})`);
    }
  }

  status(): KeystoreStatus {
    return { backend: this.backend, hardwareBacked: true, uplinkKey: existsSync(this.uplinkKeyPath) };
  }

  deriveKey(purpose: string): KeyObject {
    return deriveFromDataKey(this.dataKey, purpose);
  }

  signWithIdentity(data: Buffer): Buffer {
    this.identityCertificate();
    try {
      return this.run(
        'openssl',
        [
          'dgst',
          '-sha256',
          '-provider',
          'tpm2',
          '-provider',
          'default',
          // Without it OpenSSL hands the TPM-wrapped key to the default provider's ECDSA: "missing private key".
          '-propquery',
          '?provider=tpm2,tpm2.digest!=yes',
          '-sign',
          join(this.dir, 'identity.tss'),
        ],
        data,
      );
    } catch (err) {
      throw new KeystoreError(
        'ERR_KEYSTORE_TPM',
        `cannot sign with the identity key (${firstErrorLine(err)})`,
      );
    }
  }

  auditCounter(): MonotonicCounter {
    return new TpmNvCounter(this.dir, (cmd, args) => this.run(cmd, args));
  }
}
