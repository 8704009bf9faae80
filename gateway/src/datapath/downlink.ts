import type { CoapResponse } from '../coap/index.ts';
import type { Core } from '../core.ts';
import type { Logger } from '../log.ts';
import { authorizeCommand } from '../policy/index.ts';
import type { DownlinkMessage } from '../uplink/index.ts';

/** Cloud → device: a command is held only if policy allows it, and waits for the device's next message. */
export function commandHandler(core: Core, logger: Logger): (c: DownlinkMessage) => void {
  return (c) => {
    const device = core.store.devices.get(c.deviceId);
    const decision = authorizeCommand(device, c.payload);
    if (!decision.allow) {
      logger.warn({ deviceId: c.deviceId, reason: decision.reason }, 'downlink command refused');
      return;
    }
    core.store.downlink.enqueue({
      deviceId: c.deviceId,
      payload: c.payload,
      contentFormat: c.contentFormat,
      receivedAt: new Date(core.clock.now()).toISOString(),
    });
    logger.info({ deviceId: c.deviceId, bytes: c.payload.length }, 'downlink command queued');
  };
}

/**
 * The oldest command for the device, removed from the queue, as the body of `code`; or a bare `code`.
 * The CoAP layer caches the reply per message ID, so a sensor that retransmits gets the same command again.
 */
export function withNextCommand(core: Core, deviceId: string, code: string): CoapResponse {
  const cmd = core.store.downlink.next(deviceId);
  if (!cmd) return { code };
  core.store.downlink.delete(cmd.id);
  return {
    code,
    payload: cmd.payload,
    ...(cmd.contentFormat !== null ? { contentFormat: cmd.contentFormat } : {}),
  };
}
