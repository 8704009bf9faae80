import { execFileSync } from 'node:child_process';
import { createPrivateKey, type KeyObject, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Party {
  certPath: string;
  /** PKCS#8 PEM. */
  keyPath: string;
  /** SEC1 "EC PRIVATE KEY" PEM, the form libcoap's gnutls build wants for raw public keys. */
  ecKeyPath: string;
  der: Buffer;
  key: KeyObject;
}

export interface TestPki {
  dir: string;
  caPath: string;
  ca: X509Certificate;
  server: Party;
  client: Party;
  /** Signed by a CA the server does not trust. */
  stranger: Party;
  /** Valid for one day only: expired for a server whose clock is a month ahead. */
  shortLived: Party;
  /** A TLS server certificate for 127.0.0.1/localhost (the MQTT broker). */
  broker: Party;
  /** The same, but from the CA nobody trusts. */
  rogueBroker: Party;
  /** Signs a PEM certificate request with the CA (as the cloud operator would) and returns the cert path. */
  signCsr(csrPem: string, name: string): string;
  dispose(): void;
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

/** `openssl req` with a fresh P-256 key in `<name>.key`, subject CN=<name>; `out` is the certificate or CSR. */
function newKeyRequest(dir: string, name: string, out: string, extra: string[] = []): void {
  openssl(
    ['req', ...extra, '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'].concat([
      '-keyout',
      `${name}.key`,
      '-out',
      out,
      '-subj',
      `/CN=${name}`,
    ]),
    dir,
  );
}

function makeCa(dir: string, name: string): void {
  newKeyRequest(dir, name, `${name}.pem`, ['-x509', '-days', '3650']);
}

const SERVER_EXT = 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n';

/** The CA `ca` signs `<name>.csr` into `<name>.pem`, as a leaf with the given extension lines. */
function signRequest(dir: string, name: string, ca: string, days: number, ext: string): void {
  writeFileSync(join(dir, `${name}.ext`), `basicConstraints=CA:FALSE\n${ext}`);
  openssl(
    [
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      `${ca}.pem`,
      '-CAkey',
      `${ca}.key`,
      '-CAcreateserial',
      '-out',
      `${name}.pem`,
      '-days',
      String(days),
      '-extfile',
      `${name}.ext`,
    ],
    dir,
  );
}

function makeParty(dir: string, name: string, ca: string, days: number, ext = ''): Party {
  newKeyRequest(dir, name, `${name}.csr`);
  signRequest(dir, name, ca, days, `keyUsage=digitalSignature\n${ext}`);
  openssl(['ec', '-in', `${name}.key`, '-out', `${name}.ec.key`], dir);
  const certPath = join(dir, `${name}.pem`);
  const keyPath = join(dir, `${name}.key`);
  return {
    certPath,
    keyPath,
    ecKeyPath: join(dir, `${name}.ec.key`),
    der: new X509Certificate(readFileSync(certPath)).raw,
    key: createPrivateKey(readFileSync(keyPath)),
  };
}

/** A throwaway PKI made with the openssl CLI at test time; nothing secret ships in fixtures. */
export function makePki(): TestPki {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-pki-'));
  makeCa(dir, 'ca');
  makeCa(dir, 'other-ca');
  return {
    dir,
    caPath: join(dir, 'ca.pem'),
    ca: new X509Certificate(readFileSync(join(dir, 'ca.pem'))),
    server: makeParty(dir, 'server', 'ca', 30),
    client: makeParty(dir, 'client', 'ca', 30),
    stranger: makeParty(dir, 'stranger', 'other-ca', 30),
    shortLived: makeParty(dir, 'short-lived', 'ca', 1),
    broker: makeParty(dir, 'broker', 'ca', 30, SERVER_EXT),
    rogueBroker: makeParty(dir, 'rogue-broker', 'other-ca', 30, SERVER_EXT),
    signCsr: (csrPem, name) => {
      writeFileSync(join(dir, `${name}.csr`), csrPem);
      signRequest(dir, name, 'ca', 30, 'extendedKeyUsage=clientAuth\n');
      return join(dir, `${name}.pem`);
    },
    dispose: () => rmSync(dir, { recursive: true, force: true }),
  };
}
