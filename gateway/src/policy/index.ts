import type { Device } from '../store/index.ts';

export type Decision = { allow: true } | { allow: false; reason: string };

/**
 * Zero trust, per message rather than per session: a device may send telemetry only while it is known and
 * active. (Resource, rate, segment and time-window rules join here as their issues land.)
 */
export function authorizeTelemetry(device: Device | undefined): Decision {
  if (!device) return { allow: false, reason: 'unknown credential' };
  if (device.state !== 'active') return { allow: false, reason: `device is ${device.state}` };
  return { allow: true };
}
