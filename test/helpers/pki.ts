import { execFileSync } from 'node:child_process';
import { createPrivateKey, type KeyObject, webcrypto, X509Certificate } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';

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

/**
 * One certificate in `dir` made with the openssl CLI: `<name>.pem` with key `<name>.key`, signed by `<issuer>`
 * (its `.pem` and `.key` in `dir`) or self-signed without one, carrying exactly the extension lines `ext`
 * (openssl x509v3_config syntax, e.g. `basicConstraints=critical,CA:TRUE,pathlen:0`).
 */
export function makeCertificate(
  dir: string,
  name: string,
  o: { issuer?: string; ext: string; days?: number },
): Party {
  newKeyRequest(dir, name, `${name}.csr`);
  writeFileSync(join(dir, `${name}.ext`), o.ext.endsWith('\n') ? o.ext : `${o.ext}\n`);
  const signer = o.issuer
    ? ['-CA', `${o.issuer}.pem`, '-CAkey', `${o.issuer}.key`, '-CAcreateserial']
    : ['-signkey', `${name}.key`];
  openssl(
    [
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      ...signer,
      '-out',
      `${name}.pem`,
      '-days',
      String(o.days ?? 30),
    ].concat(['-extfile', `${name}.ext`]),
    dir,
  );
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

/** A CA certificate's extension lines: may sign certificates and CRLs; `pathlen` bounds the CAs below it. */
export function caExtensions(pathlen?: number): string {
  const bc = `basicConstraints=critical,CA:TRUE${pathlen === undefined ? '' : `,pathlen:${pathlen}`}`;
  return `${bc}\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n`;
}

/**
 * A CRL signed by the CA `<ca>` in `dir` (its `.pem`/`.key`), revoking the given certificates, written as
 * `<file>` in PEM (or DER with `der`). Made with @peculiar/x509, as a manufacturer's CA software would.
 */
export async function makeCrl(
  dir: string,
  ca: string,
  file: string,
  o: {
    revoke?: X509Certificate[];
    thisUpdate?: Date;
    nextUpdate?: Date | null;
    crlNumber?: number;
    der?: boolean;
    /** Extra CRL extensions (e.g. a critical one this gateway cannot apply). */
    extensions?: x509.Extension[];
  } = {},
): Promise<string> {
  const caCert = new x509.X509Certificate(readFileSync(join(dir, `${ca}.pem`)));
  const pkcs8 = createPrivateKey(readFileSync(join(dir, `${ca}.key`))).export({
    format: 'der',
    type: 'pkcs8',
  });
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const signingKey = await webcrypto.subtle.importKey('pkcs8', pkcs8, alg, false, ['sign']);
  const thisUpdate = o.thisUpdate ?? new Date(Date.now() - 60_000);
  const crl = await x509.X509CrlGenerator.create(
    {
      issuer: caCert.subjectName,
      thisUpdate,
      ...(o.nextUpdate === null
        ? {}
        : { nextUpdate: o.nextUpdate ?? new Date(thisUpdate.getTime() + 7 * 86_400_000) }),
      signingAlgorithm: alg,
      signingKey,
      extensions: [
        new x509.Extension('2.5.29.20', false, derInteger(o.crlNumber ?? 1)),
        ...(o.extensions ?? []),
      ],
      entries: (o.revoke ?? []).map((c) => ({
        serialNumber: c.serialNumber,
        revocationDate: new Date(thisUpdate.getTime() - 1000),
        reason: x509.X509CrlReason.keyCompromise,
      })),
    },
    webcrypto as unknown as Parameters<typeof x509.X509CrlGenerator.create>[1],
  );
  const path = join(dir, file);
  writeFileSync(path, o.der ? Buffer.from(crl.rawData) : x509.PemConverter.encode(crl.rawData, 'X509 CRL'));
  return path;
}

function derInteger(n: number): Buffer {
  let hex = n.toString(16);
  if (hex.length % 2) hex = `0${hex}`;
  if (Number.parseInt(hex.slice(0, 2), 16) >= 0x80) hex = `00${hex}`;
  const body = Buffer.from(hex, 'hex');
  return Buffer.concat([Buffer.from([0x02, body.length]), body]);
}

/**
 * A CRL made by `openssl ca -gencrl` (an implementation independent of the gateway's and of @peculiar/x509):
 * the CA `<ca>` in `dir` revokes the given serial numbers (hex), with reason keyCompromise, written as PEM.
 */
export function makeOpensslCrl(
  dir: string,
  ca: string,
  file: string,
  serials: string[],
  crlNumber = 1,
): string {
  const work = mkdtempSync(join(dir, 'openssl-ca-'));
  const stamp = '250101000000Z';
  const lines = serials.map((s) => {
    let hex = s.toUpperCase();
    if (hex.length % 2) hex = `0${hex}`;
    return `R\t351231235959Z\t${stamp},keyCompromise\t${hex}\tunknown\t/CN=revoked-${hex}`;
  });
  writeFileSync(join(work, 'index.txt'), lines.length ? `${lines.join('\n')}\n` : '');
  writeFileSync(join(work, 'crlnumber'), `${crlNumber.toString(16).padStart(2, '0')}\n`);
  writeFileSync(
    join(work, 'ca.cnf'),
    [
      '[ca]',
      'default_ca = ca_default',
      '[ca_default]',
      `database = ${join(work, 'index.txt')}`,
      `crlnumber = ${join(work, 'crlnumber')}`,
      'default_md = sha256',
      'default_crl_days = 7',
      'crl_extensions = crl_ext',
      '[crl_ext]',
      'authorityKeyIdentifier = keyid:always',
      '',
    ].join('\n'),
  );
  const out = join(dir, file);
  openssl(
    [
      'ca',
      '-gencrl',
      '-batch',
      '-config',
      join(work, 'ca.cnf'),
      '-keyfile',
      `${ca}.key`,
      '-cert',
      `${ca}.pem`,
    ].concat(['-out', out]),
    dir,
  );
  return out;
}

/**
 * A self-signed server certificate for 127.0.0.1 and its key (`cert.pem`/`key.pem` in `dir`, 0644/0600), as a
 * site's own PKI would hand them out for `ui.tls`: P-256 by default, RSA 2048 for the RSA suites.
 */
export function selfSignedServerCertificate(
  dir: string,
  kind: 'ec' | 'rsa' = 'ec',
): { cert: string; key: string } {
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  const keyArgs =
    kind === 'ec' ? ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'] : ['-newkey', 'rsa:2048'];
  execFileSync(
    'openssl',
    ['req', '-x509', ...keyArgs, '-nodes', '-subj', '/CN=127.0.0.1', '-days', '2'].concat([
      '-keyout',
      key,
      '-out',
      cert,
    ]),
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  chmodSync(cert, 0o644);
  chmodSync(key, 0o600);
  return { cert, key };
}
