import { closeSync, constants, existsSync, lstatSync, openSync, readFileSync } from 'node:fs';
import { dirname, resolve, sep } from 'node:path';
import { parseDocument } from 'yaml';
import { z } from 'zod';
import { ConfigError } from './errors.ts';
import { checkTrustedFile } from './local-files.ts';

/**
 * The console's own configuration file (`consoleConfigFile` in the main one). On the appliance the main file,
 * `/etc/portcullis/config.yaml`, is root's and read-only to the gateway's unit; the console writes its changes
 * to a file the service owns instead, merged over the main file at every load. Only what the console may change
 * can be in it — the uplink's broker URL, topic prefix and CA file (inside the file's own folder), and the
 * segments — so whoever holds the service user can change those and nothing that decides what code runs or
 * which key verifies a release (`updates.*`, the keystore, the data directory, the UI's and control socket's
 * settings stay the main file's). docs/appliance.md, "Configuration the console changes".
 */

const consoleChanges = z
  .strictObject({
    uplink: z
      .strictObject({
        url: z.string().max(500).optional(),
        topicPrefix: z.string().max(200).optional(),
        caFile: z.string().min(1).max(1000).optional(),
      })
      .optional(),
    segments: z.array(z.unknown()).max(64).optional(),
  })
  .nullable();

export type ConsoleChanges = NonNullable<z.output<typeof consoleChanges>>;

/** The main document's `consoleConfigFile`, read before the schema (it decides what the schema sees). */
export function consoleFileOf(raw: unknown): string | undefined {
  const v = (raw as { consoleConfigFile?: unknown } | null)?.consoleConfigFile;
  return typeof v === 'string' && v.startsWith('/') ? resolve(v) : undefined;
}

/** The console file's text, or '' when the console has changed nothing yet. */
export function readConsoleText(file: string): string {
  try {
    return readOwnFile(file).toString('utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return '';
    if ((err as NodeJS.ErrnoException).code === 'ELOOP') throw refuse(file, '(file)', LINK);
    throw new ConfigError(
      'ERR_CONFIG_NOT_FOUND',
      `${file}: cannot read the console's configuration (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
    );
  }
}

const LINK = 'is a symbolic link: the console writes files of its own here, never links';

/**
 * Reads a file in the console's folder without following a link: the folder is the service user's, and root's
 * CLI (config check, backup create) reads these files too — a link there would make root read what it names.
 */
export function readOwnFile(path: string): Buffer {
  const fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    return readFileSync(fd);
  } finally {
    closeSync(fd);
  }
}

function refuse(file: string, path: string, message: string): ConfigError {
  return new ConfigError(
    'ERR_CONFIG_INVALID',
    `${file}: invalid console configuration\n  ${path}: ${message}`,
    [{ path, message: `${message} (in ${file})` }],
  );
}

/** Checks a parsed console document: only the allowed keys, and a CA file inside the console file's folder. */
export function checkConsoleChanges(raw: unknown, file: string): ConsoleChanges {
  const parsed = consoleChanges.safeParse(raw ?? null);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const keys = issue?.code === 'unrecognized_keys' ? issue.keys : [];
    const at = [...(issue?.path ?? []), ...keys.slice(0, 1)].map(String).join('.') || '(root)';
    throw refuse(
      file,
      at,
      keys.length ? 'not a setting the console may change' : (issue?.message ?? 'invalid'),
    );
  }
  const changes = parsed.data ?? {};
  const ca = changes.uplink?.caFile;
  if (ca !== undefined && !resolve(dirname(file), ca).startsWith(`${dirname(file)}${sep}`)) {
    // A service-held file naming a CA elsewhere would make root's CLI read (and report on) any file it names.
    throw refuse(file, 'uplink.caFile', `must be a file in ${dirname(file)}`);
  }
  if (ca !== undefined) {
    const path = resolve(dirname(file), ca);
    if (existsSync(path) && lstatSync(path).isSymbolicLink()) throw refuse(file, 'uplink.caFile', LINK);
  }
  return changes;
}

/** The main document with the console's changes over it (the uplink's keys one by one, the segments whole). */
export function mergeConsoleChanges(main: unknown, changes: ConsoleChanges, file: string): unknown {
  const base = (main ?? {}) as Record<string, unknown>;
  const out: Record<string, unknown> = { ...base };
  if (changes.uplink) {
    const up = { ...changes.uplink };
    if (up.caFile !== undefined) up.caFile = resolve(dirname(file), up.caFile);
    out.uplink = { ...((base.uplink as Record<string, unknown> | undefined) ?? {}), ...up };
  }
  if (changes.segments) out.segments = changes.segments;
  return out;
}

/**
 * The main document as the gateway runs it: with the console's file merged over it when the main one names
 * one. The console file is checked like the main one (owner, nobody else may write it) before it is read.
 */
export function withConsoleChanges(main: unknown): unknown {
  const file = consoleFileOf(main);
  if (!file) return main;
  checkTrustedFile(file, 'config');
  const text = readConsoleText(file);
  const doc = parseDocument(text, { uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError('ERR_CONFIG_PARSE', `${file}: not valid YAML (${doc.errors[0]?.code})`, [
      { path: '(root)', message: `${doc.errors[0]?.code} (in ${file})` },
    ]);
  }
  return mergeConsoleChanges(main, checkConsoleChanges(doc.toJS(), file), file);
}
