/**
 * Backup and restore (docs/backup.md): an encrypted, signed archive of the configuration and database that a
 * replacement gateway restores. The round trip runs the real CLI and real gateways (gateway A with devices,
 * users and audit; gateway B, its own keystore, restores and then a libcoap DTLS client connects with the old
 * PSK, the old TOTP secret still logs in, the audit chain verifies). The refusals — tampered, wrong passphrase,
 * newer schema or format, another signer — are checked in-process with the service and leave nothing behind.
 */
import assert from 'node:assert/strict';
import { createHash, X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { generateSync } from 'otplib';
import { sealArchive } from '../gateway/src/backup/archive.ts';
import { applyStagedRestore, BackupError, createBackup, stageRestore } from '../gateway/src/backup/index.ts';
import { ManualClock, systemClock } from '../gateway/src/clock.ts';
import { loadConfigFile, parseConfig } from '../gateway/src/config/index.ts';
import { Core } from '../gateway/src/core.ts';
import { LATEST_SCHEMA_VERSION } from '../gateway/src/store/index.ts';
import { runCli, spawnCli, waitForLine } from './helpers/cli.ts';
import { freeUdpPort } from './helpers/gateway.ts';
import { runPeer } from './helpers/peers.ts';
import { tempDir } from './helpers/tmp.ts';
import { startTpm, type TestTpm } from './helpers/tpm.ts';

type T = Parameters<typeof tempDir>[0];
const PASSPHRASE = 'a long backup passphrase';
const KEY_1 = 'sixteen-byte-key-1';
/** Cheap scrypt for the in-process refusals (the CLI round trip uses the real cost). */
const KDF = { N: 2 ** 14, r: 8, p: 1 };

function deps(core: Core) {
  return {
    config: core.config,
    store: core.store,
    keystore: core.keystore as NonNullable<Core['keystore']>,
    audit: core.audit,
    clock: core.clock,
  };
}

function gatewayCore(t: T, name: string) {
  const dir = tempDir(t, `portcullis-${name}-`);
  const core = Core.open(
    parseConfig({ dataDir: join(dir, 'var') }, dir),
    new ManualClock(Date.UTC(2026, 11, 1)),
  );
  t.after(() => core.close());
  return { dir, core };
}

async function archiveOfA(t: T) {
  const a = gatewayCore(t, 'a');
  a.core.identity.addPskDevice({ id: 's1', pskIdentity: 's1', pskText: KEY_1 }, 'test');
  const { archive } = await createBackup(deps(a.core), {
    passphrase: PASSPHRASE,
    configSource: undefined,
    actor: 'test',
    kdf: KDF,
  });
  return { a, archive };
}

/** The archive's signature made again by `core`'s identity over whatever the bytes are now (an attacker's key). */
function resign(archive: Buffer, core: Core): Buffer {
  let at = 20;
  const part = () => {
    const len = archive.readUInt32BE(at);
    const out = archive.subarray(at + 4, at + 4 + len);
    at += 4 + len;
    return out;
  };
  const header = JSON.parse(part().toString('utf8')) as {
    identity: { certificate: string; fingerprint: string };
  };
  const sealed = part();
  const cert = core.keystore?.identityCertificate() as string;
  header.identity = { certificate: cert, fingerprint: new X509Certificate(cert).fingerprint256 };
  const headerBytes = Buffer.from(JSON.stringify(header));
  const digest = createHash('sha256')
    .update('portcullis backup v1\n')
    .update(headerBytes)
    .update(sealed)
    .digest();
  const sig = core.keystore?.signWithIdentity(digest) as Buffer;
  const u32 = (n: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(n);
    return b;
  };
  return Buffer.concat([
    archive.subarray(0, 20),
    u32(headerBytes.length),
    headerBytes,
    u32(sealed.length),
    sealed,
    u32(sig.length),
    sig,
  ]);
}

function expectRefused(fn: () => unknown, code: string) {
  assert.throws(fn, (err: unknown) => err instanceof BackupError && err.code === code);
}

/** The live database and the restore folder of B, to show a refusal changed nothing. */
function fingerprint(core: Core): string {
  const restore = join(core.config.dataDir, 'restore');
  const staged = existsSync(restore) ? readdirSync(restore).filter((d) => !d.startsWith('.')) : [];
  return `${core.identity.list({}).length}:${staged.join(',')}:${core.store.audit.head()?.seq}`;
}

describe('backup archive refusals (in-process)', () => {
  it('stages a good archive: the PSK is re-wrapped under the new keystore, the restore is audited', async (t) => {
    const { archive } = await archiveOfA(t);
    const b = gatewayCore(t, 'b');
    const r = stageRestore(deps(b.core), archive, {
      passphrase: PASSPHRASE,
      actor: 'test',
      keepConfig: true,
    });
    assert.equal(r.devices, 1);
    assert.equal(r.secrets, 1);
    assert.ok(existsSync(join(b.core.config.dataDir, 'restore', 'staged', 'portcullis.db')));
    assert.equal([...b.core.audit.entries()].at(-1)?.action, 'backup.restore.staged');
    // A second one waits for the first to be applied.
    expectRefused(
      () => stageRestore(deps(b.core), archive, { passphrase: PASSPHRASE, actor: 'test', keepConfig: true }),
      'ERR_BACKUP_STATE',
    );
  });

  it('refuses a tampered archive, a wrong passphrase, another signer and a too-short passphrase; nothing is written', async (t) => {
    const { a, archive } = await archiveOfA(t);
    const b = gatewayCore(t, 'b');
    const before = fingerprint(b.core);
    const restore = (buf: Buffer, passphrase = PASSPHRASE, expectIdentity?: string) =>
      stageRestore(deps(b.core), buf, { passphrase, actor: 'test', keepConfig: true, expectIdentity });

    // One byte of the encrypted payload changed: the identity signature no longer verifies.
    const flipped = Buffer.from(archive);
    flipped.writeUInt8(flipped.readUInt8(flipped.length - 200) ^ 0x01, flipped.length - 200);
    expectRefused(() => restore(flipped), 'ERR_BACKUP_SIGNATURE');
    expectRefused(() => restore(archive.subarray(0, archive.length - 10)), 'ERR_BACKUP_FORMAT');
    expectRefused(() => restore(Buffer.from('not a backup at all')), 'ERR_BACKUP_FORMAT');
    expectRefused(() => restore(archive, 'the wrong passphrase'), 'ERR_BACKUP_PASSPHRASE');
    expectRefused(() => restore(archive, PASSPHRASE, 'AB:CD'), 'ERR_BACKUP_SIGNATURE');

    // Someone with their own key re-signs a changed archive: the signature holds, the encryption does not.
    const other = gatewayCore(t, 'other');
    const resigned = sealArchive({
      passphrase: PASSPHRASE,
      header: { createdAt: 'x', gatewayVersion: '0.1.0', schemaVersion: 1, keystoreBackend: 'software' },
      identityCertificate: other.core.keystore?.identityCertificate() as string,
      sign: (d) => other.core.keystore?.signWithIdentity(d) as Buffer,
      contents: { files: new Map([['portcullis.db', Buffer.from('SQLite format 3\0')]]), secrets: [] },
      kdf: KDF,
    });
    // Its signature is good, but a passphrase it was not sealed with does not open it ...
    expectRefused(() => restore(resigned, 'the passphrase of A only'), 'ERR_BACKUP_PASSPHRASE');
    // ... and pinning A's identity refuses it before anything is decrypted.
    const aIdentity = new X509Certificate(a.core.keystore?.identityCertificate() as string).fingerprint256;
    expectRefused(() => restore(resigned, PASSPHRASE, aIdentity), 'ERR_BACKUP_SIGNATURE');
    // The passphrase right and the signature re-made over a changed payload: the encryption catches it.
    expectRefused(() => restore(resign(flipped, other.core)), 'ERR_BACKUP_TAMPERED');

    await assert.rejects(
      createBackup(deps(a.core), { passphrase: 'short', configSource: undefined, actor: 'test', kdf: KDF }),
      (err: unknown) => err instanceof BackupError && err.code === 'ERR_BACKUP_WEAK_PASSPHRASE',
    );
    assert.equal(fingerprint(b.core), before, 'no refusal staged anything or wrote an audit entry');
  });

  it('refuses an archive from a newer schema or a newer format, before touching anything', async (t) => {
    const { a } = await archiveOfA(t);
    const b = gatewayCore(t, 'b');
    const before = fingerprint(b.core);
    const db = Buffer.alloc(4096);
    Buffer.from('SQLite format 3\0', 'latin1').copy(db);
    db.writeUInt32BE(LATEST_SCHEMA_VERSION + 1, 60);
    const newer = sealArchive({
      passphrase: PASSPHRASE,
      header: {
        createdAt: 'x',
        gatewayVersion: '9.0.0',
        schemaVersion: LATEST_SCHEMA_VERSION + 1,
        keystoreBackend: 'software',
      },
      identityCertificate: a.core.keystore?.identityCertificate() as string,
      sign: (d) => a.core.keystore?.signWithIdentity(d) as Buffer,
      contents: { files: new Map([['portcullis.db', db]]), secrets: [] },
      kdf: KDF,
    });
    expectRefused(
      () => stageRestore(deps(b.core), newer, { passphrase: PASSPHRASE, actor: 'test', keepConfig: true }),
      'ERR_BACKUP_SCHEMA_NEWER',
    );
    const format2 = Buffer.concat([Buffer.from('PORTCULLIS-BACKUP 2\n'), Buffer.alloc(64)]);
    expectRefused(
      () => stageRestore(deps(b.core), format2, { passphrase: PASSPHRASE, actor: 'test' }),
      'ERR_BACKUP_SCHEMA_NEWER',
    );
    assert.equal(fingerprint(b.core), before);
  });
});

/** A gateway home without an uplink (none is needed to restore), its config file and DTLS port. */
async function home(t: T, name: string) {
  const dir = tempDir(t, `portcullis-${name}-`);
  const port = await freeUdpPort();
  const config = join(dir, 'config.yaml');
  writeFileSync(
    config,
    [
      `dataDir: ${join(dir, 'var')}`,
      'log: {level: info}',
      `dtls: {host: 127.0.0.1, port: ${port}}`,
      'ui: {port: 0}',
      '',
    ].join('\n'),
  );
  const cli = (args: string[], input?: string) =>
    runCli(['--config', config, ...args], { cwd: dir, ...(input === undefined ? {} : { input }) });
  return { dir, config, port, cli };
}

async function runGateway(config: string, cwd: string, during: () => Promise<void>) {
  const child = spawnCli(['--config', config, 'start'], { cwd });
  const lines: string[] = [];
  child.stdout?.on('data', (d: Buffer) => lines.push(...d.toString().split('\n')));
  await waitForLine(child, (l) => (l.includes('"gateway started"') ? true : undefined));
  try {
    await during();
  } finally {
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    await exited;
  }
  return lines;
}

const post = (port: number, key: string, body: string) =>
  runPeer('coap-client-openssl', [
    ...['-B', '3', '-u', 's1', '-k', key, '-m', 'post', '-e', body],
    `coaps://127.0.0.1:${port}/telemetry`,
  ]);

describe('backup and restore onto a replacement gateway (real CLI, real gateways, libcoap)', () => {
  it('A (devices, an enrolled user, audit) → archive → B restores → the sensor connects, the TOTP works, the chain verifies', async (t) => {
    const a = await home(t, 'a');
    assert.equal((await a.cli(['device', 'add', 's1', '--psk-identity', 's1', '--psk-text', KEY_1])).code, 0);
    // An account with an enrolled second factor (the secret is wrapped under A's key).
    const coreA = Core.open(loadConfigFile(a.config), systemClock);
    await coreA.users.createUser(
      { username: 'tech', role: 'admin', password: 'correct horse battery staple' },
      'test',
    );
    const { secret } = coreA.users.beginTotpEnrollment('tech');
    coreA.users.confirmTotpEnrollment('tech', generateSync({ secret }));
    coreA.close();
    // A runs and takes a message (its stop signs a checkpoint with A's identity key).
    await runGateway(a.config, a.dir, async () => {
      const r = await post(a.port, KEY_1, 'on A');
      assert.equal(r.code, 0, r.stderr);
    });
    const passFile = join(a.dir, 'pass');
    writeFileSync(passFile, `${PASSPHRASE}\n`);
    const archive = join(a.dir, 'site.pcbk');
    const made = await a.cli(['backup', 'create', '--out', archive, '--passphrase-file', passFile]);
    assert.equal(made.code, 0, made.stderr);
    assert.match(made.stdout, /1 devices, 2 secrets, configuration included/);
    assert.match(made.stdout, /cannot move/);
    assert.doesNotMatch(made.stdout + made.stderr, new RegExp(KEY_1));
    const inspected = await runCli(['backup', 'inspect', archive]);
    assert.match(inspected.stdout, /signature good/);

    const b = await home(t, 'b');
    // B's configuration keeps its data elsewhere: restoring A's file would point B at a folder it does not use.
    const mismatch = await b.cli(['backup', 'restore', archive], `${PASSPHRASE}\n`);
    assert.equal(mismatch.code, 1);
    assert.match(mismatch.stderr, /ERR_BACKUP_INCOMPATIBLE/);
    const wrong = await b.cli(['backup', 'restore', archive, '--keep-config'], 'not the passphrase at all\n');
    assert.match(wrong.stderr, /ERR_BACKUP_PASSPHRASE/);
    const staged = await b.cli(['backup', 'restore', archive, '--keep-config'], `${PASSPHRASE}\n`);
    assert.equal(staged.code, 0, staged.stderr);
    assert.match(staged.stdout, /staged: 1 devices and 2 secrets/);

    const log = await runGateway(b.config, b.dir, async () => {
      const ok = await post(b.port, KEY_1, 'on B');
      assert.equal(ok.code, 0, ok.stderr);
      assert.doesNotMatch(ok.stdout.toString() + ok.stderr, /bad record mac|alert/i);
      const bad = await post(b.port, 'another-sixteen-b', 'impostor');
      assert.match(bad.stdout.toString() + bad.stderr, /bad record mac/);
    });
    assert.ok(log.some((l) => l.includes('"restored from a backup"')));
    assert.ok(readdirSync(join(b.dir, 'var', 'restore')).some((d) => d.startsWith('rollback-')));

    const verify = await b.cli(['audit', 'verify']);
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);
    assert.match(verify.stdout, /keyed head ok/);
    assert.match(verify.stdout, /[1-9]\d* signed checkpoints ok/);
    const exported = (await b.cli(['audit', 'export', '--format', 'jsonl'])).stdout;
    assert.match(exported, /backup\.restore/);
    assert.match(exported, /device\.add/);

    const coreB = Core.open(loadConfigFile(b.config), systemClock);
    t.after(() => coreB.close());
    assert.equal(coreB.identity.show('s1').device.state, 'active');
    assert.ok(coreB.identity.show('s1').device.lastSeen, 'the sensor was seen on B');
    // A's TOTP secret, re-wrapped under B's key, still checks a code (one step ahead: A used the current one).
    coreB.users.verifySecondFactor(
      'tech',
      generateSync({ secret, epoch: Math.floor(Date.now() / 1000) + 30 }),
    );
    assert.equal(readFileSync(archive).subarray(0, 18).toString(), 'PORTCULLIS-BACKUP ');
  });
});

describe('applying a staged restore at start', () => {
  it('puts the configuration in place with the database, or — when it no longer fits — refuses the whole restore and starts on the old data', async (t) => {
    const home = (name: string) => {
      const dir = tempDir(t, `portcullis-${name}-`);
      const file = join(dir, 'config.yaml');
      writeFileSync(file, 'dataDir: var\nlog: {level: warn}\n');
      return { dir, file, config: loadConfigFile(file) };
    };
    const a = home('a');
    const coreA = Core.open(a.config, new ManualClock(Date.UTC(2026, 11, 1)));
    coreA.identity.addPskDevice({ id: 's1', pskIdentity: 's1', pskText: KEY_1 }, 'test');
    const { archive } = await createBackup(deps(coreA), {
      passphrase: PASSPHRASE,
      configSource: a.file,
      actor: 'test',
      kdf: KDF,
    });
    coreA.close();
    const stage = () => {
      const b = home('b');
      const coreB = Core.open(b.config, new ManualClock(Date.UTC(2026, 11, 2)));
      const r = stageRestore(deps(coreB), archive, {
        passphrase: PASSPHRASE,
        actor: 'test',
        configSource: b.file,
      });
      coreB.close();
      assert.equal(r.config, 'restored');
      return b;
    };
    const clock = new ManualClock(Date.UTC(2026, 11, 3));

    const ok = stage();
    const applied = applyStagedRestore({ config: ok.config, source: ok.file }, clock);
    assert.ok(applied && 'rollbackDir' in applied && applied.config, JSON.stringify(applied));
    assert.match(readFileSync(ok.file, 'utf8'), /log: \{level: warn\}/);
    assert.ok(existsSync(join(applied.rollbackDir, 'config.yaml')));
    const restored = Core.open(ok.config, clock);
    assert.equal(restored.identity.list({}).length, 1);
    restored.close();

    // Between staging and the restart the configuration moved: its relative dataDir now means another folder.
    const moved = stage();
    const elsewhere = join(tempDir(t, 'portcullis-moved-'), 'config.yaml');
    const refused = applyStagedRestore({ config: moved.config, source: elsewhere }, clock);
    assert.ok(refused && 'refused' in refused, JSON.stringify(refused));
    assert.match(refused.refused, /keeps its data in/);
    const dirs = readdirSync(join(moved.config.dataDir, 'restore'));
    assert.ok(dirs.some((d) => d.startsWith('refused-')));
    assert.ok(!dirs.includes('staged') && !dirs.some((d) => d.startsWith('rollback-')), dirs.join(','));
    const untouched = Core.open(moved.config, clock);
    assert.equal(untouched.identity.list({}).length, 0, 'the old (empty) database is still in place');
    untouched.close();
  });
});

describe('restore onto a replacement gateway whose keys are in a TPM (swtpm)', () => {
  let tpm: TestTpm;
  before(async () => {
    tpm = await startTpm();
    Object.assign(process.env, tpm.env);
  });
  after(() => tpm.stop());

  it('re-wraps the PSK and TOTP secret under the TPM-sealed data key; the identity is the new TPM key; the chain verifies', async (t) => {
    const { a, archive } = await archiveOfA(t);
    await a.core.users.createUser(
      { username: 'tech', role: 'admin', password: 'correct horse battery staple' },
      'test',
    );
    const { secret } = a.core.users.beginTotpEnrollment('tech');
    a.core.users.confirmTotpEnrollment('tech', generateSync({ secret, epoch: a.core.clock.now() / 1000 }));
    a.core.audit.checkpoint({ force: true });
    const { archive: withUser } = await createBackup(deps(a.core), {
      passphrase: PASSPHRASE,
      configSource: undefined,
      actor: 'test',
      kdf: KDF,
    });
    assert.ok(withUser.length > archive.length);
    const dir = tempDir(t, 'portcullis-b-tpm-');
    const config = parseConfig(
      { dataDir: join(dir, 'var'), keystore: { backend: 'tpm2', tcti: tpm.tcti } },
      dir,
    );
    const clock = new ManualClock(Date.UTC(2026, 11, 2));
    const b = Core.open(config, clock);
    const staged = stageRestore(deps(b), withUser, {
      passphrase: PASSPHRASE,
      actor: 'test',
      keepConfig: true,
    });
    assert.equal(staged.secrets, 2);
    b.close();
    const applied = applyStagedRestore({ config, source: undefined }, clock);
    assert.ok(applied && 'rollbackDir' in applied, JSON.stringify(applied));
    const restored = Core.open(config, clock);
    t.after(() => restored.close());
    assert.equal(restored.keystore?.backend, 'tpm2');
    assert.equal(restored.identity.pskFor(Buffer.from('s1'))?.toString(), KEY_1);
    restored.users.verifySecondFactor('tech', generateSync({ secret, epoch: clock.now() / 1000 }));
    const identityA = new X509Certificate(a.core.keystore?.identityCertificate() as string).fingerprint256;
    const identityB = new X509Certificate(restored.keystore?.identityCertificate() as string).fingerprint256;
    assert.notEqual(identityB, identityA, 'the identity key was made anew in the TPM');
    const v = restored.audit.verify();
    assert.ok(v.ok, JSON.stringify(v));
    assert.ok(v.keyed && v.keyed.checkpoints >= 1 && v.keyed.anchor === 'tpm2-nv', JSON.stringify(v));
  });
});
