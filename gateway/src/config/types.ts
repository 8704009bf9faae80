import type { Config } from './schema.ts';

/** A validated configuration and where it came from. */
export interface LoadedConfig {
  config: Config;
  /** The file the config came from; undefined when running on embedded defaults. */
  source: string | undefined;
}
