import { z } from 'zod';
import { parseJsonWith } from '../json.ts';

/** What the gateway sees of a device: the detector's only input, live or replayed. */
export type DetectorEvent =
  | {
      ts: number;
      device: string;
      kind: 'message';
      bytes: number;
      resource: string;
      /** CoAP Content-Format, when the message had one: part of what makes a message kind. */
      contentFormat?: number;
    }
  | { ts: number; device: string; kind: 'connection'; dst: string; dport: number; proto: 'tcp' | 'udp' }
  | { ts: number; device: string; kind: 'auth_failure' }
  /** A message the device's policy profile refused (docs/policy.md): which rule, on which resource. */
  | { ts: number; device: string; kind: 'policy_refusal'; rule: string; resource: string };

const ts = z.iso.datetime({ offset: true }).transform((s) => Date.parse(s));
const device = z.string().min(1).max(128);

/** One replay line. Unknown fields are ignored (objects are not strict): exports from other tools add their own. */
const eventLine = z.discriminatedUnion('kind', [
  z.object({
    ts,
    device,
    kind: z.literal('message'),
    bytes: z.number().int().min(0).max(1e9),
    resource: z.string().min(1).max(256).default('/telemetry'),
    contentFormat: z.number().int().min(0).max(65535).optional(),
  }),
  z.object({
    ts,
    device,
    kind: z.literal('connection'),
    dst: z.string().min(1).max(253),
    dport: z.number().int().min(0).max(65535),
    proto: z.enum(['tcp', 'udp']),
  }),
  z.object({ ts, device, kind: z.literal('auth_failure') }),
  z.object({
    ts,
    device,
    kind: z.literal('policy_refusal'),
    rule: z.string().min(1).max(32),
    resource: z.string().min(1).max(256).default('/telemetry'),
  }),
]);

/** Parses one JSON line; the error names the first problem (the caller adds the line number). */
export function parseEventLine(
  line: string,
): { ok: true; event: DetectorEvent } | { ok: false; error: string } {
  const r = parseJsonWith(eventLine, line, 'line');
  if (!r.ok) return { ok: false, error: r.notJson ? 'not JSON' : r.problem };
  return { ok: true, event: r.data as DetectorEvent };
}
