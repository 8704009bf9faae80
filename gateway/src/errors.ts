/**
 * Base of every error Portcullis throws on purpose. `code` is stable and machine-readable; `message` is for
 * people and must never contain secrets (PSKs, keys, passwords, tokens).
 */
export class PortcullisError extends Error {
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** A listener (UI, DTLS) could not bind its address. */
export class ListenError extends PortcullisError {
  constructor(what: string, host: string, port: number, cause: NodeJS.ErrnoException) {
    super('ERR_LISTEN', `${what}: cannot listen on ${host}:${port} (${cause.code ?? cause.message})`, {
      cause,
    });
  }
}

/** The first problem zod found, as `path: message` (`what` when it is the whole value): enough to fix the input. */
export function firstIssue(
  error: { issues: readonly { path: PropertyKey[]; message: string }[] },
  what: string,
): string {
  const i = error.issues[0];
  return `${i?.path.map(String).join('.') || what}: ${i?.message ?? 'invalid'}`;
}
