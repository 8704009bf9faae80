import { createHash } from 'node:crypto';
import {
  accessSync,
  chmodSync,
  constants,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { parseDocument } from 'yaml';
import { AuditLog, adoptRestoredHead, sealingFrom } from '../audit/index.ts';
import { type Clock, isoTime } from '../clock.ts';
import type { Config, LoadedConfig } from '../config/index.ts';
import { parseConfig } from '../config/load.ts';
import { pskContext } from '../identity/devices.ts';
import { type Keystore, openKeystore } from '../keystore/index.ts';
import { DATABASE_FILE, LATEST_SCHEMA_VERSION, Store } from '../store/index.ts';
import { totpContext } from '../users/service.ts';
import { VERSION } from '../version.ts';
import {
  type ArchiveFileName,
  type ArchiveHeader,
  assertPassphrase,
  type CarriedSecret,
  certificateFingerprint,
  inspectArchive,
  openArchive,
  sealArchive,
} from './archive.ts';
import {
  checkStagedConsole,
  consoleFilesOf,
  installConsoleFile,
  stageConsoleFile,
} from './console-config.ts';
import { BackupError } from './errors.ts';

/** Archives above this are refused (the UI stops reading the upload at it). */
export const MAX_ARCHIVE_BYTES = 256 * 1024 * 1024;
/** Under dataDir: the staged restore, the rollback copies, temporary files. */
export const RESTORE_DIR = 'restore';
const STAGED = 'staged';
const CONFIG_NAME = 'config.yaml';
const CONSOLE_NAME = 'console.yaml';
/** The rollback copies kept (the oldest go first). */
const KEEP_ROLLBACKS = 3;

export interface BackupDeps {
  config: Config;
  store: Store;
  keystore: Keystore;
  audit: AuditLog;
  clock: Clock;
}

/** The backup dependencies of a writable core (the keystore holds the keys the archive is made with). */
export function backupFor(core: {
  config: Config;
  store: Store;
  keystore: Keystore | null;
  audit: AuditLog;
  clock: Clock;
}): BackupDeps {
  if (!core.keystore) throw new BackupError('ERR_BACKUP_STATE', 'the store was opened read-only');
  return {
    config: core.config,
    store: core.store,
    keystore: core.keystore,
    audit: core.audit,
    clock: core.clock,
  };
}

export interface BackupSummary {
  createdAt: string;
  gatewayVersion: string;
  schemaVersion: number;
  identity: string;
  devices: number;
  secrets: number;
  config: boolean;
  bytes: number;
  sha256: string;
}

/**
 * What cannot move to a replacement gateway, said before anyone relies on a backup (the UI shows this list,
 * docs/backup.md explains it). Keys in the keystore never leave it: the new box makes its own.
 */
export const DOES_NOT_MOVE: readonly string[] = [
  "The gateway identity key (in the TPM, or the software keystore's file): the new gateway makes its own, so sensors that authenticate the gateway by certificate need the new identity CA (dataDir/tls/identity-ca.pem); PSK sensors are unaffected.",
  'The uplink TLS key: the new gateway makes a new one; request its certificate again (Configuration → certificate request, or portcullis uplink csr).',
  "The data key that wraps secrets at rest: device PSKs and TOTP secrets travel decrypted inside the archive's encryption and are re-wrapped under the new gateway's key.",
  "The audit counter and the TPM's update counter: the new gateway binds the restored audit log to its own counter; past checkpoints stay verifiable through the old identity certificate recorded in the restore's audit entry.",
  'The UI and DTLS server certificates and keys (dataDir/tls): issued anew by the new identity; browsers trust the new identity CA once.',
  "Fleet enrolment: the gateway's HPKE key is derived from its data key, so the fleet operator learns the new public key from its presence message.",
  'Signed-in sessions (everyone logs in again), firmware image files (upload them again), update releases on disk.',
];

function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

function restoreDir(config: Config): string {
  return join(config.dataDir, RESTORE_DIR);
}

interface Snapshot {
  db: Buffer;
  secrets: CarriedSecret[];
  devices: number;
  schemaVersion: number;
}

/**
 * A consistent copy of the live database (SQLite's online backup) and its secrets unwrapped with this keystore —
 * read from the copy, so they match the database in the archive row for row.
 */
async function snapshot(deps: BackupDeps): Promise<Snapshot> {
  const base = restoreDir(deps.config);
  mkdirSync(base, { recursive: true, mode: 0o700 });
  const tmp = mkdtempSync(join(base, '.backup-'));
  try {
    const copy = join(tmp, DATABASE_FILE);
    await deps.store.backup.copyTo(copy);
    const store = Store.open(copy);
    let facts: Omit<Snapshot, 'db'>;
    try {
      const secrets = store.backup.wrappedSecrets().map((row): CarriedSecret => {
        if (row.kind === 'totp') {
          const value = deps.keystore.unwrap(row.wrapped, totpContext(row.key)).toString('base64');
          return { kind: 'totp', username: row.key, value };
        }
        if (row.credentialKind !== 'psk') {
          throw new BackupError(
            'ERR_BACKUP_STATE',
            `credential ${row.key} (${row.credentialKind}) holds a secret this release cannot carry`,
          );
        }
        const value = deps.keystore.unwrap(row.wrapped, pskContext(row.lookup)).toString('base64');
        return { kind: 'psk', credentialId: Number(row.key), lookup: row.lookup, value };
      });
      facts = {
        secrets,
        schemaVersion: store.backup.schemaVersion(),
        devices: store.devices.list({}).length,
      };
    } finally {
      store.close();
    }
    // Read once closed: the copy is complete and nothing holds it open.
    return { ...facts, db: readFileSync(copy) };
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** Makes the encrypted, signed archive of the database (a consistent online copy) and the configuration file. */
export async function createBackup(
  deps: BackupDeps,
  opts: {
    passphrase: string;
    configSource: string | undefined;
    actor: string;
    kdf?: { N: number; r: number; p: number };
  },
): Promise<{ archive: Buffer; summary: BackupSummary }> {
  assertPassphrase(opts.passphrase);
  const { db, secrets, devices, schemaVersion } = await snapshot(deps);
  const files = new Map<ArchiveFileName, Buffer>([['portcullis.db', db]]);
  if (opts.configSource) files.set('config.yaml', readFileSync(opts.configSource));
  for (const [name, data] of consoleFilesOf(deps.config)) files.set(name, data);
  const createdAt = isoTime(deps.clock);
  const certificate = deps.keystore.identityCertificate();
  const archive = sealArchive({
    passphrase: opts.passphrase,
    header: { createdAt, gatewayVersion: VERSION, schemaVersion, keystoreBackend: deps.keystore.backend },
    identityCertificate: certificate,
    sign: (digest) => deps.keystore.signWithIdentity(digest),
    contents: { files, secrets },
    ...(opts.kdf ? { kdf: opts.kdf } : {}),
  });
  const summary: BackupSummary = {
    createdAt,
    gatewayVersion: VERSION,
    schemaVersion,
    identity: certificateFingerprint(certificate),
    devices,
    secrets: secrets.length,
    config: files.has('config.yaml') || files.has(CONSOLE_NAME),
    bytes: archive.length,
    sha256: sha256(archive),
  };
  deps.audit.append({
    actor: opts.actor,
    action: 'backup.create',
    target: null,
    details: {
      sha256: summary.sha256,
      bytes: summary.bytes,
      devices,
      secretsCarried: secrets.length,
      config: summary.config,
    },
  });
  return { archive, summary };
}

/** SQLite's header keeps user_version (the schema version) at byte 60. */
function databaseSchemaVersion(db: Buffer): number {
  if (db.length < 100 || db.subarray(0, 16).toString('latin1') !== 'SQLite format 3\0') {
    throw new BackupError('ERR_BACKUP_TAMPERED', 'the database in the archive is not an SQLite database');
  }
  return db.readUInt32BE(60);
}

/** The archived configuration, validated by the same schema as the file, for this gateway's data directory. */
function checkArchivedConfig(text: Buffer, baseDir: string, dataDir: string): void {
  const doc = parseDocument(text.toString('utf8'), { uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new BackupError('ERR_BACKUP_INCOMPATIBLE', 'the configuration in the archive is not valid YAML');
  }
  let restored: Config;
  try {
    restored = parseConfig(doc.toJS(), baseDir, 'the archived configuration');
  } catch (err) {
    throw new BackupError(
      'ERR_BACKUP_INCOMPATIBLE',
      (err as Error).message.split('\n').slice(0, 3).join('; '),
    );
  }
  if (restored.dataDir !== dataDir) {
    throw new BackupError(
      'ERR_BACKUP_INCOMPATIBLE',
      `the archived configuration keeps its data in ${restored.dataDir}, this gateway in ${dataDir}: restore with "keep this gateway's configuration", or fix the paths`,
    );
  }
}

/** The configuration's folder must take a new file (the restore writes it beside the old one, then renames). */
function assertWritable(dir: string): void {
  try {
    accessSync(dir, constants.W_OK);
  } catch {
    throw new BackupError(
      'ERR_BACKUP_INCOMPATIBLE',
      `${dir} is not writable here, so the configuration cannot be restored: restore with "keep this gateway's configuration", or make it writable`,
    );
  }
}

export interface RestoreOptions {
  passphrase: string;
  actor: string;
  /** Restore the database only; this gateway's configuration file stays. */
  keepConfig?: boolean;
  /** The configuration file that will be replaced (to resolve its relative paths); unknown from the UI. */
  configSource?: string | undefined;
  /** The SHA-256 fingerprint of the identity certificate the archive must be signed by. */
  expectIdentity?: string | undefined;
}

export interface StagedRestore {
  from: { identity: string; createdAt: string; gatewayVersion: string; schemaVersion: number };
  devices: number;
  secrets: number;
  config: 'restored' | 'kept';
}

/** Is a restore waiting for the next start? */
export function restoreStaged(config: Config): boolean {
  return existsSync(join(restoreDir(config), STAGED));
}

/**
 * Checks the archive completely (format, identity signature, passphrase, integrity, versions, configuration)
 * before anything is written; then prepares the restored database beside the live one — secrets re-wrapped
 * under this gateway's key, sessions dropped, a `backup.restore` entry appended — and moves it into place in
 * one rename. The live database is not touched: the next start swaps it in (applyStagedRestore) and keeps the
 * replaced one as a rollback copy.
 */
export function stageRestore(deps: BackupDeps, archive: Buffer, opts: RestoreOptions): StagedRestore {
  if (archive.length > MAX_ARCHIVE_BYTES) {
    throw new BackupError('ERR_BACKUP_TOO_LARGE', `archives are limited to ${MAX_ARCHIVE_BYTES} bytes`);
  }
  if (restoreStaged(deps.config)) {
    throw new BackupError(
      'ERR_BACKUP_STATE',
      'a restore is already staged: restart the gateway to apply it first',
    );
  }
  const { header, contents } = openArchive(archive, opts.passphrase, opts.expectIdentity);
  const db = contents.files.get('portcullis.db');
  if (!db) throw new BackupError('ERR_BACKUP_TAMPERED', 'the archive holds no database');
  const schema = Math.max(header.schemaVersion, databaseSchemaVersion(db));
  if (schema > LATEST_SCHEMA_VERSION) {
    throw new BackupError(
      'ERR_BACKUP_SCHEMA_NEWER',
      `the archive's database has schema ${schema}, newer than this release's ${LATEST_SCHEMA_VERSION} (made by ${header.gatewayVersion}): update this gateway first`,
    );
  }
  // With a console file the main file is root's (the image's, the same on the replacement) and never written:
  // the console's file (uplink, segments) and its CA are what carry the configuration over.
  const consoleFile = deps.config.consoleConfigFile;
  const configText = opts.keepConfig || consoleFile ? undefined : contents.files.get('config.yaml');
  const consoleText =
    !opts.keepConfig && consoleFile && contents.files.has(CONSOLE_NAME)
      ? stageConsoleFile(contents.files, consoleFile, opts.configSource)
      : undefined;
  const restoresConfig = Boolean(configText ?? consoleText);
  if (configText) {
    const baseDir = opts.configSource ? dirname(opts.configSource) : process.cwd();
    checkArchivedConfig(configText, baseDir, deps.config.dataDir);
    if (opts.configSource) assertWritable(dirname(opts.configSource));
  }
  const base = restoreDir(deps.config);
  mkdirSync(base, { recursive: true, mode: 0o700 });
  const staging = mkdtempSync(join(base, '.staging-'));
  try {
    const file = join(staging, DATABASE_FILE);
    writeFileSync(file, db, { mode: 0o600 });
    const devices = prepareDatabase(
      deps,
      file,
      header,
      contents.secrets,
      sha256(archive),
      opts,
      restoresConfig,
    );
    if (configText) writeFileSync(join(staging, CONFIG_NAME), configText, { mode: 0o600 });
    if (consoleText) writeFileSync(join(staging, CONSOLE_NAME), consoleText, { mode: 0o600 });
    renameSync(staging, join(base, STAGED));
    const staged: StagedRestore = {
      from: {
        identity: header.identity.fingerprint,
        createdAt: header.createdAt,
        gatewayVersion: header.gatewayVersion,
        schemaVersion: header.schemaVersion,
      },
      devices,
      secrets: contents.secrets.length,
      config: restoresConfig ? 'restored' : 'kept',
    };
    deps.audit.append({
      actor: opts.actor,
      action: 'backup.restore.staged',
      target: header.identity.fingerprint,
      details: { ...staged.from, devices, secretsCarried: staged.secrets, config: staged.config },
    });
    return staged;
  } catch (err) {
    rmSync(staging, { recursive: true, force: true });
    throw err;
  }
}

/** The restored copy, made fit for this gateway: its secrets under this keystore, no sessions, the restore audited. */
function prepareDatabase(
  deps: BackupDeps,
  file: string,
  header: ArchiveHeader,
  secrets: CarriedSecret[],
  archiveSha256: string,
  opts: RestoreOptions,
  configRestored: boolean,
): number {
  // Opening runs this release's migrations on an archive from an older one.
  const restored = Store.open(file);
  try {
    let devices = 0;
    restored.transaction(() => {
      const wrapped = new Set(
        restored.backup.wrappedSecrets().map((r) => `${r.kind}:${r.kind === 'psk' ? r.key : r.lookup}`),
      );
      for (const s of secrets) {
        const value = Buffer.from(s.value, 'base64');
        const ok =
          s.kind === 'psk'
            ? restored.backup.setCredentialSecret(
                s.credentialId,
                s.lookup,
                deps.keystore.wrap(value, pskContext(s.lookup)),
              )
            : restored.backup.setTotpSecret(s.username, deps.keystore.wrap(value, totpContext(s.username)));
        value.fill(0);
        if (!ok)
          throw new BackupError('ERR_BACKUP_TAMPERED', 'a carried secret names no row of the database');
        wrapped.delete(`${s.kind}:${s.kind === 'psk' ? s.credentialId : s.username}`);
      }
      // Every wrapped secret must have come with its value: one still under the old key would fail at use.
      if (wrapped.size > 0)
        throw new BackupError('ERR_BACKUP_TAMPERED', 'the archive lacks some of its secrets');
      restored.backup.clearSessions();
      devices = restored.devices.list({}).length;
    });
    new AuditLog(restored, deps.clock).append({
      actor: opts.actor,
      action: 'backup.restore',
      target: header.identity.fingerprint,
      details: {
        archiveSha256,
        createdAt: header.createdAt,
        gatewayVersion: header.gatewayVersion,
        restoredBy: VERSION,
        previousIdentity: header.identity.fingerprint,
        previousIdentityCertificate: header.identity.certificate,
        config: configRestored ? 'restored' : 'kept',
      },
    });
    return devices;
  } finally {
    restored.close();
  }
}

/**
 * At gateway start, before the database is opened: puts a staged restore in place. The restored log's head is
 * bound to this keystore's key and counter; the replaced database (and configuration) move to
 * `restore/rollback-<time>/`; the restored ones take their place by rename. Returns what happened, or null.
 */
export function applyStagedRestore(
  loaded: LoadedConfig,
  clock: Clock,
): { rollbackDir: string; config: boolean } | { refused: string } | null {
  const { config } = loaded;
  const base = restoreDir(config);
  const staged = join(base, STAGED);
  if (!existsSync(staged)) return null;
  const stamp = isoTime(clock).replace(/[:.]/g, '-');
  const stagedDb = join(staged, DATABASE_FILE);
  const stagedConfig = join(staged, CONFIG_NAME);
  const live = join(config.dataDir, DATABASE_FILE);
  const withConfig = existsSync(stagedConfig) && loaded.source !== undefined;
  const tmpConfig = `${loaded.source}.restore`;
  const consoleFile = config.consoleConfigFile;
  const stagedConsole = join(staged, CONSOLE_NAME);
  const consoleText =
    consoleFile && existsSync(stagedConsole) ? readFileSync(stagedConsole, 'utf8') : undefined;
  try {
    if (!existsSync(stagedDb))
      throw new BackupError('ERR_BACKUP_STATE', 'the staged restore has no database');
    if (withConfig) {
      checkArchivedConfig(readFileSync(stagedConfig), dirname(loaded.source as string), config.dataDir);
      // Written beside the file now, so a folder the service may not write to (a read-only /etc) refuses the
      // restore before anything moved, rather than after the live database went to the rollback copy.
      copyFileSync(stagedConfig, tmpConfig);
      chmodSync(tmpConfig, 0o600);
    }
    if (consoleFile && consoleText !== undefined) checkStagedConsole(consoleText, consoleFile, loaded.source);
  } catch (err) {
    // Nothing was moved: the gateway starts on its own data, and the refused copy stays for a person to look at.
    if (withConfig) rmSync(tmpConfig, { force: true });
    renameSync(staged, join(base, `refused-${stamp}`));
    return { refused: (err as Error).message };
  }
  const keystore = openKeystore(config);
  const store = Store.open(stagedDb);
  try {
    adoptRestoredHead(store, sealingFrom(keystore));
  } finally {
    store.close();
  }
  const rollbackDir = join(base, `rollback-${stamp}`);
  mkdirSync(rollbackDir, { recursive: true, mode: 0o700 });
  for (const suffix of ['', '-wal', '-shm']) {
    if (existsSync(live + suffix)) renameSync(live + suffix, join(rollbackDir, DATABASE_FILE + suffix));
  }
  if (withConfig) {
    const source = loaded.source as string;
    copyFileSync(source, join(rollbackDir, CONFIG_NAME));
    renameSync(tmpConfig, source);
  }
  if (consoleFile && consoleText !== undefined) installConsoleFile(consoleText, consoleFile, rollbackDir);
  // The commit point: from here the gateway opens the restored database.
  renameSync(stagedDb, live);
  rmSync(staged, { recursive: true, force: true });
  pruneRollbacks(base);
  return { rollbackDir, config: withConfig || consoleText !== undefined };
}

function pruneRollbacks(base: string): void {
  const copies = readdirSync(base)
    .filter((d) => d.startsWith('rollback-'))
    .sort();
  for (const old of copies.slice(0, Math.max(0, copies.length - KEEP_ROLLBACKS))) {
    rmSync(join(base, old), { recursive: true, force: true });
  }
}

/** The header of an archive, checked (format, identity signature) without the passphrase: for a first look. */
export function describeArchive(archive: Buffer): ArchiveHeader {
  return inspectArchive(archive);
}
