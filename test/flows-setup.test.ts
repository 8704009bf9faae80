/**
 * First boot of the appliance's Node-RED: its credential secret and editor TLS key become systemd credentials
 * (real `systemd-creds`, host key), nothing secret lands in a plain file, the settings refuse to start without
 * them, and editor admins are added by the CLI with bcrypt hashes under the UI's password rules.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import bcrypt from 'bcryptjs';
import { credentialFile, FLOWS_CREDENTIALS, readAdmins, setupFlows } from '../gateway/src/flows/setup.ts';
import { runCli } from './helpers/cli.ts';
import { loadFlowsCredentials } from './helpers/credentials.ts';
import { tempDir } from './helpers/tmp.ts';

const SETTINGS = join(import.meta.dirname, '..', 'systemd', 'node-red-settings.cjs');

function decrypt(cred: string, name: string): { ok: boolean; out: string } {
  const r = spawnSync('systemd-creds', ['decrypt', `--name=${name}`, cred, '-'], { encoding: 'utf8' });
  return { ok: r.status === 0, out: r.stdout };
}

/** Every byte under dir, to prove a secret is nowhere in it. */
function allText(dir: string): string {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => readFileSync(join(e.parentPath, e.name), 'latin1'))
    .join('\n');
}

function loadSettings(configDir: string, credentials?: string) {
  return spawnSync(
    process.execPath,
    [
      '-e',
      `const s = require(${JSON.stringify(SETTINGS)}); console.log(JSON.stringify({ secret: s.credentialSecret.length, key: s.https.key.split('\\n')[0], users: s.adminAuth.users.length }))`,
    ],
    {
      encoding: 'utf8',
      env: { ...process.env, PORTCULLIS_FLOWS_CONFIG: configDir, CREDENTIALS_DIRECTORY: credentials ?? '' },
    },
  );
}

describe('Node-RED first boot (portcullis flows setup)', () => {
  it('makes the credential secret and the editor key as encrypted systemd credentials, nothing secret in plain files', async (t) => {
    const dir = tempDir(t);
    const paths = { configDir: join(dir, 'conf'), credstoreDir: join(dir, 'credstore') };
    const r = await runCli([
      'flows',
      'setup',
      '--config-dir',
      paths.configDir,
      '--credstore',
      paths.credstoreDir,
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /nobody can log in to Node-RED until/);

    const secretCred = credentialFile(paths.credstoreDir, FLOWS_CREDENTIALS.secret);
    const keyCred = credentialFile(paths.credstoreDir, FLOWS_CREDENTIALS.tlsKey);
    for (const f of [secretCred, keyCred]) assert.equal(statSync(f).mode & 0o777, 0o600, f);
    const secret = decrypt(secretCred, FLOWS_CREDENTIALS.secret);
    assert.ok(secret.ok);
    assert.match(secret.out, /^[A-Za-z0-9_-]{43}$/, '256 random bits');
    const key = decrypt(keyCred, FLOWS_CREDENTIALS.tlsKey);
    assert.ok(key.ok);
    const cert = new X509Certificate(readFileSync(join(paths.configDir, 'tls', 'cert.pem')));
    assert.ok(cert.checkPrivateKey(createPrivateKey(key.out)), 'the certificate is for the encrypted key');
    assert.deepEqual(readAdmins(join(paths.configDir, 'admin-users.json')), []);

    // Neither secret exists in plain text anywhere it was written (credstore included), nor in the output.
    const written = allText(dir) + r.stdout + r.stderr;
    assert.ok(!written.includes(secret.out), 'credential secret in plain text');
    assert.ok(!written.includes('PRIVATE KEY'), 'TLS key in plain text');
  });

  it('is idempotent: a second run replaces nothing (flows keep their stored tokens)', async (t) => {
    const dir = tempDir(t);
    const paths = { configDir: join(dir, 'conf'), credstoreDir: join(dir, 'credstore') };
    // As under the first-boot unit's UMask=0077: what the flows service reads must still be readable to it.
    const umask = process.umask(0o077);
    try {
      assert.equal((await setupFlows(paths, 'gw')).length, 4);
    } finally {
      process.umask(umask);
    }
    assert.equal(statSync(join(paths.configDir, 'tls')).mode & 0o777, 0o755);
    assert.equal(statSync(join(paths.configDir, 'tls', 'cert.pem')).mode & 0o777, 0o644);
    assert.equal(statSync(join(paths.configDir, 'admin-users.json')).mode & 0o777, 0o640);
    assert.equal(statSync(paths.credstoreDir).mode & 0o777, 0o700);
    const cred = credentialFile(paths.credstoreDir, FLOWS_CREDENTIALS.secret);
    const before = readFileSync(cred);
    assert.deepEqual(await setupFlows(paths, 'gw'), []);
    assert.deepEqual(readFileSync(cred), before);
  });

  it('refuses a credential that was tampered with or is presented under another name', async (t) => {
    const dir = tempDir(t);
    const paths = { configDir: join(dir, 'conf'), credstoreDir: join(dir, 'credstore') };
    await setupFlows(paths, 'gw');
    const cred = credentialFile(paths.credstoreDir, FLOWS_CREDENTIALS.secret);
    assert.equal(decrypt(cred, FLOWS_CREDENTIALS.tlsKey).ok, false, 'the name is bound into the credential');
    const bytes = readFileSync(cred, 'utf8');
    // The credential is base64 text: change one character in the middle of the ciphertext.
    const i = Math.floor(bytes.length / 2);
    const flipped = bytes.slice(0, i) + (bytes[i] === 'A' ? 'B' : 'A') + bytes.slice(i + 1);
    writeFileSync(cred, flipped);
    assert.equal(decrypt(cred, FLOWS_CREDENTIALS.secret).ok, false, 'authenticated encryption');
  });

  it('settings.js starts only with its credentials: fail closed without them', async (t) => {
    const dir = tempDir(t);
    const paths = { configDir: join(dir, 'conf'), credstoreDir: join(dir, 'credstore') };
    await setupFlows(paths, 'gw');
    const without = loadSettings(paths.configDir);
    assert.notEqual(without.status, 0);
    assert.match(without.stderr, /ENOENT/);

    // What systemd does for LoadCredentialEncrypted=: decrypt into $CREDENTIALS_DIRECTORY.
    const creds = loadFlowsCredentials(paths.credstoreDir, join(dir, 'creds'));
    const withCreds = loadSettings(paths.configDir, creds);
    assert.equal(withCreds.status, 0, withCreds.stderr);
    assert.deepEqual(JSON.parse(withCreds.stdout), {
      secret: 43,
      key: '-----BEGIN PRIVATE KEY-----',
      users: 0,
    });
  });

  it('adds editor admins with bcrypt hashes; refuses weak passwords, bad names and silent replacement', async (t) => {
    const dir = tempDir(t);
    const conf = join(dir, 'conf');
    await setupFlows({ configDir: conf, credstoreDir: join(dir, 'credstore') }, 'gw');
    const add = (name: string, password: string, ...extra: string[]) =>
      runCli(['flows', 'admin', 'add', name, '--config-dir', conf, ...extra], { input: `${password}\n` });

    const ok = await add('tech', 'correct horse battery');
    assert.equal(ok.code, 0, ok.stderr);
    const [admin] = readAdmins(join(conf, 'admin-users.json'));
    assert.equal(admin?.username, 'tech');
    assert.ok(await bcrypt.compare('correct horse battery', admin?.password ?? ''));
    assert.ok(!readFileSync(join(conf, 'admin-users.json'), 'utf8').includes('correct horse'));
    assert.equal(statSync(join(conf, 'admin-users.json')).mode & 0o007, 0, 'not readable by others');

    const weak = await add('other', 'short');
    assert.equal(weak.code, 2);
    assert.match(weak.stderr, /ERR_FLOWS_ADMIN: password: must be at least 12 characters/);
    assert.ok(!weak.stderr.includes('short\n'));
    const badName = await add('Root!', 'a long enough passphrase');
    assert.equal(badName.code, 2);
    assert.match(badName.stderr, /username/);
    const dup = await add('tech', 'another long passphrase');
    assert.equal(dup.code, 2);
    assert.match(dup.stderr, /exists/);
    assert.ok(
      await bcrypt.compare(
        'correct horse battery',
        readAdmins(join(conf, 'admin-users.json'))[0]?.password ?? '',
      ),
    );
    const replaced = await add('tech', 'another long passphrase', '--replace');
    assert.equal(replaced.code, 0, replaced.stderr);
    const admins = readAdmins(join(conf, 'admin-users.json'));
    assert.equal(admins.length, 1);
    assert.ok(await bcrypt.compare('another long passphrase', admins[0]?.password ?? ''));
  });
});
