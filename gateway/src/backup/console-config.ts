import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { parseDocument } from 'yaml';
import { checkCaPem, writeAtomically } from '../config/apply.ts';
import {
  checkConsoleChanges,
  mergeConsoleChanges,
  readConsoleText,
  readOwnFile,
} from '../config/console-file.ts';
import { parseConfig } from '../config/load.ts';
import type { Config } from '../config/schema.ts';
import type { ArchiveFileName } from './archive.ts';
import { BackupError } from './errors.ts';

/**
 * The console's configuration in a backup (issue 25, appliance point 4). On a gateway whose main configuration
 * names a `consoleConfigFile` (the appliance: the main file is root's, the image's, and the same on the
 * replacement), what a restore carries over is the console's file — uplink and segments — and the uplink CA it
 * names, written to the replacement's own console file; the main file is never written. The CA travels by
 * content and is stored under its content's name, so the restored file names it wherever that folder is.
 */

const CONSOLE = 'console.yaml';
const CA = 'console-ca.pem';

/** The console's file and its CA, for an archive (nothing when the console has changed nothing). */
export function consoleFilesOf(config: Config): Map<ArchiveFileName, Buffer> {
  const out = new Map<ArchiveFileName, Buffer>();
  const file = config.consoleConfigFile;
  if (!file) return out;
  const text = readConsoleText(file);
  if (!text.trim()) return out;
  out.set(CONSOLE, Buffer.from(text));
  const ca = config.uplink?.caFile;
  if (ca && dirname(ca) === dirname(file) && existsSync(ca)) out.set(CA, readOwnFile(ca));
  return out;
}

function incompatible(why: string): BackupError {
  return new BackupError('ERR_BACKUP_INCOMPATIBLE', `the console configuration in the archive: ${why}`);
}

/**
 * The archived console file made fit for this gateway: only what the console may change, its CA (checked as
 * the console checks an upload) written beside this gateway's console file under its content's name, and the
 * whole — this gateway's main file with it — valid for this release. Returns the text to stage.
 */
export function stageConsoleFile(
  files: Map<ArchiveFileName, Buffer>,
  consoleFile: string,
  mainSource: string | undefined,
): string {
  const text = files.get(CONSOLE)?.toString('utf8') ?? '';
  const doc = parseDocument(text, { uniqueKeys: true });
  if (doc.errors.length > 0) throw incompatible('not valid YAML');
  try {
    // The CA was named where the old gateway kept it; here it goes beside this console file (below).
    const named = doc.getIn(['uplink', 'caFile']);
    if (typeof named === 'string') doc.setIn(['uplink', 'caFile'], basename(named));
    const changes = checkConsoleChanges(doc.toJS(), consoleFile);
    if (changes.uplink?.caFile !== undefined) {
      const ca = files.get(CA);
      if (!ca) throw incompatible('it names an uplink CA the archive does not hold');
      const pem = checkCaPem(ca.toString('utf8'));
      const name = `uplink-ca-${createHash('sha256').update(pem).digest('hex').slice(0, 16)}.pem`;
      const dest = join(dirname(consoleFile), name);
      mkdirSync(dirname(consoleFile), { recursive: true, mode: 0o700 });
      // Content-addressed: it replaces nothing in use.
      if (!existsSync(dest)) writeFileSync(dest, pem, { mode: 0o644 });
      doc.setIn(['uplink', 'caFile'], name);
    }
    checkConsoleMerged(doc.toString(), consoleFile, mainSource);
  } catch (err) {
    if (err instanceof BackupError) throw err;
    throw incompatible((err as Error).message.split('\n').slice(0, 3).join('; '));
  }
  return doc.toString();
}

/** This gateway's main file with `text` as its console file must load (the same schema as a start). */
function checkConsoleMerged(text: string, consoleFile: string, mainSource: string | undefined): void {
  const changes = checkConsoleChanges(parseDocument(text, { uniqueKeys: true }).toJS(), consoleFile);
  if (!mainSource) return;
  const main = parseDocument(readFileSync(mainSource, 'utf8'), { uniqueKeys: true }).toJS();
  parseConfig(mergeConsoleChanges(main, changes, consoleFile), dirname(mainSource), mainSource);
}

/** At the start that applies a staged restore, before anything moves: the staged file against the main one. */
export function checkStagedConsole(text: string, consoleFile: string, mainSource: string | undefined): void {
  try {
    checkConsoleMerged(text, consoleFile, mainSource);
  } catch (err) {
    throw incompatible((err as Error).message.split('\n').slice(0, 3).join('; '));
  }
}

/** Then: the console file it replaces into the rollback copy, the restored one in place (temp file + rename). */
export function installConsoleFile(text: string, consoleFile: string, rollbackDir: string): void {
  if (existsSync(consoleFile)) copyFileSync(consoleFile, join(rollbackDir, basename(consoleFile)));
  mkdirSync(dirname(consoleFile), { recursive: true, mode: 0o700 });
  writeAtomically(consoleFile, text, 0o600);
}
