import type { z } from 'zod';
import { errorMessage, firstIssue } from './errors.ts';

export type JsonCheck<T> = { ok: true; data: T } | { ok: false; notJson: boolean; problem: string };

/**
 * JSON text checked against a schema, for callers that raise their own typed error: `problem` is JSON.parse's
 * message when the text is not JSON (`notJson`), else zod's first issue (`what` names the whole value).
 */
export function parseJsonWith<S extends z.ZodType>(
  schema: S,
  text: string,
  what: string,
): JsonCheck<z.output<S>> {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    return { ok: false, notJson: true, problem: errorMessage(err) };
  }
  const r = schema.safeParse(json);
  return r.success
    ? { ok: true, data: r.data }
    : { ok: false, notJson: false, problem: firstIssue(r.error, what) };
}
