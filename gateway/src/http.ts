import type { IncomingMessage } from 'node:http';
import type { Context } from 'hono';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import type { z } from 'zod';
import { PortcullisError } from './errors.ts';

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
  if (/(INVALID|UNSUPPORTED|COMPILE)$/.test(code) || code.startsWith('ERR_MUD_')) return 400;
  if (/(STATE|CONFLICT|BUSY|NOT_APPLIED)$/.test(code)) return 409;
  if (code === 'ERR_USER_CREDENTIALS' || code === 'ERR_USER_MFA') return 401;
  if (code === 'ERR_USER_LOCKED') return 423;
  if (code === 'ERR_USER_SETUP') return 403;
  return 500;
}

export function errorResponse(c: Context, err: unknown) {
  if (err instanceof HttpError)
    return c.json({ error: { code: err.code, message: err.message } }, err.status);
  if (err instanceof PortcullisError) {
    const status = statusFor(err.code);
    return c.json(
      { error: { code: err.code, message: status === 500 ? 'internal error' : err.message } },
      status,
    );
  }
  return c.json({ error: { code: 'ERR_INTERNAL', message: 'internal error' } }, 500);
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
    const i = r.error.issues[0];
    throw new HttpError(400, 'ERR_UI_INVALID', `${i?.path.join('.') || 'body'}: ${i?.message ?? 'invalid'}`);
  }
  return r.data;
}

/** The peer's address as the socket sees it (never a forwarded header: nothing proxies the appliance's UI). */
export function clientAddress(c: Context): string {
  return (c.env as { incoming?: IncomingMessage } | undefined)?.incoming?.socket?.remoteAddress ?? 'local';
}
