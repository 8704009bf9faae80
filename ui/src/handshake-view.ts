import { isIP } from 'node:net';
import type { HandshakeLog, HandshakeRecord } from '../../gateway/src/datapath/handshake-log.ts';
import { deviceIdSchema } from '../../gateway/src/identity/index.ts';

/**
 * The diagnostics page's handshake filter from its query (`?device=…&address=…`): a value that is not a
 * device id or an IP address is ignored rather than searched for.
 */
export function handshakeView(
  log: HandshakeLog | undefined,
  query: { device?: string | undefined; address?: string | undefined },
): { records: HandshakeRecord[] | null; filter: { device?: string; address?: string } } {
  const device = deviceIdSchema.safeParse((query.device ?? '').trim());
  const address = (query.address ?? '').trim();
  const filter = {
    ...(device.success && device.data ? { device: device.data } : {}),
    ...(isIP(address) ? { address } : {}),
  };
  if (!log) return { records: null, filter };
  return {
    records: log.recent({
      ...(filter.device ? { deviceId: filter.device } : {}),
      ...(filter.address ? { address: filter.address } : {}),
      limit: 100,
    }),
    filter,
  };
}
