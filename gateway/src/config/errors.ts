import { PortcullisError } from '../errors.ts';

export interface ConfigIssue {
  /** Dotted key path, e.g. `ui.port`; `(root)` for the document itself. */
  path: string;
  message: string;
}

/** Exit code 2 in the CLI: the configuration (or a file it names) cannot be used as it is. */
export class ConfigError extends PortcullisError {
  constructor(
    code: 'ERR_CONFIG_NOT_FOUND' | 'ERR_CONFIG_PARSE' | 'ERR_CONFIG_INVALID' | 'ERR_CONFIG_UNSAFE_PATH',
    message: string,
    readonly issues: ConfigIssue[] = [],
  ) {
    super(code, message);
  }
}
