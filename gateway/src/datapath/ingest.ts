import type { Core } from '../core.ts';
import { authorizeTelemetry, type Decision } from '../policy/index.ts';
import type { Device } from '../store/index.ts';
import type { TelemetryMessage, Uplink } from '../uplink/index.ts';

/**
 * identity → policy → durable queue: the one path every reading takes, pushed by a sensor or pulled from it.
 * Resolves once an allowed reading is committed to the uplink queue (only then may a sensor be acknowledged),
 * or at once with the refusal.
 */
export async function ingestTelemetry(
  core: Core,
  uplink: Uplink,
  device: Device | undefined,
  reading: Omit<TelemetryMessage, 'deviceId'>,
): Promise<Decision> {
  const decision = authorizeTelemetry(device);
  if (!decision.allow || !device) return decision;
  await uplink.enqueue({ deviceId: device.id, ...reading });
  core.identity.touch(device.id);
  return decision;
}
