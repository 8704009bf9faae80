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
