/**
 * The appliance's Node-RED (portcullis-flows.service) needs three things nobody may ship in an image: the key
 * Node-RED encrypts flow credentials (the control token) with, the editor's TLS key, and its admin accounts.
 * `setupFlows` makes the first two at first boot as systemd credentials encrypted with `systemd-creds` (the
 * host key, and the TPM where there is one), which the unit loads with `LoadCredentialEncrypted=`; nothing
 * secret is left in a plain file. Admin accounts start empty (nobody can log in: fail closed) until an admin
 * adds one with `addFlowsAdmin`.
 */
import { randomBytes, webcrypto } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  writeFileSync,
} from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';
import bcrypt from 'bcryptjs';
import { z } from 'zod';
import { errorMessage, firstIssue, PortcullisError } from '../errors.ts';
import { findGroupId } from '../groups.ts';
import { parseJsonWith } from '../json.ts';
import { passwordSchema, usernameSchema } from '../users/service.ts';

export class FlowsSetupError extends PortcullisError {}

/** Credential IDs: the names in `LoadCredentialEncrypted=` and under `$CREDENTIALS_DIRECTORY`. */
export const FLOWS_CREDENTIALS = { secret: 'credential-secret', tlsKey: 'tls-key' } as const;

export interface FlowsPaths {
  /** /etc/portcullis-flows: settings.js, admin-users.json, tls/cert.pem. */
  configDir: string;
  /** /etc/credstore.encrypted: where the unit's LoadCredentialEncrypted= looks. */
  credstoreDir: string;
}

export const credentialFile = (credstoreDir: string, id: string) =>
  join(credstoreDir, `portcullis-flows-${id}.cred`);

/** systemd-creds with the host key and the TPM if present (`auto`), bound to the credential's name. */
async function encryptCredential(id: string, secret: Buffer, out: string): Promise<void> {
  const { execa } = await import('execa');
  const r = await execa('systemd-creds', ['encrypt', '--with-key=auto', `--name=${id}`, '-', out], {
    input: secret,
    reject: false,
    stripFinalNewline: true,
  });
  if (r.exitCode !== 0) {
    // stderr of systemd-creds names files and key types, never the plaintext.
    throw new FlowsSetupError(
      'ERR_FLOWS_CREDENTIAL',
      `systemd-creds encrypt ${id}: ${r.stderr || r.message}`,
    );
  }
  chmodSync(out, 0o600);
}

async function editorCertificate(name: string): Promise<{ certPem: string; keyPkcs8: Buffer }> {
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
  const keys = await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify']);
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: randomBytes(8)
        .toString('hex')
        .replace(/^[89a-f]/, '1'),
      name: `CN=${name} Node-RED editor`,
      notBefore: new Date(now - 60_000),
      notAfter: new Date(now + 5 * 365 * 86_400_000),
      keys,
      signingAlgorithm: alg,
      extensions: [
        new x509.SubjectAlternativeNameExtension([
          { type: 'dns', value: name },
          { type: 'dns', value: 'localhost' },
          { type: 'ip', value: '127.0.0.1' },
        ]),
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      ],
    },
    webcrypto,
  );
  return {
    certPem: cert.toString('pem'),
    keyPkcs8: Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey)),
  };
}

const toPem = (der: Buffer) =>
  `-----BEGIN PRIVATE KEY-----\n${der
    .toString('base64')
    .match(/.{1,64}/g)
    ?.join('\n')}\n-----END PRIVATE KEY-----\n`;

/**
 * First boot (idempotent): makes whatever of the credential secret, the editor's TLS key + certificate and an
 * empty admin list is missing, and reports what it made. Existing credentials are never replaced: a new
 * credential secret would make every deployed flow's stored token unreadable.
 */
export async function setupFlows(paths: FlowsPaths, name = hostname()): Promise<string[]> {
  const made: string[] = [];
  // Modes set explicitly: the first-boot unit runs with UMask=0077, and the flows service must read these.
  mkdirSync(paths.credstoreDir, { recursive: true, mode: 0o700 });
  mkdirSync(join(paths.configDir, 'tls'), { recursive: true, mode: 0o755 });
  chmodSync(join(paths.configDir, 'tls'), 0o755);

  const secretCred = credentialFile(paths.credstoreDir, FLOWS_CREDENTIALS.secret);
  if (!existsSync(secretCred)) {
    await encryptCredential(
      FLOWS_CREDENTIALS.secret,
      Buffer.from(randomBytes(32).toString('base64url')),
      secretCred,
    );
    made.push(secretCred);
  }

  const keyCred = credentialFile(paths.credstoreDir, FLOWS_CREDENTIALS.tlsKey);
  const certFile = join(paths.configDir, 'tls', 'cert.pem');
  if (!existsSync(keyCred) || !existsSync(certFile)) {
    const { certPem, keyPkcs8 } = await editorCertificate(name);
    const pem = Buffer.from(toPem(keyPkcs8));
    await encryptCredential(FLOWS_CREDENTIALS.tlsKey, pem, `${keyCred}.new`);
    pem.fill(0);
    keyPkcs8.fill(0);
    writeFileSync(`${certFile}.new`, certPem, { mode: 0o644 });
    chmodSync(`${certFile}.new`, 0o644);
    renameSync(`${keyCred}.new`, keyCred);
    renameSync(`${certFile}.new`, certFile);
    made.push(keyCred, certFile);
  }

  const users = join(paths.configDir, 'admin-users.json');
  if (!existsSync(users)) {
    writeAdmins(users, []);
    made.push(users);
  }
  return made;
}

const adminsSchema = z.array(
  z.strictObject({
    username: z.string().min(1),
    password: z.string().regex(/^\$2[aby]\$\d\d\$/, { error: 'must be a bcrypt hash' }),
    permissions: z.string().min(1),
  }),
);
export type FlowsAdmin = z.infer<typeof adminsSchema>[number];

export function readAdmins(file: string): FlowsAdmin[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new FlowsSetupError('ERR_FLOWS_ADMINS', `${file}: ${errorMessage(err)}`);
  }
  const parsed = parseJsonWith(adminsSchema, text, file);
  if (!parsed.ok) {
    throw new FlowsSetupError(
      'ERR_FLOWS_ADMINS',
      parsed.notJson ? `${file}: ${parsed.problem}` : parsed.problem,
    );
  }
  return parsed.data;
}

/** The flows service's group on the appliance (absent on a development machine). */
export const FLOWS_GROUP = 'portcullis-flows';

function writeAdmins(file: string, admins: FlowsAdmin[]): void {
  // Hashes only, still nobody else's business: readable by the flows service through its group, not by others.
  writeFileSync(`${file}.new`, `${JSON.stringify(admins, null, 2)}\n`, { mode: 0o640 });
  chmodSync(`${file}.new`, 0o640);
  const gid = existsSync('/etc/group') ? findGroupId(FLOWS_GROUP) : undefined;
  if (gid !== undefined && process.getuid?.() === 0) chownSync(`${file}.new`, 0, gid);
  renameSync(`${file}.new`, file);
}

/** Bcrypt, as Node-RED's adminAuth verifies; cost 12. */
const BCRYPT_COST = 12;

/**
 * Adds (or with `replace`, re-keys) a Node-RED editor admin. Same name and password rules as the UI's
 * accounts (ETSI EN 303 645 5.1); only the hash is written.
 */
export async function addFlowsAdmin(
  configDir: string,
  username: string,
  password: string,
  options: { replace?: boolean } = {},
): Promise<void> {
  const name = usernameSchema.safeParse(username);
  if (!name.success) throw new FlowsSetupError('ERR_FLOWS_ADMIN', firstIssue(name.error, 'username'));
  const pw = passwordSchema.safeParse(password);
  if (!pw.success) throw new FlowsSetupError('ERR_FLOWS_ADMIN', firstIssue(pw.error, 'password'));
  const file = join(configDir, 'admin-users.json');
  const admins = existsSync(file) ? readAdmins(file) : [];
  const existing = admins.findIndex((a) => a.username === name.data);
  if (existing >= 0 && !options.replace) {
    throw new FlowsSetupError('ERR_FLOWS_ADMIN', `${name.data} exists (use --replace to set a new password)`);
  }
  const entry = { username: name.data, password: await bcrypt.hash(pw.data, BCRYPT_COST), permissions: '*' };
  if (existing >= 0) admins[existing] = entry;
  else admins.push(entry);
  writeAdmins(file, admins);
}
