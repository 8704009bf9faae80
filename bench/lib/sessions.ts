import { TestDtlsClient } from '../../test/helpers/dtls-test-client.ts';
import { inParallel } from './load.ts';

/** `count` PSK sensors (identity `s<i>`, key `keyOf(i)`) connected over DTLS, `concurrency` handshakes at a time. */
export function openPskSessions(
  port: number,
  count: number,
  concurrency: number,
  keyOf: (i: number) => Buffer,
): Promise<TestDtlsClient[]> {
  return inParallel(count, concurrency, async (i) => {
    const c = new TestDtlsClient({
      port,
      suite: 'TLS_PSK_WITH_AES_128_CCM_8',
      psk: { identity: `s${i}`, key: keyOf(i) },
      timeoutMs: 10_000,
    });
    await c.connect();
    return c;
  });
}
