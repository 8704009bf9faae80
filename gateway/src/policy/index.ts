import type { SessionDevice } from '../store/index.ts';

export type Decision = { allow: true } | { allow: false; reason: string };

/**
 * Zero trust, per message rather than per session: a device may send telemetry only while it is known and
 * active. (Resource, rate, segment and time-window rules join here as their issues land.)
 */
export function authorizeTelemetry(device: SessionDevice | undefined): Decision {
  if (!device) return { allow: false, reason: 'unknown credential' };
  if (device.state !== 'active') return { allow: false, reason: `device is ${device.state}` };
  return { allow: true };
}

/**
 * Whether a device may hold a DTLS session at all. A quarantined device in observe mode keeps its session so
 * the gateway can still see what it does; nothing it sends is forwarded (authorizeTelemetry says no).
 */
export function mayHoldSession(device: SessionDevice | undefined): boolean {
  if (!device) return false;
  return (
    device.state === 'active' || (device.state === 'quarantined' && device.quarantine?.mode === 'observe')
  );
}

/** Largest command the gateway will hold for a sensor: it must fit a constrained device's CoAP response. */
export const MAX_COMMAND_BYTES = 1024;

/** A cloud command is held for a device only if the device is active and the command fits. */
export function authorizeCommand(device: SessionDevice | undefined, payload: Buffer): Decision {
  if (!device) return { allow: false, reason: 'unknown device' };
  if (device.state !== 'active') return { allow: false, reason: `device is ${device.state}` };
  if (payload.length > MAX_COMMAND_BYTES) {
    return { allow: false, reason: `command is ${payload.length} bytes (limit ${MAX_COMMAND_BYTES})` };
  }
  return { allow: true };
}
