import type { AnomalyService } from '../anomaly/index.ts';
import type { Core } from '../core.ts';
import type { PolicyDecision } from '../policy/engine.ts';
import type { Device } from '../store/index.ts';
import type { TelemetryMessage, Uplink } from '../uplink/index.ts';

/**
 * identity → behaviour → policy → durable queue: the one path every reading takes, pushed by a sensor or
 * pulled from it. Every reading of a known device is observed, also one policy refuses (a quarantined device
 * is still watched). The policy service decides on the device's profile (resource, method, time, segment,
 * content format, size, schema, rate, a flow) before anything is queued. Resolves once an allowed reading is
 * committed to the uplink queue (only then may a sensor be acknowledged), or with the refusal.
 */
export async function ingestTelemetry(
  core: Core,
  uplink: Uplink,
  device: Device | undefined,
  reading: Omit<TelemetryMessage, 'deviceId'>,
  anomaly?: AnomalyService,
  resource = '/telemetry',
  method: 'POST' | 'PUT' = 'POST',
): Promise<PolicyDecision> {
  if (device) {
    anomaly?.observe({
      ts: core.clock.now(),
      device: device.id,
      kind: 'message',
      bytes: reading.payload.length,
      resource,
      // The format is part of what kind of message this is (a reading, a status report, a bulk upload).
      ...(reading.contentFormat !== null ? { contentFormat: reading.contentFormat } : {}),
    });
  }
  const decision = await core.policy.check(device, {
    method,
    resource,
    contentFormat: reading.contentFormat,
    payload: reading.payload,
  });
  if (device && core.events.listenerCount > 0) {
    core.events.emit({
      type: 'device.message',
      ts: new Date(core.clock.now()).toISOString(),
      deviceId: device.id,
      resource,
      contentFormat: reading.contentFormat,
      payload: reading.payload.toString('base64'),
      size: reading.payload.length,
      allowed: decision.allow,
      ...(decision.allow ? {} : { rule: decision.rule }),
    });
  }
  if (!decision.allow || !device) return decision;
  // last_seen (written at most every 30 s per device) rides in the queue's transaction: no fsync of its own.
  const seenAt = core.identity.seenDue(device.id);
  await uplink.enqueue({ deviceId: device.id, ...reading, ...(seenAt !== null ? { seenAt } : {}) });
  return decision;
}
