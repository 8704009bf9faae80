import { lstatSync, readFileSync, realpathSync, type Stats, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { ConfigError } from './errors.ts';
import type { LoadedConfig } from './types.ts';

/**
 * Local tampering: a file or directory the gateway trusts (its config, the keys and certificates the config
 * names, its data directory and every directory above the keystore) must be owned by a trusted account and be
 * writable by nobody else; a private key must also be unreadable by anyone else. Anything less lets a local
 * unprivileged user swap in a config, a key or a whole keystore that root then uses (issue 19, items 3 and 4).
 *
 * Trusted owners: root, the user this process runs as, and the gateway's service account (`portcullis` in
 * /etc/passwd on the appliance, so that root's CLI may work on the service's data directory). An account that
 * is none of these is someone else, however harmless it looks.
 */
export class UnsafePathError extends ConfigError {
  constructor(
    readonly path: string,
    reason: string,
  ) {
    super('ERR_CONFIG_UNSAFE_PATH', `${path}: ${reason}`, [
      { path: '(root)', message: `${path}: ${reason}` },
    ]);
  }
}

/** The appliance's service account; its files are the gateway's own files. */
export const SERVICE_ACCOUNT = 'portcullis';

/** A user's id from /etc/passwd (the appliance has no NSS beyond files), or undefined. */
function passwdUid(name: string, passwdFile = '/etc/passwd'): number | undefined {
  let text: string;
  try {
    text = readFileSync(passwdFile, 'utf8');
  } catch {
    return undefined;
  }
  for (const line of text.split('\n')) {
    const [user, , uid] = line.split(':');
    if (user === name && uid !== undefined && /^\d+$/.test(uid)) return Number(uid);
  }
  return undefined;
}

let trusted: ReadonlySet<number> | undefined;

/** Owners whose files the gateway may trust: root, this process's user, the service account. */
export function trustedOwners(): ReadonlySet<number> {
  if (!trusted) {
    const ids = new Set<number>([0, process.geteuid?.() ?? 0]);
    const service = passwdUid(SERVICE_ACCOUNT);
    if (service !== undefined) ids.add(service);
    trusted = ids;
  }
  return trusted;
}

const GROUP_OTHER_WRITE = 0o022;
const GROUP_OTHER_ANY = 0o077;
const STICKY = 0o1000;

function octal(mode: number): string {
  return `0${(mode & 0o7777).toString(8)}`;
}

function checkOwner(path: string, st: Stats): void {
  if (!trustedOwners().has(st.uid)) {
    throw new UnsafePathError(
      path,
      `owned by uid ${st.uid}, not by root or the gateway's user; another account could change it`,
    );
  }
}

/**
 * A directory that holds something we trust. `ancestor`: it only leads to the thing (it is /tmp, /var…): a
 * world-writable directory is still safe there when it is root's and sticky, because nobody else may then
 * rename or remove the entry we rely on (that entry's own owner is checked in turn).
 */
function checkDirectory(path: string, st: Stats, ancestor: boolean): void {
  if (!st.isDirectory()) throw new UnsafePathError(path, 'is not a directory');
  checkOwner(path, st);
  if (st.mode & GROUP_OTHER_WRITE) {
    const stickyRoot = ancestor && (st.mode & STICKY) !== 0 && st.uid === 0;
    if (!stickyRoot) {
      throw new UnsafePathError(
        path,
        `is writable by group or others (mode ${octal(st.mode)}); make it 0700 or 0755 (chmod go-w)`,
      );
    }
  }
}

/** Every directory from `dir` up to `/`, the first being `dir` itself. */
function chain(dir: string): string[] {
  const out: string[] = [];
  let p = resolve(dir);
  for (;;) {
    out.push(p);
    const up = dirname(p);
    if (up === p) return out;
    p = up;
  }
}

function realpathOrUndefined(path: string): string | undefined {
  try {
    return realpathSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new UnsafePathError(path, `cannot be resolved (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
}

function statOf(path: string, follow: boolean): Stats {
  try {
    return follow ? statSync(path) : lstatSync(path);
  } catch (err) {
    throw new UnsafePathError(path, `cannot be examined (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
}

/**
 * The directories above a path, both as written and as resolved: a symlink anywhere on the way is only as safe
 * as the directory holding it (someone who may write there may point it elsewhere), and its target's chain
 * must be safe as well.
 */
function checkAncestors(path: string): void {
  const lexical = resolve(path);
  for (const dir of chain(dirname(lexical))) checkDirectory(dir, statOf(dir, true), true);
  const real = realpathOrUndefined(lexical);
  if (real !== undefined && real !== lexical) {
    for (const dir of chain(dirname(real))) checkDirectory(dir, statOf(dir, false), true);
  }
}

/**
 * A directory the gateway keeps data in (dataDir, the keystore): trusted owner, writable by nobody else, and
 * the same for every directory above it. A symlink to one is followed and both sides are checked. A directory
 * that does not exist yet is fine if the directory that will hold it is (it is then created 0700).
 */
export function checkDataDirectory(dir: string): void {
  const lexical = resolve(dir);
  const real = realpathOrUndefined(lexical);
  if (real === undefined) {
    // Not there yet: whoever may create it first must be trusted, i.e. its nearest existing ancestor is safe.
    let p = dirname(lexical);
    while (realpathOrUndefined(p) === undefined && dirname(p) !== p) p = dirname(p);
    checkAncestors(resolve(p, 'x'));
    return;
  }
  checkDirectory(lexical, statOf(real, false), false);
  checkAncestors(lexical);
}

export type FileKind = 'config' | 'certificate' | 'private-key';

/**
 * A file the gateway reads and trusts. Config and certificate files: trusted owner, writable by nobody else.
 * Private keys: also readable by nobody else (0600 or 0400). The directories above it are checked too.
 */
export function checkTrustedFile(path: string, kind: FileKind): void {
  const lexical = resolve(path);
  const real = realpathOrUndefined(lexical);
  if (real === undefined) return; // the schema (or the reader) reports a missing file with its own error
  const st = statOf(real, false);
  if (!st.isFile()) throw new UnsafePathError(lexical, 'is not a regular file');
  checkOwner(lexical, st);
  if (kind === 'private-key' && st.mode & GROUP_OTHER_ANY) {
    throw new UnsafePathError(
      lexical,
      `is a private key accessible to group or others (mode ${octal(st.mode)}); make it 0600 (chmod 600)`,
    );
  }
  if (st.mode & GROUP_OTHER_WRITE) {
    throw new UnsafePathError(
      lexical,
      `is writable by group or others (mode ${octal(st.mode)}); make it 0644 or 0600 (chmod go-w)`,
    );
  }
  checkAncestors(lexical);
}

/**
 * Where a Unix socket will be bound: only ever an existing socket is replaced (a crash leaves one behind), never
 * a regular file, a directory or a symlink — a config naming /etc/shadow must not make the gateway delete it.
 * Returns whether a stale socket is there to remove.
 */
export function checkSocketPath(path: string): boolean {
  const lexical = resolve(path);
  // Its folder may not exist yet (systemd makes RuntimeDirectory= when the unit starts; `config check` runs
  // before): then the nearest existing ancestor, which will hold it, must be safe — and there is nothing to replace.
  let parent = dirname(lexical);
  while (realpathOrUndefined(parent) === undefined && dirname(parent) !== parent) parent = dirname(parent);
  if (parent !== dirname(lexical)) {
    checkAncestors(resolve(parent, 'x'));
    return false;
  }
  checkAncestors(lexical);
  let st: Stats;
  try {
    st = lstatSync(lexical);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw new UnsafePathError(
      lexical,
      `cannot be examined (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
    );
  }
  if (!st.isSocket()) {
    throw new UnsafePathError(
      lexical,
      'exists and is not a socket; the control socket only replaces a socket',
    );
  }
  return true;
}

/** The config file itself, before it is read. */
export function checkConfigFile(path: string): void {
  checkTrustedFile(path, 'config');
}

/**
 * Everything a loaded config makes the gateway trust: the key and certificate files it names, the data
 * directory (and the keystore inside it) with every directory above, and the control socket's path. Returns
 * `loaded` so callers can wrap a load in it; throws UnsafePathError naming the first offending path.
 */
export function checkLocalFiles<L extends Pick<LoadedConfig, 'config'>>(loaded: L): L {
  const c = loaded.config;
  if (c.ui.tls) {
    checkTrustedFile(c.ui.tls.certFile, 'certificate');
    checkTrustedFile(c.ui.tls.keyFile, 'private-key');
  }
  const certificates = [
    c.uplink?.caFile,
    c.uplink?.certFile,
    c.updates.publicKeyFile,
    c.anomaly.siem.syslog?.tls?.caFile,
  ];
  for (const file of certificates) if (file !== undefined) checkTrustedFile(file, 'certificate');
  checkDataDirectory(c.dataDir);
  const keystore = join(c.dataDir, 'keystore');
  if (realpathOrUndefined(keystore) !== undefined) checkDataDirectory(keystore);
  if (c.control.socketPath !== undefined) checkSocketPath(c.control.socketPath);
  return loaded;
}
