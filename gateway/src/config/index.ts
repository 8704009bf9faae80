export type { LoadedConfig } from './load.ts';
export {
  APPLIANCE_CONFIG_PATH,
  ConfigError,
  type ConfigIssue,
  loadConfigFile,
  parseConfig,
  resolveConfig,
} from './load.ts';
export type { Config } from './schema.ts';
