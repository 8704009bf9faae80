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

/**
 * Where the gateway's log goes: on to `out` (stdout, so the journal) and into a bounded ring of the most recent
 * lines for the technician UI's logs page (the journal may not be readable by the gateway's user, and a phone
 * has no shell). Lines are kept as pino wrote them, after redaction; the ring holds at most `maxLines` lines and
 * `maxBytes` bytes, dropping the oldest.
 */
export class LogRing implements DestinationStream {
  private lines: string[] = [];
  private bytes = 0;

  constructor(
    private readonly out: { write(s: string): unknown } = process.stdout,
    private readonly maxLines = 5000,
    private readonly maxBytes = 2 * 1024 * 1024,
  ) {}

  write(chunk: string): void {
    this.out.write(chunk);
    for (const line of chunk.split('\n')) {
      if (!line) continue;
      this.lines.push(line);
      this.bytes += line.length;
    }
    let drop = 0;
    while (
      this.lines.length - drop > this.maxLines ||
      (this.bytes > this.maxBytes && drop < this.lines.length)
    ) {
      this.bytes -= (this.lines[drop] as string).length;
      drop++;
    }
    if (drop > 0) this.lines = this.lines.slice(drop);
  }

  /** The kept lines, oldest first. */
  recent(): string[] {
    return [...this.lines];
  }
}
