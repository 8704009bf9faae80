import { type DestinationStream, type Logger, pino } from 'pino';

export type { Logger } from 'pino';
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace';

/**
 * Field names that may carry secrets anywhere in a log object. Redaction is a safety net only: code must not
 * pass secrets to the logger in the first place.
 */
const SECRET_FIELDS = [
  'psk',
  'key',
  'privateKey',
  'password',
  'passphrase',
  'secret',
  'token',
  'totp',
  'cookie',
];

export const REDACT_PATHS = SECRET_FIELDS.flatMap((f) => [f, `*.${f}`, `*.*.${f}`]);

export function createLogger(level: LogLevel, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'portcullis-gateway' },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination,
  );
}
