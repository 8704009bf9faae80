import { existsSync, readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parseDocument } from 'yaml';
import type { z } from 'zod';
import { withConsoleChanges } from './console-file.ts';
import { ConfigError, type ConfigIssue } from './errors.ts';
import { checkConfigFile, checkLocalFiles } from './local-files.ts';
import { type Config, configSchema } from './schema.ts';
import type { LoadedConfig } from './types.ts';

export { ConfigError, type ConfigIssue };

export const APPLIANCE_CONFIG_PATH = '/etc/portcullis/config.yaml';

export type { LoadedConfig };

function formatPath(path: readonly PropertyKey[]): string {
  return path.length === 0 ? '(root)' : path.map(String).join('.');
}

function toIssues(error: z.ZodError): ConfigIssue[] {
  return error.issues.flatMap((issue): ConfigIssue[] => {
    if (issue.code === 'unrecognized_keys') {
      return issue.keys.map((key) => ({ path: formatPath([...issue.path, key]), message: 'unknown key' }));
    }
    return [{ path: formatPath(issue.path), message: issue.message }];
  });
}

/** Validate an already-parsed document. Never returns a partially valid config. */
export function parseConfig(doc: unknown, baseDir: string, source?: string): Config {
  const result = configSchema(baseDir).safeParse(doc ?? {});
  if (result.success) return result.data;
  const issues = toIssues(result.error);
  const where = source ?? 'config';
  throw new ConfigError(
    'ERR_CONFIG_INVALID',
    `${where}: invalid configuration\n${issues.map((i) => `  ${i.path}: ${i.message}`).join('\n')}`,
    issues,
  );
}

export function loadConfigFile(file: string): Config {
  const path = resolve(file);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(
      'ERR_CONFIG_NOT_FOUND',
      `${path}: cannot read config file (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
    );
  }
  const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: true });
  if (doc.errors.length > 0) {
    const first = doc.errors[0]!;
    const line = first.linePos?.[0]?.line;
    throw new ConfigError(
      'ERR_CONFIG_PARSE',
      `${path}${line ? `:${line}` : ''}: not valid YAML (${first.code})`,
      [{ path: '(root)', message: first.code }],
    );
  }
  // The console's own file (consoleConfigFile), when this one names it, over this one.
  return parseConfig(withConsoleChanges(doc.toJS()), dirname(path), path);
}

/**
 * Which config applies: `--config`, then `PORTCULLIS_CONFIG`, then the appliance path if it exists, else the
 * embedded defaults (relative paths then resolve against the working directory).
 */
export function resolveConfig(
  explicit: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
  cwd = process.cwd(),
): LoadedConfig {
  const file =
    explicit ??
    env.PORTCULLIS_CONFIG ??
    (existsSync(APPLIANCE_CONFIG_PATH) ? APPLIANCE_CONFIG_PATH : undefined);
  // Every start and every CLI command that reads a config comes through here: the config file is checked
  // before it is read, and the files it names before anything uses them.
  if (file === undefined) return checkLocalFiles({ config: parseConfig({}, cwd), source: undefined });
  checkConfigFile(file);
  return checkLocalFiles({ config: loadConfigFile(file), source: resolve(file) });
}
