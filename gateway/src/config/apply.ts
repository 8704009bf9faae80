import { createHash, X509Certificate } from 'node:crypto';
import {
  closeSync,
  existsSync,
  fchmodSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { parseDocument, parse as parseYaml } from 'yaml';
import { PortcullisError } from '../errors.ts';
import { checkConsoleChanges, consoleFileOf, mergeConsoleChanges, readConsoleText } from './console-file.ts';
import { ConfigError } from './errors.ts';
import { parseConfig } from './load.ts';
import { checkLocalFiles } from './local-files.ts';
import type { Config } from './schema.ts';

/**
 * Changing the configuration file from the technician's console (issue 25 item 12). The change is made to the
 * YAML document itself (comments and the keys nobody touched stay as they were), then the whole new document
 * is validated by the same schema and the same local-file checks as a start — so the UI refuses exactly what
 * `portcullis config check` refuses, with the same messages, before anything is written. Written atomically
 * (a temporary file, fsync, rename) with the file in force kept beside it as `<file>.previous`, so the
 * supervisor can put it back when the gateway does not come back healthy.
 */

/** What the console may change. Absent parts stay as they are. */
export interface ConfigChange {
  uplink?: {
    url: string;
    topicPrefix: string;
    /** A new trust anchor for the broker (PEM, one or more certificates): written beside the config file. */
    caPem?: string;
  };
  /** The segments list as YAML text (a list of segments, as under `segments:` in the file). */
  segmentsYaml?: string;
}

export interface ConfigPlan {
  /** The file the change is written to: the console's own file where the main one names it, else the main one. */
  file: string;
  /** The new file's text. */
  text: string;
  /** What differs, by setting name (never a value: a URL may carry a user name, a file a secret's path). */
  changed: string[];
  config: Config;
  /** A CA file written for this change (content-addressed, so it replaces nothing in use). */
  caFile?: string;
  /** Whether this plan wrote that file (a check removes it again). */
  createdCaFile?: boolean;
}

/** Where an apply stands, for the configuration page. */
export interface ConfigApplyStatus {
  id: string;
  actor: string;
  changed: string[];
  state: 'applying' | 'applied' | 'rolled-back';
  /** Why it was rolled back (the health check's reasons or the start's error). */
  reasons: string[];
  requestedAt: string;
  finishedAt?: string;
}

/** The process-level owner of applying a change (the supervisor in `portcullis start`). */
export interface ConfigApplier {
  /** Whether there is a configuration file to change (not the embedded defaults). */
  canApply(): boolean;
  /** Validates a change without applying it (the schema's error when it is invalid): what it would change. */
  check(change: ConfigChange): string[];
  /** Validates and writes the change, then restarts the gateway with it in the background. */
  apply(change: ConfigChange, actor: string): { id: string; changed: string[] };
  status(): ConfigApplyStatus | null;
}

/** A change that cannot be applied now (nothing changes, another is under way, no file to change). */
export class ConfigApplyError extends PortcullisError {
  constructor(
    code: 'ERR_CONFIG_APPLY_STATE' | 'ERR_CONFIG_APPLY_BUSY' | 'ERR_CONFIG_APPLY_READONLY',
    message: string,
  ) {
    super(code, message);
  }
}

/**
 * A write next to the configuration file that the host refused: a root-owned file in a read-only /etc with no
 * `consoleConfigFile` (the shipped image names one, in the service's state directory), or a console file
 * whose folder the service may not write. Nothing changed; the console says so.
 */
export function fileRefusal(path: string, err: unknown): unknown {
  const code = (err as NodeJS.ErrnoException).code ?? '';
  if (!['EACCES', 'EPERM', 'EROFS'].includes(code)) return err;
  return new ConfigApplyError(
    'ERR_CONFIG_APPLY_READONLY',
    `the gateway may not write beside ${path} (${code}): name a file the service may write as consoleConfigFile in the main configuration (the appliance's does), or change this one as root and restart the gateway`,
  );
}

const MAX_CA_CERTIFICATES = 10;
const PEM_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

function invalid(message: string): ConfigError {
  return new ConfigError('ERR_CONFIG_INVALID', message, [{ path: '(root)', message }]);
}

/** Each PEM certificate must parse; anything else in the text (a key, say) is refused, never stored. */
export function checkCaPem(pem: string): string {
  const blocks = pem.match(PEM_BLOCK) ?? [];
  if (blocks.length === 0) throw invalid('uplink CA: no PEM certificate found');
  if (blocks.length > MAX_CA_CERTIFICATES) {
    throw invalid(`uplink CA: at most ${MAX_CA_CERTIFICATES} certificates`);
  }
  if (pem.replace(PEM_BLOCK, '').trim() !== '') {
    throw invalid('uplink CA: only PEM certificates, nothing else (no keys)');
  }
  for (const b of blocks) {
    try {
      new X509Certificate(b);
    } catch {
      throw invalid('uplink CA: a certificate could not be read');
    }
  }
  return `${blocks.join('\n')}\n`;
}

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

/**
 * Validates a change against the file in force and returns the new text and what it changes; throws the
 * schema's `ConfigError` (nothing written but a content-addressed CA file, removed again) when it is invalid.
 */
export function planConfigChange(file: string, change: ConfigChange): ConfigPlan {
  const mainText = readFileSync(file, 'utf8');
  const main = parseDocument(mainText, { uniqueKeys: true }).toJS();
  // On the appliance the change goes to the console's own file, merged over the main one (console-file.ts).
  const consoleFile = consoleFileOf(main);
  const target = consoleFile ?? file;
  const doc = parseDocument(consoleFile ? readConsoleText(consoleFile) : mainText, { uniqueKeys: true });
  const whole = (): unknown =>
    consoleFile
      ? mergeConsoleChanges(main, checkConsoleChanges(doc.toJS(), consoleFile), consoleFile)
      : doc.toJS();
  const current = parseConfig(whole(), dirname(file), file);
  let caFile: string | undefined;
  let created = false;
  try {
    if (change.uplink) {
      const up = change.uplink;
      if (up.caPem?.trim()) {
        const pem = checkCaPem(up.caPem);
        caFile = join(
          dirname(target),
          `uplink-ca-${createHash('sha256').update(pem).digest('hex').slice(0, 16)}.pem`,
        );
        if (!existsSync(caFile)) {
          try {
            // The console's folder may not exist yet (made on the first change, 0700 in the state directory).
            if (consoleFile) mkdirSync(dirname(target), { recursive: true, mode: 0o700 });
            writeFileSync(caFile, pem, { mode: 0o644, flag: 'wx' });
          } catch (err) {
            throw fileRefusal(file, err);
          }
          created = true;
        }
      } else if (!current.uplink) {
        throw invalid('uplink: a new uplink needs its broker’s CA certificate');
      }
      doc.setIn(['uplink', 'url'], up.url.trim());
      doc.setIn(['uplink', 'topicPrefix'], up.topicPrefix.trim());
      if (caFile) doc.setIn(['uplink', 'caFile'], caFile);
    }
    if (change.segmentsYaml !== undefined) {
      let segments: unknown;
      try {
        segments = parseYaml(change.segmentsYaml, { uniqueKeys: true }) ?? [];
      } catch (err) {
        throw invalid(`segments: not valid YAML (${(err as Error).message.split('\n')[0]})`);
      }
      if (!Array.isArray(segments)) throw invalid('segments: must be a list of segments');
      doc.set('segments', doc.createNode(segments));
    }
    // The same schema and the same local-file checks as a start: what passes here starts.
    const config = parseConfig(whole(), dirname(file), file);
    checkLocalFiles({ config, source: file });
    const changed: string[] = [];
    for (const k of ['url', 'topicPrefix', 'caFile'] as const) {
      if (!same(current.uplink?.[k], config.uplink?.[k])) changed.push(`uplink.${k}`);
    }
    if (!same(current.segments, config.segments)) changed.push('segments');
    if (changed.length === 0) {
      throw new ConfigApplyError(
        'ERR_CONFIG_APPLY_STATE',
        'nothing to change: the values are those in force',
      );
    }
    return {
      file: target,
      text: doc.toString(),
      changed,
      config,
      ...(caFile ? { caFile, createdCaFile: created } : {}),
    };
  } catch (err) {
    if (created && caFile) rmSync(caFile, { force: true });
    throw err;
  }
}

function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Writes `text` over `file` so that a crash leaves either the old or the new file, never half of one. */
export function writeAtomically(file: string, text: string, mode: number): void {
  const tmp = join(dirname(file), `.${basename(file)}.tmp-${process.pid}`);
  const fd = openSync(tmp, 'w', mode);
  try {
    // The mode asked for, not the umask's cut of it (the gateway's unit has UMask=0077; timesyncd, another
    // user, must read the NTP drop-in).
    fchmodSync(fd, mode);
    writeFileSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, file);
  fsyncDir(dirname(file));
}

export const previousOf = (file: string) => `${file}.previous`;

/** The file a change to the configuration `file` is written to (and rolled back in): see planConfigChange. */
export function changeTargetOf(file: string): string {
  return consoleFileOf(parseDocument(readFileSync(file, 'utf8')).toJS()) ?? file;
}
export const markerOf = (file: string) => `${file}.apply.json`;

/**
 * Keeps the file in force as `<file>.previous`, writes the marker that says a change is being tried (a start
 * that finds it knows the last one never finished), then the new file.
 */
export function writeConfigChange(plan: ConfigPlan, marker: ConfigApplyStatus): void {
  // A console file the console has not written yet: its "previous" is empty (no changes over the main file).
  const exists = existsSync(plan.file);
  const mode = exists ? statSync(plan.file).mode & 0o777 : 0o600;
  try {
    if (!exists) mkdirSync(dirname(plan.file), { recursive: true, mode: 0o700 });
    writeAtomically(previousOf(plan.file), exists ? readFileSync(plan.file, 'utf8') : '', mode);
    writeAtomically(markerOf(plan.file), `${JSON.stringify(marker)}\n`, 0o600);
  } catch (err) {
    // Nothing in force has changed yet: the file itself is written last.
    throw fileRefusal(plan.file, err);
  }
  writeAtomically(plan.file, plan.text, mode);
}

/** Puts `<file>.previous` back in force. */
export function restorePrevious(file: string): void {
  const mode = statSync(file).mode & 0o777;
  writeAtomically(file, readFileSync(previousOf(file), 'utf8'), mode);
}

/** The change being tried when the process last stopped, if it never finished. */
export function pendingChange(file: string): ConfigApplyStatus | undefined {
  try {
    return JSON.parse(readFileSync(markerOf(file), 'utf8')) as ConfigApplyStatus;
  } catch {
    return undefined;
  }
}

export function clearPending(file: string): void {
  rmSync(markerOf(file), { force: true });
}
