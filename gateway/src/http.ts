import type { IncomingMessage } from 'node:http';
import type { Context } from 'hono';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import type { z } from 'zod';
import { firstIssue, PortcullisError } from './errors.ts';

/** A JSON error the pages and API clients can act on: a stable code and a message for people. */
export class HttpError extends PortcullisError {
  constructor(
    readonly status: ContentfulStatusCode,
    code: string,
    message: string,
  ) {
    super(code, message);
  }
}

/** HTTP status for the service layer's typed errors (their messages are safe to show: no secrets). */
export function statusFor(code: string): ContentfulStatusCode {
  if (/NOT_FOUND$/.test(code)) return 404;
  if (/(INVALID|UNSUPPORTED|COMPILE|WEAK_PSK)$/.test(code) || code.startsWith('ERR_MUD_')) return 400;
  if (/(STATE|CONFLICT|BUSY|NOT_APPLIED)$/.test(code)) return 409;
  if (code === 'ERR_USER_CREDENTIALS' || code === 'ERR_USER_MFA') return 401;
  if (code === 'ERR_USER_THROTTLED') return 429;
  // The audit head was changed outside the gateway: nothing is written until `portcullis audit reseal`.
  if (code === 'ERR_AUDIT_TAMPERED') return 503;
  if (code === 'ERR_USER_SETUP') return 403;
  return 500;
}

/**
 * What a client may be told about a failure: typed errors carry messages safe to show (no secrets); anything
 * else, and any typed error that maps to 500, is just "internal error".
 */
export function describeError(err: unknown): { status: ContentfulStatusCode; code: string; message: string } {
  if (err instanceof HttpError) return { status: err.status, code: err.code, message: err.message };
  if (err instanceof PortcullisError) {
    const status = statusFor(err.code);
    return { status, code: err.code, message: status === 500 ? 'internal error' : err.message };
  }
  return { status: 500, code: 'ERR_INTERNAL', message: 'internal error' };
}

export function errorResponse(c: Context, err: unknown) {
  const { status, code, message } = describeError(err);
  return c.json({ error: { code, message } }, status);
}

/** The JSON body, validated; anything else is a 400 naming the first problem (or 415 if it is not JSON). */
export async function body<S extends z.ZodType>(c: Context, schema: S): Promise<z.output<S>> {
  if (!(c.req.header('content-type') ?? '').startsWith('application/json')) {
    throw new HttpError(415, 'ERR_UI_CONTENT_TYPE', 'send application/json');
  }
  let json: unknown;
  try {
    json = await c.req.json();
  } catch {
    throw new HttpError(400, 'ERR_UI_INVALID', 'the body is not JSON');
  }
  const r = schema.safeParse(json);
  if (!r.success) {
    throw new HttpError(400, 'ERR_UI_INVALID', firstIssue(r.error, 'body'));
  }
  return r.data;
}

/** The peer's address as the socket sees it (never a forwarded header: nothing proxies the appliance's UI). */
export function clientAddress(c: Context): string {
  return (c.env as { incoming?: IncomingMessage } | undefined)?.incoming?.socket?.remoteAddress ?? 'local';
}
