import type { Context } from 'hono';
import type { z } from 'zod';
import { firstIssue } from '../errors.ts';
import { HttpError } from '../http.ts';

/** No control call needs deeper JSON; refusing it before parsing keeps every later walk of the value cheap. */
export const MAX_JSON_DEPTH = 32;

/**
 * The nesting depth of JSON text, counting `[` and `{` outside strings. Linear, no recursion, stops as soon as
 * `limit` is passed: a 5,000-deep body costs a scan of its first bytes, not a parse.
 */
export function jsonDepthExceeds(text: string, limit: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    if (inString) {
      if (ch === 0x5c)
        i++; // backslash: skip the escaped character
      else if (ch === 0x22) inString = false;
    } else if (ch === 0x22) inString = true;
    else if (ch === 0x5b || ch === 0x7b) {
      if (++depth > limit) return true;
    } else if (ch === 0x5d || ch === 0x7d) depth--;
  }
  return false;
}

/**
 * The control API's JSON body, validated. Every malformed body is a 400 with a stable code, never a 500:
 * `ERR_CONTROL_JSON` (not JSON), `ERR_CONTROL_JSON_DEPTH` (nested deeper than MAX_JSON_DEPTH),
 * `ERR_CONTROL_INVALID` (wrong shape or types: the first problem is named); 415 `ERR_CONTROL_CONTENT_TYPE`
 * when it is not sent as JSON.
 */
export async function controlBody<S extends z.ZodType>(c: Context, schema: S): Promise<z.output<S>> {
  if (!/^application\/json\s*(;|$)/i.test(c.req.header('content-type') ?? '')) {
    throw new HttpError(415, 'ERR_CONTROL_CONTENT_TYPE', 'send application/json');
  }
  let text: string;
  try {
    text = await c.req.text();
  } catch {
    throw new HttpError(400, 'ERR_CONTROL_JSON', 'the body could not be read');
  }
  if (jsonDepthExceeds(text, MAX_JSON_DEPTH)) {
    throw new HttpError(400, 'ERR_CONTROL_JSON_DEPTH', `the body nests deeper than ${MAX_JSON_DEPTH} levels`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new HttpError(400, 'ERR_CONTROL_JSON', 'the body is not JSON');
  }
  const r = schema.safeParse(json);
  if (!r.success) throw new HttpError(400, 'ERR_CONTROL_INVALID', firstIssue(r.error, 'body'));
  return r.data;
}
