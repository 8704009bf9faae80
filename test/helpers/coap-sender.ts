import { parse } from 'coap-packet';
import { coapPost } from './coaps-fixture.ts';
import type { TestDtlsClient } from './dtls-test-client.ts';

/**
 * Posts payloads over one session, `window` at a time, matching answers by message ID. Resolves with the
 * payloads the gateway acknowledged with 2.04 — the ones it promised not to lose. Stops at the first timeout.
 */
export async function postMany(
  client: TestDtlsClient,
  payloads: string[],
  opts: { window?: number; firstMessageId?: number; onAck?(payload: string): void } = {},
): Promise<string[]> {
  const window = opts.window ?? 16;
  const acked: string[] = [];
  const pending = new Map<number, string>();
  let next = 0;
  let id = opts.firstMessageId ?? 1;
  try {
    while (next < payloads.length || pending.size > 0) {
      while (next < payloads.length && pending.size < window) {
        const p = payloads[next++] as string;
        const mid = id++ & 0xffff;
        pending.set(mid, p);
        client.send(coapPost(p, mid));
      }
      const res = parse(await client.receive());
      const p = pending.get(res.messageId);
      if (p === undefined) continue;
      pending.delete(res.messageId);
      if (res.code === '2.04') {
        acked.push(p);
        opts.onAck?.(p);
      }
    }
  } catch {
    // Timed out (gateway gone): what was acknowledged so far is the answer.
  }
  return acked;
}
